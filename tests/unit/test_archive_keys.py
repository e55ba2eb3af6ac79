"""processed_line with and without the detector's verdict: its fields, same bytes for the same input."""

from __future__ import annotations

import orjson

from functions.core.readings import DeviceInfo, Reading
from functions.detector.interface import Verdict
from functions.processor.archive_keys import processed_line

READING = Reading("dev-1", 1_764_000_000_000, {"temperature": 1.0, "humidity": 2.0, "pressure": 3.0},
                  "shardId-000000000000", "42", DeviceInfo("dev-1", site="s", location="l"))


def _verdict(score: float, flagged: bool) -> Verdict:
    return Verdict(score=score, is_anomaly=flagged, severity="critical" if flagged else "none",
                   severity_rank=4 if flagged else 0, top_feature="temperature:raw", reason="r",
                   threshold=1.0, model_version="m")


def test_a_line_with_a_verdict_records_it() -> None:
    flagged = orjson.loads(processed_line(READING, "aggregated", _verdict(7.25, True)))
    normal = orjson.loads(processed_line(READING, "aggregated", _verdict(0.125, False)))
    assert (flagged["anomaly"], flagged["anomaly_score"], flagged["severity"]) == (True, 7.25, "critical")
    assert (normal["anomaly"], normal["anomaly_score"], normal["severity"]) == (False, 0.125, "none")


def test_a_line_without_a_verdict_has_no_verdict_fields() -> None:
    line = orjson.loads(processed_line(READING, "duplicate"))
    assert not {"anomaly", "anomaly_score", "severity"} & set(line)
    assert line["status"] == "duplicate"


def test_the_line_is_deterministic() -> None:
    verdict = _verdict(3.5, True)
    assert processed_line(READING, "aggregated", verdict) == processed_line(READING, "aggregated", verdict)
    # sorted keys: the verdict fields take their place in key order
    assert list(orjson.loads(processed_line(READING, "aggregated", verdict))) == sorted(
        orjson.loads(processed_line(READING, "aggregated", verdict)))
