"""Config from the environment, the control endpoint's logic, replay, labels and the CLI parser."""

from __future__ import annotations

import csv
from dataclasses import replace
from http import HTTPStatus
from pathlib import Path
from typing import Any

import orjson
import pytest

from simulator.cli import ProgressPrinter, grow_hook, parse_config
from simulator.config import ConfigError, SimulatorConfig
from simulator.control import LiveConfig, handle
from simulator.credentials import device_secret, hash_secret
from simulator.fleet import generate_fleet
from simulator.labels import LabelWriter
from simulator.replay import SKAB_MAPPING, parse_mapping, replay_readings
from simulator.stream import generate_readings
from testkit.shared_data import SKAB_DIR

SKAB_FILE = SKAB_DIR / "valve1" / "0.csv"


def test_from_env_reads_sim_variables() -> None:
    # GIVEN SIM_* variables WHEN read THEN they land typed in the config; AWS_* are honoured too
    env = {
        "SIM_DEVICES": "250",
        "SIM_RATE_HZ": "0.5",
        "SIM_SEED": "7",
        "SIM_ANOMALY_RATE": "0.02",
        "SIM_ANOMALY_MIX": "spike=2,drift",
        "SIM_MALFORMED_RATE": "0.01",
        "SIM_DURATION_S": "30",
        "SIM_SINK": "kinesis",
        "SIM_STREAM_NAME": "readings",
        "SIM_INGEST_URL": "http://127.0.0.1:9/ingest",
        "SIM_DEVICE_SECRET": "fleet-s3cr3t-value",
        "SIM_CONTROL_PORT": "0",
        "SIM_BURST": "true",
        "SIM_EXTRA_CHANNELS": "co2,light",
        "SIM_START_TIME": "2026-11-21T23:05:16Z",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:4566",
    }
    config = SimulatorConfig.from_env(env)
    assert (config.devices, config.rate_hz, config.seed) == (250, 0.5, 7)
    assert config.anomaly_mix == {"spike": 2.0, "drift": 1.0}
    assert config.sink == "kinesis"
    assert config.stream_name == "readings"
    assert config.endpoint_url == "http://127.0.0.1:4566"
    assert config.burst is True
    assert config.extra_channels == ("co2", "light")
    assert config.control_port == 0
    assert config.start_time is not None
    assert config.start_time.year == 2026
    assert config.device_secret == "fleet-s3cr3t-value"
    assert "fleet-s3cr3t-value" not in repr(config)


