"""The in-stack calibrator (functions/calibrator): pending devices, the archive partitions it reads, the
fit, and that it stores the same record as ``iotpipe model calibrate --from-archive`` for the same rows."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from functions.calibrator import calibration as calib
from functions.calibrator import handler as calibrator_handler
from functions.core.archive_layout import PROCESSED_PREFIX
from functions.core.archive_lines import ProcessedLine
from functions.core.timestamps import parse_ms
from functions.detector import pca_fit
from functions.detector.pca_tq import PcaCalibration
from model import device_calibration as dc
from model import operating_point
from simulator.replay import SKAB_MAPPING
from testkit.fakes import InMemoryArchive, InMemoryDeviceRegistry

OP = pca_fit.load_operating_point()
NAMES = calib.pipeline_names(OP)
REGISTERED = "2026-03-01T10:20:00Z"
T0 = parse_ms(REGISTERED)
NOW = T0 + 3 * 3600_000


def _rows(n: int, start_ms: int = T0, seed: int = 1) -> list[tuple[int, dict[str, float]]]:
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 2))
    noise = rng.normal(size=(n, 4))
    out = []
    for i in range(n):
        a, b = (float(v) for v in base[i])
        e = [float(v) for v in noise[i]]
        ch = {"current": 1.0 + 0.1 * a, "pressure": 1000.0 + 5 * a + float(rng.normal()),
              "voltage": 230.0 + b, "humidity": 32.0 + 0.5 * b + 0.1 * a, "temperature": 70.0 + 0.2 * e[0],
              "accel1_rms": 0.03 + 0.001 * e[1], "accel2_rms": 0.04 + 0.001 * e[2],
              "thermocouple": 25.0 + 0.1 * e[3] + 0.05 * a}
        out.append((start_ms + 1000 * i, ch))
    return out


def _line(device_id: str, ms: int, channels: dict[str, float], status: str = "aggregated") -> bytes:
    return ProcessedLine(device_id, ms, channels, "s", "", "shardId-000000000000", str(ms), status).encode()


def _key(ms: int, name: str) -> str:
    stamp = calib.format_ms(ms)
    return f"{PROCESSED_PREFIX}/dt={stamp[:10]}/hour={stamp[11:13]}/{name}.jsonl.gz"


def test_the_fit_and_the_operating_point_are_the_offline_ones():
    # One implementation: model.pca_tq.calibrate_columns is functions.detector.pca_fit's, and the Lambda
    # reads the same operating point as the CLI.
    cfg = operating_point.config()
    for field in ("variance", "statistic", "quantile", "factor", "persist_k", "persist_n", "instant_factor",
                  "lags", "limits"):
        assert getattr(OP, field) == getattr(cfg, field)
    assert OP.label == operating_point.load()["label"]
    assert OP.channels == tuple(operating_point.load()["channels"])
    assert dc.pipeline_names(operating_point.load()["channels"], SKAB_MAPPING) == NAMES
    values = np.array([[r[c] for c in NAMES] for _, r in _rows(400)])
    from model.pca_tq import calibrate_columns

    assert calibrate_columns(NAMES, values, cfg, 400) == pca_fit.calibrate_columns(NAMES, values, OP, 400)


def test_the_channel_names_match_the_simulator():
    assert {k: v.channel.removeprefix("extra.") for k, v in SKAB_MAPPING.items()} == calib.PIPELINE_NAMES


def test_pending_devices_are_calibrated_from_their_own_partitions_once_n_readings_are_archived():
    archive = InMemoryArchive()
    registry = InMemoryDeviceRegistry([
        {"device_id": "ready", "registered_at": REGISTERED, "calibration_request": {"rows": 400}},
        {"device_id": "early", "registered_at": REGISTERED, "calibration_request": {"rows": 400}},
        {"device_id": "plain", "registered_at": REGISTERED},  # never asked: stays on the fleet forest
        {"device_id": "done", "calibration_request": {"rows": 400}, "calibration": {"format": "x"}},
    ])
    # An hour before the registration: another life of "ready" (a previous owner), never read.
    stale = [_line("ready", ms, {**ch, "current": 99.0}) for ms, ch in _rows(400, T0 - 3600_000, seed=9)]
    archive.put_jsonl_gz(_key(T0 - 3600_000, "stale"), stale)
    rows = _rows(450)
    # Out of order across two objects (two shards), one redelivered duplicate, one quarantine-like line.
    archive.put_jsonl_gz(_key(T0, "b"), [_line("ready", ms, ch) for ms, ch in reversed(rows[200:])])
    archive.put_jsonl_gz(_key(T0 + 3600_000, "a"), [_line("ready", ms, ch) for ms, ch in rows[:250]]
                         + [_line("early", ms, ch) for ms, ch in rows[:399]]
                         + [_line("plain", ms, ch) for ms, ch in rows]
                         + [_line("early", 1, rows[0][1], status="duplicate")])
    result = calib.calibrate_pending(registry, archive, OP, NOW)
    assert result == {"ready": {"status": "calibrated", "archived": 450, "rows": 400},
                      "early": {"status": "waiting", "archived": 399, "rows": 400}}
    stored = dict(registry.items["ready"]["calibration"])
    assert "calibration_request" not in registry.items["ready"]
    assert stored["source"] == "archive"
    assert stored["operating_point"] == OP.label
    expected = calib.fit(rows, NAMES, 400, OP)  # the first 400 by event time, not the stale ones
    assert PcaCalibration.from_dict(stored) == expected
    assert "calibration" not in registry.items["early"]
    assert "calibration" not in registry.items["plain"]
    # Nothing left to do for "ready"; on demand, only the named devices are looked at.
    assert calib.calibrate_pending(registry, archive, OP, NOW, device_ids=["ready", "plain"]) == {}


def test_a_request_bounds_the_partitions_listed_and_read():
    listed: list[tuple[str, str]] = []
    read: list[str] = []

    class Spy(InMemoryArchive):
        def listing(self, prefix, start_after=""):
            listed.append((prefix, start_after))
            return super().listing(prefix, start_after)

        def read(self, key):
            read.append(key)
            return super().read(key)

    archive = Spy()
    rows = _rows(10)
    for day in range(3):  # one object a day, the request on the second day at 10:20
        lines = [_line("pump-1", ms, ch) for ms, ch in rows]
        archive.put_jsonl_gz(_key(T0 + day * 86_400_000, f"d{day}"), lines)
    archive.put_jsonl_gz(_key(T0 + 86_400_000 - 3600_000, "hour-before"), [_line("pump-1", 1, rows[0][1])])
    request = calib.Request(400, T0 + 86_400_000)
    assert len(calib.archive_rows(archive, {"pump-1": request})["pump-1"]) == 10  # event times once
    # The listing starts at the request's hour (S3's StartAfter): older partitions are not even listed.
    assert listed == [("processed/", "processed/dt=2026-03-02/hour=10")]
    assert read == [_key(T0 + 86_400_000, "d1"), _key(T0 + 2 * 86_400_000, "d2")]


def test_the_calibrator_stores_the_same_record_as_calibrate_from_archive():
    rows = _rows(430)
    archive = InMemoryArchive()
    archive.put_jsonl_gz(_key(T0, "x"), [_line("pump-1", ms, ch) for ms, ch in reversed(rows)])

    cli = InMemoryDeviceRegistry([{"device_id": "pump-1"}])
    # iotpipe model calibrate --device pump-1 --from-archive (cmd_calibrate's two calls)
    dc.calibrate_device("pump-1", dc.archive_rows(archive, "pump-1"), cli, 400, "archive")
    lam = InMemoryDeviceRegistry([{"device_id": "pump-1", "registered_at": REGISTERED,
                                   "calibration_request": {"rows": 400}}])
    calib.calibrate_pending(lam, archive, OP, NOW)
    by_cli, by_lambda = dict(cli.items["pump-1"]["calibration"]), dict(lam.items["pump-1"]["calibration"])
    assert by_cli.pop("calibrated_at")
    assert by_lambda.pop("calibrated_at")
    assert by_cli == by_lambda
    # and --pending (run locally with the default mapping) is the same code path again
    local = InMemoryDeviceRegistry([{"device_id": "pump-1", "calibration_request": {"rows": 400}}])
    dc.calibrate_pending(list(local.items.values()), archive, local)
    by_pending = dict(local.items["pump-1"]["calibration"])
    by_pending.pop("calibrated_at")
    assert by_pending == by_lambda


def test_on_demand_events_are_validated():
    assert calibrator_handler.device_ids({}) is None
    assert calibrator_handler.device_ids({"device_ids": ["b", "a", "b"]}) == ["a", "b"]
    for bad in ({"device_ids": "a"}, {"device_ids": [1]}, {"device_ids": [""]},
                {"device_ids": ["d"] * (calibrator_handler.MAX_DEVICES_PER_CALL + 1)}):
        with pytest.raises(ValueError, match="device"):
            calibrator_handler.device_ids(bad)
    assert "error" in calibrator_handler.handler({"device_ids": "a"}, None)


def test_the_bundle_ships_the_operating_point_and_the_calibrator():
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    try:
        import build
    finally:
        sys.path.pop(0)
    names = {arc for arc, _ in build._code_files()}
    assert f"functions/detector/artifacts/{pca_fit.ARTIFACT_NAME}" in names
    assert "functions/calibrator/handler.py" in names


def test_a_request_can_name_the_device_whose_readings_calibrate_it():
    # replay-eval's <id> is calibrated on <id>-cal's rows; a replacement on its predecessor's
    archive = InMemoryArchive()
    rows = _rows(400)
    archive.put_jsonl_gz(_key(T0, "x"), [_line("old-pump", ms, ch) for ms, ch in rows])
    registry = InMemoryDeviceRegistry([{"device_id": "new-pump", "registered_at": REGISTERED,
                                        "calibration_request": {"rows": 400, "from_device": "old-pump"}}])
    assert calib.calibrate_pending(registry, archive, OP, NOW)["new-pump"]["status"] == "calibrated"
    stored = dict(registry.items["new-pump"]["calibration"])
    assert stored["source"] == "archive:old-pump"
    assert PcaCalibration.from_dict(stored) == calib.fit(rows, NAMES, 400, OP)


def test_each_device_reads_only_the_partitions_after_its_own_registration():
    # GIVEN two pending devices registered two hours apart, so the listing starts at the earlier one's
    # hour; the later device's id has readings of a previous life in that first hour
    archive = InMemoryArchive()
    later = T0 + 2 * 3600_000
    registry = InMemoryDeviceRegistry([
        {"device_id": "first", "registered_at": REGISTERED, "calibration_request": {"rows": 400}},
        {"device_id": "second", "registered_at": calib.format_ms(later)[:19] + "Z",
         "calibration_request": {"rows": 400}},
    ])
    rows = _rows(400)
    archive.put_jsonl_gz(_key(T0, "x"), [_line("first", ms, ch) for ms, ch in rows]
                         + [_line("second", ms, ch) for ms, ch in rows])
    # WHEN the calibrator runs
    result = calib.calibrate_pending(registry, archive, OP, NOW)
    # THEN the first is calibrated from that hour, the second waits: nothing it sent since is archived
    assert result == {"first": {"status": "calibrated", "archived": 400, "rows": 400},
                      "second": {"status": "waiting", "archived": 0, "rows": 400}}


# --- each request on its own: refused with a reason, never the run -------------------------------


class _FailingFor(InMemoryDeviceRegistry):
    """Saving one device's calibration fails (its write): the others must be calibrated all the same."""

    def __init__(self, items, failing: str) -> None:
        super().__init__(items)
        self.failing = failing

    def save_calibration(self, device_id, calibration):
        if device_id == self.failing:
            from functions.core.errors import StoreError

            raise StoreError("devices.update_item: simulated", transient=True)
        super().save_calibration(device_id, calibration)


