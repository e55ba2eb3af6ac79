"""Device credentials of the simulated fleet.

A real device is provisioned with a secret of its own. The simulator stands in for a whole fleet, so it
derives each device's secret from one *fleet secret* that only the simulator holds:
``secret(device) = base64url(HMAC-SHA256(fleet_secret, "iotpipe-device|" + device_id))`` (43 characters).
Any device index, including devices added by live tuning, then has a credential without a list of
secrets to keep. The cloud side never sees the fleet secret: ``register`` writes only each device's
``credential_hash`` to the devices table, in the format ``functions/auth/device_credentials.py`` verifies
(tests/unit/test_device_auth.py checks that both agree).

The fleet secret comes from ``SIM_DEVICE_SECRET`` or the file ``SIM_DEVICE_SECRET_FILE`` (default
``.iotpipe/device-fleet.secret``, mode 0600, git-ignored); ``register`` creates the file when neither
exists. Re-registering with another fleet secret replaces every device's credential.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

HASH_ATTRIBUTE = "credential_hash"
DEFAULT_SECRET_FILE = ".iotpipe/device-fleet.secret"  # noqa: S105 - a path, not a secret


class CredentialsError(RuntimeError):
    """No fleet secret: run ``python -m simulator register`` first or set SIM_DEVICE_SECRET."""


def device_secret(fleet_secret: str, device_id: str) -> str:
    mac = hmac.new(fleet_secret.encode(), f"iotpipe-device|{device_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def hash_secret(device_id: str, secret: str) -> str:
    """What the devices table stores (same format as functions.auth.device_credentials.hash_secret)."""
    return "sha256:" + hashlib.sha256(f"iotpipe-device|{device_id}|{secret}".encode()).hexdigest()


def authorization(fleet_secret: str, device_id: str) -> str:
    """The ``Authorization`` header value of ``device_id``."""
    return f"Device {device_id}.{device_secret(fleet_secret, device_id)}"


def load_fleet_secret(
    explicit: str = "", path: str | os.PathLike[str] = DEFAULT_SECRET_FILE, create: bool = False
) -> str:
    """``explicit`` if given, else the file's content; with ``create``, a new random secret is written
    (0600) when the file does not exist."""
    if explicit:
        return explicit
    file = Path(path)
    if file.exists():
        value = file.read_text().strip()
        if value:
            return value
    if not create:
        raise CredentialsError(
            f"no device fleet secret: set SIM_DEVICE_SECRET or run `python -m simulator register`"
            f" (it creates {file})"
        )
    file.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
    return value
