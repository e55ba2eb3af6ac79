"""Per-device credentials for ``POST /ingest``.

A device authenticates with ``Authorization: Device <device_id>.<secret>``; the secret is 32 random bytes
in base64url (43 characters). The devices table never holds the secret, only
``credential_hash = "sha256:" + hex(SHA-256("iotpipe-device|" + device_id + "|" + secret))``: the device id
is part of the hashed text, so a hash copied onto another device's item verifies nothing. A plain SHA-256
is enough because the secret has 256 bits of entropy (a slow password hash defends low-entropy secrets).

The same check runs in two places, with the same code: the API Gateway Lambda authorizer
(``functions.authorizer.handler``; AWS and ministack run it at the edge) and the ingest function itself
when a request reaches it without an authorizer context (LocalStack 4.14's community API Gateway does not
run Lambda authorizers). Either way the principal is the device id, and the ingest function refuses any
reading whose ``device_id`` is another device's.

Pure module: the lookup of a device's stored hash is a port (``functions.core.ports.CredentialLookup``),
which the devices table adapter (``functions.adapters.devices``) implements with one projected GetItem.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SCHEME = "Device"
SECRET_BYTES = 32
# The whole header value. The template's authorizer uses the same expression as its
# IdentityValidationExpression (tests/unit/test_device_auth.py checks that they agree), so API Gateway
# answers a malformed header with 401 without invoking the authorizer.
TOKEN_PATTERN = r"^Device [A-Za-z0-9_.:-]{1,64}\.[A-Za-z0-9_-]{43}$"  # noqa: S105 - a format
_TOKEN = re.compile(TOKEN_PATTERN)
# Compared against when a device is unknown, so both paths do one hash and one constant-time compare.
_NO_SUCH_HASH = "sha256:" + "0" * 64


@dataclass(frozen=True, slots=True)
class DeviceToken:
    device_id: str
    secret: str = ""

    def __repr__(self) -> str:  # never log the secret
        return f"DeviceToken(device_id={self.device_id!r})"


def new_secret() -> str:
    """A fresh device secret: 32 random bytes, base64url without padding (43 characters)."""
    return secrets.token_urlsafe(SECRET_BYTES)


def hash_secret(device_id: str, secret: str) -> str:
    digest = hashlib.sha256(f"iotpipe-device|{device_id}|{secret}".encode()).hexdigest()
    return f"sha256:{digest}"


def format_token(device_id: str, secret: str) -> str:
    """The ``Authorization`` header value a device sends."""
    return f"{SCHEME} {device_id}.{secret}"


def parse_token(header: str | None) -> DeviceToken | None:
    """The device id and secret of a well-formed header value, else None."""
    if not header or len(header) > 200 or not _TOKEN.fullmatch(header):
        return None
    device_id, _, secret = header[len(SCHEME) + 1 :].rpartition(".")
    return DeviceToken(device_id, secret)


def verify(header: str | None, stored_hash: Callable[[str], str | None]) -> str | None:
    """The authenticated device id, or None (malformed header, unknown device, wrong secret).

    ``stored_hash(device_id)`` returns the device's ``credential_hash`` or None; store errors propagate
    (a registry outage is a 5xx, not a silent 403).
    """
    token = parse_token(header)
    if token is None:
        return None
    expected = stored_hash(token.device_id) or _NO_SUCH_HASH
    given = hash_secret(token.device_id, token.secret)
    if hmac.compare_digest(expected.encode(), given.encode()) and expected != _NO_SUCH_HASH:
        return token.device_id
    return None


def header_value(headers: dict[str, Any] | None, name: str = "authorization") -> str | None:
    """One header, case-insensitively (API Gateway keeps the client's spelling)."""
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return value if isinstance(value, str) else None
    return None
