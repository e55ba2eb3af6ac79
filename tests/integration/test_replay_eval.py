"""iotpipe model replay-eval on the deployed stack: SKAB files through Kinesis, the processor's per-device
detector (calibrated from the archive), the anomalies table; against the offline evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SKAB = Path("/work/shared/datasets/skab")
FILES = [SKAB / "valve1" / "1.csv", SKAB / "valve2" / "3.csv"]

pytestmark = pytest.mark.skipif(not all(p.exists() for p in FILES), reason="shared SKAB data not present")


def test_replayed_skab_files_score_as_the_offline_evaluation(deployed_stack):
    from iotpipe.replay_eval import replay_eval

    result = replay_eval(deployed_stack["StackName"], FILES, timeout_s=300)
    print(json.dumps(result, sort_keys=True))
    assert result["calibration_rows"] == 400
    assert result["confusion"]["tp"] + result["confusion"]["fn"] > 0  # the files' faults were scored
    # Same calibration, same operating point, same values: the pipeline's verdicts are the offline ones.
    assert abs(result["f1_difference"]) <= 0.02
    assert result["mismatched_rows"] == 0
    assert result["f1"] > 0.5
