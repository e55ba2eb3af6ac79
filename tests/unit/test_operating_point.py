"""The shipped operating point is the one the selection code chooses, and calibration uses it."""

from __future__ import annotations

import numpy as np
import pytest

from functions.core.archive_lines import ProcessedLine
from functions.detector import pca_tq
from model import device_calibration as dc
from model import operating_point
from model.generalization import Sources
from model.pca_tq import calibrate
from model.skab import load_file
from testkit.fakes import InMemoryArchive, InMemoryDeviceRegistry
from testkit.shared_data import SKAB_DIR, TEP_DIR

SKAB = SKAB_DIR
TEP = TEP_DIR
needs_skab = pytest.mark.skipif(not (SKAB / "valve1").is_dir(), reason="shared SKAB data not present")


needs_tep = pytest.mark.skipif(not (TEP / "d00.dat").is_file(), reason="shared TEP data not present")


@needs_skab
@needs_tep
def test_the_shipped_artifact_is_what_the_evaluation_chooses_on_the_shared_data():
    # GIVEN the shared SKAB and TEP data and the simulator's kinds
    # WHEN the leave-one-family-out evaluation's rule chooses on every family
    chosen = operating_point.choose(Sources(SKAB, TEP))
    # THEN the committed artifact (which the build ships to the Lambda and the calibrator) is that choice
    assert operating_point.load() == chosen


def test_the_shipped_config_is_the_artifacts():
    artifact = operating_point.load()
    cfg = operating_point.config(artifact)
    assert cfg.label() == artifact["label"]
    assert cfg.as_dict() == artifact["config"]


def test_a_tampered_artifact_is_refused(tmp_path):
    bad = tmp_path / "op.json"
    bad.write_text('{"format": "something"}')
    with pytest.raises(ValueError, match="not a"):
        operating_point.load(bad)


@needs_skab
def test_a_csv_calibration_scores_as_the_offline_evaluation_on_the_same_mapped_channels():
    """CLI calibration of a SKAB file = model.pca_tq.calibrate of its columns as the pipeline sees them."""
    path = SKAB / "valve1" / "1.csv"
    registry = InMemoryDeviceRegistry([{"device_id": "pump-1"}])
    stored = dc.calibrate_device("pump-1", dc.csv_rows(path), registry, 400, "csv")
    cal = pca_tq.PcaCalibration.from_dict(registry.items["pump-1"]["calibration"])
    every = ["accel1_rms", "accel2_rms", "current", "pressure", "temperature", "thermocouple", "voltage",
             "humidity"]  # all eight SKAB channels, under the pipeline's names
    assert stored["channels"] == every
    assert cal.channels == tuple(every)

    d = load_file(path)
    mapped = d.values.copy()
    mapped[:, d.channels.index("Pressure")] = mapped[:, d.channels.index("Pressure")] * 100 + 900
    offline = calibrate(d.channels, mapped, operating_point.config())
    np.testing.assert_allclose(cal.scale, offline.scale, rtol=1e-12)
    np.testing.assert_allclose(cal.t2_limit, offline.t2_limit, rtol=1e-9)
    cols = [d.channels.index(c) for c in offline.channels]
    assert (pca_tq.alarms(cal, mapped[:, cols]) == pca_tq.alarms(offline, mapped[:, cols])).all()


@needs_skab
def test_archive_and_csv_calibrations_of_the_same_readings_are_equal():
    path = SKAB / "valve2" / "3.csv"
    rows = dc.csv_rows(path)[:450]
    # out of order, as objects of several shards can be
    lines = [_line("pump-1", ms, ch) for ms, ch in reversed(rows)]
    lines.append(_line("other", 1, {}))
    names = dc.pipeline_names(operating_point.load()["channels"])
    from_archive = dc.fit(dc.archive_rows(_archive(lines), "pump-1"), names, 400)
    from_csv = dc.fit(rows, names, 400)
    assert from_archive == from_csv


def _line(device_id, ms, channels):
    return ProcessedLine(device_id, ms, channels, "", "", "shardId-0", str(ms), "aggregated").encode()


def _archive(lines):
    """An archive holding one processed object with ``lines``."""
    archive = InMemoryArchive()
    archive.put_jsonl_gz("processed/dt=2026-01-01/hour=00/a.jsonl.gz", lines)
    return archive


@needs_skab
def test_pending_devices_are_calibrated_once_their_first_n_readings_are_archived():
    rows = dc.csv_rows(SKAB / "valve1" / "1.csv")
    line = _line
    lines = [line("ready", ms, ch) for ms, ch in rows[:400]]
    lines += [line("early", ms, ch) for ms, ch in rows[:399]]
    lines += [line("plain", ms, ch) for ms, ch in rows[:400]]
    registry = InMemoryDeviceRegistry([
        {"device_id": "ready", "calibration_request": {"rows": 400}},
        {"device_id": "early", "calibration_request": {"rows": 400}},
        {"device_id": "plain"},  # never asked: stays on the fleet forest
    ])
    result = dc.calibrate_pending(list(registry.items.values()), _archive(lines), registry)
    assert result == {"ready": {"status": "calibrated", "archived": 400, "rows": 400},
                      "early": {"status": "waiting", "archived": 399, "rows": 400}}
    assert "calibration" in registry.items["ready"]
    assert "calibration_request" not in registry.items["ready"]  # done: not pending any more
    assert "calibration" not in registry.items["early"]
    assert "calibration" not in registry.items["plain"]
    assert dc.pending(registry.items.values()) == {"early": 400}


def test_too_few_readings_is_an_error_not_a_calibration():
    with pytest.raises(ValueError, match="calibration needs 400"):
        dc.fit([(i, {"a": float(i), "b": 1.0}) for i in range(100)], ("a", "b"), 400)


def test_calibrating_an_unregistered_device_fails():
    from functions.core.errors import VersionConflict

    rows = [(i, {"current": 1.0 + np.sin(i), "pressure": 1000.0 + np.cos(i), "voltage": 230.0 + i % 7,
                 "humidity": 32.0 + (i % 3), "temperature": 70.0 + np.sin(i / 3),
                 "thermocouple": 25.0 + i % 5,
                 "accel1_rms": 0.03 + 0.001 * (i % 11), "accel2_rms": 0.04 + 0.001 * np.cos(i / 7)})
            for i in range(400)]
    with pytest.raises(VersionConflict):
        dc.calibrate_device("nobody", rows, InMemoryDeviceRegistry(), 400, "test")