@pytest.mark.parametrize(
    "env",
    [{"SIM_DEVICES": "0"}, {"SIM_RATE_HZ": "abc"}, {"SIM_ANOMALY_MIX": "meteor=1"}, {"SIM_SINK": "kafka"}],
)
def test_from_env_fails_fast_on_bad_values(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        SimulatorConfig.from_env(env)


def test_cli_flags_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN an env var and a flag for the same option WHEN parsed THEN the flag wins
    monkeypatch.setenv("SIM_DEVICES", "5")
    monkeypatch.setenv("SIM_SEED", "3")
    config = parse_config(["run", "--devices", "9", "--burst", "--sink", "null"])
    assert (config.devices, config.seed, config.burst, config.sink) == (9, 3, True, "null")


def test_control_endpoint_logic() -> None:
    # GIVEN a live config
    live = LiveConfig(SimulatorConfig(devices=10))
    # WHEN read, updated and given bad input
    status, body = handle(live, lambda: {"produced": 3}, "GET", "/config")
    assert status == HTTPStatus.OK
    assert body["devices"] == 10
    status, body = handle(
        live,
        dict,
        "POST",
        "/config",
        b'{"devices": 20, "rate_hz": 2, "anomaly_rate": 0.1, "malformed_rate": 0.05}',
    )
    # THEN changes apply (version bumps so the runner picks them up) and bad ones are refused whole
    assert status == HTTPStatus.OK
    assert (body["devices"], body["rate_hz"], body["target_rate_per_s"]) == (20, 2.0, 40.0)
    assert live.version == 1
    for bad in (b'{"devices": 0}', b'{"seed": 1}', b'{"rate_hz": "fast"}', b"[1]", b"{nope"):
        status, body = handle(live, dict, "POST", "/config", bad)
        assert status == HTTPStatus.BAD_REQUEST, bad
        assert "error" in body
    assert live.config.devices == 20
    assert live.version == 1
    assert handle(live, lambda: {"produced": 3}, "GET", "/stats") == (HTTPStatus.OK, {"produced": 3})
    assert handle(live, dict, "GET", "/nope")[0] == HTTPStatus.NOT_FOUND


@pytest.mark.skipif(not SKAB_FILE.exists(), reason="SKAB subset not present")
def test_replay_skab_as_one_device() -> None:
    # GIVEN a SKAB file WHEN replayed from a chosen start THEN each row is a reading of one device
    items = list(replay_readings(str(SKAB_FILE), device_id="skab-valve1-0", start_ms=1_780_000_000_000))
    assert len(items) == 1147
    first = orjson.loads(items[0].payload)
    assert first["device_id"] == "skab-valve1-0"
    assert first["temperature"] == pytest.approx(79.3366)
    assert first["pressure"] == pytest.approx(0.054711 * 100 + 900)
    assert set(first["extra"]) == {"accel1_rms", "accel2_rms", "current", "voltage", "thermocouple"}
    # AND time keeps its recorded spacing (1 s), shifted to the start
    assert items[1].send_ms - items[0].send_ms == 1000
    assert items[0].send_ms == 1_780_000_000_000
    # AND SKAB's anomaly column becomes the ground truth
    assert {p.kind for p in items} == {"normal", "drift"}


def test_mapping_parser() -> None:
    mapping = parse_mapping("Temperature=temperature, Pressure=pressure*100+1000,Current=extra.current")
    assert mapping["Pressure"].apply("0.5") == pytest.approx(1050.0)
    assert mapping["Current"].channel == "extra.current"
    assert set(SKAB_MAPPING) >= {"Temperature", "Pressure"}
    with pytest.raises(ValueError, match="bad"):
        parse_mapping("Temperature=kelvin")


def test_labels_file_has_one_row_per_record_with_expected_reason(tmp_path: Path) -> None:
    # GIVEN produced records with anomalies and malformed ones
    config = SimulatorConfig(devices=20, count=2000, anomaly_rate=0.2, malformed_rate=0.2)
    items = list(generate_readings(config, generate_fleet(20, 1)))
    path = tmp_path / "labels.csv"
    # WHEN they are written to a labels file
    with LabelWriter(str(path)) as writer:
        for produced in items:
            writer.write(produced)
    rows = list(csv.DictReader(path.open()))
    # THEN rows match records and malformed ones carry the quarantine reason to expect
    assert len(rows) == len(items)
    assert [r["label"] for r in rows] == [p.kind for p in items]
    reasons = {r["label"]: r["expected_reason"] for r in rows if r["category"] == "malformed"}
    assert reasons["invalid_json"] == "malformed_json"
    assert reasons["stale_timestamp"] == "late"
    assert all(r["expected_reason"] == "" for r in rows if r["category"] != "malformed")
    # AND JSON lines work too
    jsonl = tmp_path / "labels.jsonl"
    with LabelWriter(str(jsonl)) as writer:
        writer.write(items[0])
    assert orjson.loads(jsonl.read_text().splitlines()[0])["device_id"] == items[0].device_id


class FakeDevicesTable:
    """batch_write_item of the devices table, recorded; ``fail`` makes every call raise."""

    def __init__(self, fail: bool = False) -> None:
        self.items: dict[str, dict[str, dict[str, str]]] = {}
        self.fail = fail

    def batch_write_item(self, RequestItems: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        if self.fail:
            raise ConnectionError("Could not connect to the endpoint URL")
        for request in RequestItems["devs"]:
            item = request["PutRequest"]["Item"]
            self.items[item["device_id"]["S"]] = item
        return {}


def _kinesis_run(devices: int) -> SimulatorConfig:
    return SimulatorConfig(devices=devices, sink="kinesis", devices_table="devs", device_secret="fleet-s",
                           endpoint_url="http://127.0.0.1:4566", seed=42)


def test_devices_added_live_are_registered_with_credentials_before_they_send() -> None:
    # GIVEN a run to Kinesis whose first 20 devices were registered at start-up
    table = FakeDevicesTable()
    live = LiveConfig(_kinesis_run(20), on_grow=grow_hook(_kinesis_run(20), ProgressPrinter(), client=table))
    # WHEN the README's tuning adds 30 devices
    status, body = handle(live, dict, "POST", "/config", b'{"devices": 50, "rate_hz": 2}')
    # THEN exactly the 30 new ones are written, each with the credential hash `register` would write
    assert status == HTTPStatus.OK, body
    assert body["devices"] == 50
    assert sorted(table.items) == [f"dev-{i:06d}" for i in range(20, 50)]
    item = table.items["dev-000049"]
    assert item["credential_hash"]["S"] == hash_secret("dev-000049", device_secret("fleet-s", "dev-000049"))
    # AND shrinking and growing again does not re-put devices registered before
    table.items.clear()
    handle(live, dict, "POST", "/config", b'{"devices": 10}')
    assert handle(live, dict, "POST", "/config", b'{"devices": 55}')[0] == HTTPStatus.OK
    assert sorted(table.items) == [f"dev-{i:06d}" for i in range(50, 55)]


def test_devices_that_cannot_be_registered_are_refused_with_the_command() -> None:
    # GIVEN a run whose devices table cannot be reached
    live = LiveConfig(_kinesis_run(20), on_grow=grow_hook(_kinesis_run(20), ProgressPrinter(),
                                                          client=FakeDevicesTable(fail=True)))
    # WHEN devices are added THEN nothing changes, and the answer says why and what to run
    status, body = handle(live, dict, "POST", "/config", b'{"devices": 50}')
    assert status == HTTPStatus.SERVICE_UNAVAILABLE
    assert "devices 20..49 could not be registered in devs" in body["error"]
    assert body["command"] == (
        "SIM_DEVICES=50 SIM_SEED=42 SIM_DEVICES_TABLE=devs AWS_ENDPOINT_URL=http://127.0.0.1:4566 "
        'SIM_DEVICE_SECRET="$SIM_DEVICE_SECRET" .venv/bin/python -m simulator register')
    assert (live.config.devices, live.version) == (20, 0)
    # AND a run that does not feed the pipeline (stdout, file, null) registers nothing
    assert grow_hook(SimulatorConfig(devices=2, sink="null"), ProgressPrinter()) is None


def test_mqtt_devices_added_live_need_an_identity_first(tmp_path: Path) -> None:
    # GIVEN a run over MQTT whose first 2 devices have identities, and dev-000002 has one too
    for i in range(3):
        (tmp_path / f"dev-{i:06d}").mkdir()
        (tmp_path / f"dev-{i:06d}" / "identity.json").write_text("{}")
    config = replace(_kinesis_run(2), sink="mqtt", mqtt_key_dir=str(tmp_path))
    table = FakeDevicesTable()
    live = LiveConfig(config, on_grow=grow_hook(config, ProgressPrinter(), client=table))
    # WHEN tuning adds devices that have no certificate THEN nothing changes, and the answer names the
    # provisioning command (devices without identities would only fail to connect)
    status, body = handle(live, dict, "POST", "/config", b'{"devices": 5}')
    assert status == HTTPStatus.SERVICE_UNAVAILABLE
    assert "2 new devices (dev-000003..) have no MQTT identity" in body["error"]
    provision = f"devices provision --stack {tmp_path.name} --key-dir {tmp_path} --count 5"
    assert body["command"].endswith(provision)
    assert (live.config.devices, table.items) == (2, {})
    # AND a device that has one is added (and registered in the devices table) as over Kinesis
    assert handle(live, dict, "POST", "/config", b'{"devices": 3}')[0] == HTTPStatus.OK
    assert sorted(table.items) == ["dev-000002"]
