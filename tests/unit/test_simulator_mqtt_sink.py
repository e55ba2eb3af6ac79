"""The simulator's MQTT sink: each device publishes as itself to its own topic; counts follow the broker.

The paho client is replaced by a fake broker connection (tests/integration/test_mqtt_ingest.py runs the
real one over mTLS against the embedded emulator).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from simulator.mqtt_sink import MqttSink
from simulator.stream import Produced


class _Info:
    def __init__(self, mid: int, acked: bool) -> None:
        self.mid, self._acked = mid, acked

    def wait_for_publish(self, timeout: float) -> None:
        return None

    def is_published(self) -> bool:
        return self._acked


class _Reason:
    def __init__(self, failure: bool) -> None:
        self.is_failure = failure


class _FakeClient:
    """Acknowledges every publish; refuses (MQTT 5 PUBACK failure) those to another device's topic."""

    def __init__(self, thing: str) -> None:
        self.thing, self.published, self.on_publish = thing, [], None

    def publish(self, topic: str, payload: bytes, qos: int) -> _Info:
        self.published.append((topic, payload, qos))
        mid = len(self.published)
        self.on_publish(None, None, mid, _Reason(f"/{self.thing}/" not in topic), None)
        return _Info(mid, acked=True)

    def disconnect(self) -> None: ...

    def loop_stop(self) -> None: ...


def _identity(key_dir: Path, thing: str, topic: str | None = None) -> None:
    (key_dir / thing).mkdir(parents=True)
    (key_dir / thing / "identity.json").write_text(json.dumps({
        "thing_name": thing, "certificate_id": "c", "certificate_arn": "a",
        "topic": topic or f"s/devices/{thing}/readings", "endpoint": "127.0.0.1:8883"}))


def test_each_device_publishes_as_itself_and_the_counts_follow_the_broker(tmp_path: Path) -> None:
    _identity(tmp_path, "dev-a")
    _identity(tmp_path, "dev-b", topic="s/devices/dev-a/readings")  # a misconfigured identity: refused
    _identity(tmp_path, "dev-revoked")
    clients: dict[str, _FakeClient] = {}

    def factory(thing: str, key_dir: Path, endpoint: str, timeout_s: float) -> tuple[Any, str | None]:
        if thing == "dev-revoked":
            return None, "connect refused: Not authorized"
        clients[thing] = _FakeClient(thing)
        return clients[thing], None

    sink = MqttSink(tmp_path, client_factory=factory)
    sink.setup()
    for device, payload in [("dev-a", b'{"device_id":"dev-a"}'), ("dev-a", b'{"device_id":"dev-x"}'),
                            ("dev-b", b"{}"), ("dev-revoked", b"{}"), ("dev-unknown", b"{}")]:
        sink.add(Produced(device, payload, "normal", 0))
    sink.close()
    # dev-a's two messages both go to its own topic with QoS 1, whatever their payload names
    assert [(t, q) for t, _, q in clients["dev-a"].published] == [("s/devices/dev-a/readings", 1)] * 2
    stats = sink.stats.as_dict()
    assert (stats["sent"], stats["rejected"], stats["failed"]) == (2, 1, 2)
    assert stats["errors"] == {"connect refused: Not authorized": 1, "connect_refused": 1, "no_identity": 1}
