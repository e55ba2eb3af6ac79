"""Create, store and revoke device identities for the MQTT path.

One device = one IoT thing (its name is the device id, the MQTT client id and the third level of its
topic) with one certificate, attached to the thing and to the stack's device policy, which lets that
certificate connect only as its thing and publish only to ``<stack>/devices/<thing>/readings``.

The private key exists once, in ``CreateKeysAndCertificate``'s answer: it is written at once to
``<key dir>/<thing>/private.key`` with mode 0600 (directories 0700) and never sent anywhere again. The
default key dir, ``.iotpipe/devices/<stack>/``, is git-ignored. Revoking sets the certificate INACTIVE:
the broker refuses it from the next connection on (docs/security.md says what each target does with a
session already open).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from iotpipe.devices.registry import DeviceRegistryError, IotRegistry
from iotpipe.settings import tool_settings

CA_FILE = "ca.pem"
CERT_FILE = "certificate.pem"
KEY_FILE = "private.key"
IDENTITY_FILE = "identity.json"


def default_key_dir(stack: str) -> Path:
    return tool_settings().run_dir / "devices" / stack


def readings_topic(topic_prefix: str, thing_name: str) -> str:
    """``<stack>/devices/<thing>/readings`` (the stack's IotReadingsTopicPrefix output + the thing)."""
    return f"{topic_prefix}/{thing_name}/readings"


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    thing_name: str
    certificate_id: str
    certificate_arn: str
    topic: str
    endpoint: str  # host:port of the MQTT broker (mTLS)

    def files(self, key_dir: Path) -> tuple[Path, Path, Path | None]:
        """(certificate, private key, broker CA or None) as stored under ``key_dir``."""
        ca = key_dir / CA_FILE
        base = key_dir / self.thing_name
        return base / CERT_FILE, base / KEY_FILE, ca if ca.exists() else None


def _write_private(path: Path, text: str) -> None:
    """Create ``path`` with mode 0600 from the start (no moment where another user could read it)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


def provision(
    registry: IotRegistry, key_dir: Path, thing_names: list[str], policy_name: str, topic_prefix: str
) -> list[DeviceIdentity]:
    """A thing, an ACTIVE certificate, its attachments and its files for each name (a name provisioned
    before gets a new certificate; the old one stays as it was until revoked)."""
    _private_dir(key_dir)
    ca = registry.broker_ca()
    if ca is not None:
        (key_dir / CA_FILE).write_text(ca)
    endpoint = registry.data_endpoint()
    identities = []
    for thing in thing_names:
        registry.ensure_thing(thing)
        cert = registry.create_certificate(thing)
        device_dir = _private_dir(key_dir / thing)
        _write_private(device_dir / KEY_FILE, cert.private_key)
        (device_dir / CERT_FILE).write_text(cert.certificate_pem)
        registry.bind(thing, cert.certificate_arn, policy_name)
        identity = DeviceIdentity(thing, cert.certificate_id, cert.certificate_arn,
                                  readings_topic(topic_prefix, thing), endpoint)
        (device_dir / IDENTITY_FILE).write_text(json.dumps(asdict(identity), indent=2) + "\n")
        identities.append(identity)
    return identities


def ensure(registry: IotRegistry, key_dir: Path, thing_names: list[str], policy_name: str,
           topic_prefix: str) -> tuple[int, int]:
    """Provision the things that have no identity the registry knows; keep the others, pointed at the
    current broker (the embedded emulator's listener port changes between starts). A revoked (INACTIVE)
    certificate is kept as it is: running again never undoes a revocation. Returns (kept, created)."""
    endpoint = registry.data_endpoint()
    ca = registry.broker_ca()
    if ca is not None:
        _private_dir(key_dir)
        (key_dir / CA_FILE).write_text(ca)
    missing = []
    for thing in thing_names:
        try:
            identity = load_identity(key_dir, thing)
            registry.certificate_status(identity.certificate_id)
        except FileNotFoundError:
            missing.append(thing)
            continue
        except DeviceRegistryError as exc:
            if exc.code != "ResourceNotFoundException":
                raise
            missing.append(thing)  # stored here, unknown to this registry (an emulator started afresh)
            continue
        if identity.endpoint != endpoint:
            moved = replace(identity, endpoint=endpoint)
            (key_dir / thing / IDENTITY_FILE).write_text(json.dumps(asdict(moved), indent=2) + "\n")
    if missing:
        provision(registry, key_dir, missing, policy_name, topic_prefix)
    return len(thing_names) - len(missing), len(missing)


def load_identity(key_dir: Path, thing_name: str) -> DeviceIdentity:
    path = key_dir / thing_name / IDENTITY_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"{thing_name} has no identity under {key_dir} (run `iotpipe devices provision`)")
    return DeviceIdentity(**json.loads(path.read_text()))


def load_identities(key_dir: Path) -> list[DeviceIdentity]:
    return [load_identity(key_dir, p.parent.name) for p in sorted(key_dir.glob(f"*/{IDENTITY_FILE}"))]


def revoke(registry: IotRegistry, key_dir: Path, thing_name: str) -> DeviceIdentity:
    """Set the device's certificate INACTIVE (the broker refuses it; ACTIVE again undoes it)."""
    identity = load_identity(key_dir, thing_name)
    registry.set_certificate_status(identity.certificate_id, "INACTIVE")
    return identity