def test_bad_requests_and_degenerate_rows_are_refused_per_device_and_the_rest_calibrated():
    # GIVEN requests the calibrator cannot serve beside good ones, in one scheduled run
    asks = {"abc": {"rows": "abc"}, "zero": {"rows": 0}, "minus": {"rows": -5}, "flag": {"rows": True},
            "small": {"rows": 39}, "huge": {"rows": 10**9}, "who": {"rows": 400, "from_device": 7},
            "stuck": {"rows": 400}, "ok": {"rows": 400}, "write-fails": {"rows": 400}}
    registry = _FailingFor([{"device_id": d, "registered_at": REGISTERED, "calibration_request": r}
                            for d, r in asks.items()] + [
        {"device_id": "not-a-map", "registered_at": REGISTERED, "calibration_request": "400"}],
        failing="write-fails")
    archive = InMemoryArchive()
    rows = _rows(450)
    stuck = [(ms, dict.fromkeys(ch, 1.0)) for ms, ch in rows]  # a stuck sensor: every row the same
    archive.put_jsonl_gz(_key(T0, "a"), [_line(d, ms, ch) for d in ("ok", "write-fails") for ms, ch in rows]
                         + [_line("stuck", ms, ch) for ms, ch in stuck])
    # WHEN the calibrator runs over every device
    result = calibrator_run(registry, archive)
    # THEN each bad request is refused with its reason, recorded on the item (the request removed) ...
    refused = {d: r["reason"] for d, r in result.items() if r["status"] == "refused"}
    assert set(refused) == {"abc", "zero", "minus", "flag", "small", "huge", "who", "stuck", "not-a-map"}
    assert "is not an integer" in refused["abc"]
    assert "is not an integer" in refused["flag"]
    bounds = f"not in [{calib.MIN_ROWS_PER_CHANNEL * len(NAMES)}, {calib.MAX_ROWS}]"
    for d in ("zero", "minus", "small", "huge"):
        assert bounds in refused[d], refused[d]
    assert "constant" in refused["stuck"]
    for d in refused:
        item = registry.items[d]
        assert "calibration_request" not in item
        assert "calibration" not in item
        assert item["calibration_refused"]["reason"] == refused[d]
    assert registry.items["abc"]["calibration_refused"]["request"] == {"rows": "abc"}
    # ... the device whose write failed is reported and keeps its request for the next run ...
    assert result["write-fails"]["status"] == "failed"
    assert "calibration_request" in registry.items["write-fails"]
    # ... and the good one is calibrated in the same run
    assert result["ok"]["status"] == "calibrated"
    assert "calibration" in registry.items["ok"]


