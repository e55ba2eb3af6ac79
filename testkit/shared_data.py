"""Where the shared datasets are: ``../shared`` beside the repository, as CI lays it out (not a fixed path:
a clone anywhere finds the data beside it, and a test that needs it skips only when it is really absent)."""

from __future__ import annotations

from pathlib import Path

SHARED_DIR = Path(__file__).resolve().parents[2] / "shared"
SKAB_DIR = SHARED_DIR / "datasets" / "skab"
TEP_DIR = SHARED_DIR / "datasets" / "tep"
