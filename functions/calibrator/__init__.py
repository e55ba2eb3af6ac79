"""The in-stack per-device calibrator (issue 13): ``calibration`` (pure, over ports), a thin ``handler``."""