def calibrator_run(registry, archive):
    return calib.calibrate_pending(registry, archive, OP, NOW)


def test_the_fit_refuses_constant_rows_and_checks_what_it_returns():
    from functions.detector.calibration_check import CalibrationInvalid

    rows = [(ms, dict.fromkeys(ch, 5.0)) for ms, ch in _rows(400)]
    with pytest.raises(CalibrationInvalid, match="constant"):
        calib.fit(rows, NAMES, 400, OP)
    with pytest.raises(CalibrationInvalid, match="rows -5"):
        calib.fit(_rows(400), NAMES, -5, OP)
    # Without the rows check, constant rows give the record the processor refuses (limits at the floor)
    values = np.array([[5.0] * len(NAMES)] * 400)
    from functions.detector.calibration_check import problems

    assert problems(pca_fit.calibrate_columns(NAMES, values, OP, 400).to_dict()) is not None


def test_the_handler_counts_refused_and_failed_devices(monkeypatch):
    monkeypatch.setattr(calibrator_handler, "calibrate_pending", lambda *a, **k: {
        "a": {"status": "refused", "reason": "x", "archived": 0, "rows": None},
        "b": {"status": "calibrated", "archived": 400, "rows": 400}})
    import functions.adapters.archive as archive_mod
    import functions.adapters.devices as devices_mod

    monkeypatch.setattr(archive_mod, "S3Archive", lambda: None)
    monkeypatch.setattr(devices_mod, "DynamoDeviceRegistry", lambda: None)
    out = calibrator_handler.handler({}, None)
    assert (out["refused"], out["calibrated"], out["waiting"], out["failed"]) == (1, 1, 0, 0)
