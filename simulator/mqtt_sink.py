"""The MQTT sink: every device publishes its own readings to IoT Core over mTLS, as itself.

Each device connects with the certificate ``iotpipe devices provision`` stored for it (client id = its
thing name = its device id) and publishes each record as one message (QoS 1) to its own topic,
``<stack>/devices/<thing>/readings``. The broker's topic rules take the readings into the pipeline
(docs/security.md); a record whose payload names another device still goes out on the producing
device's own topic (that is all its policy allows) and the rules refuse it there, counted.

Key material is read from the key directory's layout (written by iotpipe/devices/provision.py, which
the simulator image does not ship): ``ca.pem`` (the broker's CA, where the target has its own) and
per device ``<thing>/identity.json``, ``certificate.pem``, ``private.key``.

``sent`` counts messages the broker acknowledged (PUBACK), ``rejected`` those it refused (MQTT 5
PUBACK with a failure reason, under enforced IoT policies), ``failed`` those that never got an
acknowledgement, including every record of a device that has no identity or whose connection the
broker refused (a revoked certificate).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulator.sinks import Sink
from simulator.stream import Produced

IDENTITY_FILE = "identity.json"
CERT_FILE = "certificate.pem"
KEY_FILE = "private.key"
CA_FILE = "ca.pem"


@dataclass
class _Device:
    thing: str
    topic: str
    client: Any = None
    refused: str | None = None  # why this device cannot publish (no identity, connection refused)
    pending: list[Any] = field(default_factory=list)  # MQTTMessageInfo of unacknowledged publishes
    failed_mids: set[int] = field(default_factory=set)


def connect(thing: str, key_dir: Path, endpoint: str, timeout_s: float,
            client_id: str | None = None) -> tuple[Any, str | None]:
    """A connected paho client with ``thing``'s certificate (network loop running), or (None, why not).

    The client id is the thing name unless ``client_id`` says otherwise (a test of the device policy).
    """
    import paho.mqtt.client as mqtt

    host, _, port = endpoint.rpartition(":")
    ca = key_dir / CA_FILE
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or thing, protocol=mqtt.MQTTv5)
    client.tls_set(ca_certs=str(ca) if ca.exists() else None,
                   certfile=str(key_dir / thing / CERT_FILE), keyfile=str(key_dir / thing / KEY_FILE))
    connected = threading.Event()
    outcome: dict[str, str | None] = {"error": "no CONNACK"}

    def on_connect(_c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        outcome["error"] = None if not reason.is_failure else f"connect refused: {reason}"
        connected.set()

    def on_disconnect(_c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if not connected.is_set():
            outcome["error"] = f"connection closed before CONNACK: {reason}"
            connected.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    try:
        client.connect(host, int(port), keepalive=60)
    except (OSError, ValueError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    client.loop_start()
    connected.wait(timeout_s)
    if outcome["error"] is not None:
        client.loop_stop()
        client.disconnect()
        return None, outcome["error"]
    return client, None


ClientFactory = Callable[[str, Path, str, float], tuple[Any, str | None]]


class MqttSink(Sink):
    name = "mqtt"

    def __init__(self, key_dir: str | Path, *, timeout_s: float = 10.0,
                 client_factory: ClientFactory = connect) -> None:
        super().__init__()
        self.key_dir = Path(key_dir)
        self.timeout_s = timeout_s
        self._client_factory = client_factory
        self._devices: dict[str, _Device] = {}

    def setup(self) -> None:
        if not self.key_dir.is_dir():
            raise ValueError(f"the mqtt sink needs device identities in {self.key_dir} "
                             "(iotpipe devices provision; SIM_MQTT_KEY_DIR / --mqtt-key-dir)")

    def _device(self, device_id: str) -> _Device:
        device = self._devices.get(device_id)
        if device is not None:
            return device
        identity_path = self.key_dir / device_id / IDENTITY_FILE
        if not identity_path.exists():
            device = _Device(device_id, "", refused="no_identity")
        else:
            identity = json.loads(identity_path.read_text())
            device = _Device(identity["thing_name"], identity["topic"])
            device.client, error = self._client_factory(device.thing, self.key_dir, identity["endpoint"],
                                                        self.timeout_s)
            if device.client is None:
                device.refused = "connect_refused"
                self.stats.errors[error or "connect_refused"] += 1
            else:
                device.client.on_publish = self._on_publish(device)
        self._devices[device_id] = device
        return device

    @staticmethod
    def _on_publish(device: _Device) -> Callable[..., None]:
        def on_publish(_c: Any, _u: Any, mid: int, reason: Any, _props: Any) -> None:
            if getattr(reason, "is_failure", False):
                device.failed_mids.add(mid)

        return on_publish

    def add(self, produced: Produced) -> None:
        device = self._device(produced.device_id)
        if device.refused is not None:
            self.stats.failed += 1
            self.stats.errors[device.refused] += 1
            return
        self.stats.requests += 1
        info = device.client.publish(device.topic, produced.payload, qos=1)
        self.stats.bytes += len(produced.payload)
        device.pending.append(info)

    def flush(self) -> None:
        """Wait for every outstanding acknowledgement and count each message once."""
        for device in self._devices.values():
            pending, device.pending = device.pending, []
            for info in pending:
                try:
                    info.wait_for_publish(self.timeout_s)
                except (RuntimeError, ValueError) as exc:  # the connection is gone: not acknowledged
                    self.stats.errors[type(exc).__name__] += 1
                if not info.is_published():
                    self.stats.failed += 1
                elif info.mid in device.failed_mids:
                    device.failed_mids.discard(info.mid)
                    self.stats.rejected += 1
                else:
                    self.stats.sent += 1

    def close(self) -> None:
        self.flush()
        for device in self._devices.values():
            if device.client is not None:
                device.client.disconnect()
                device.client.loop_stop()
        self._devices.clear()
