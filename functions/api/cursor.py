"""Opaque pagination cursors: the store's resume state, bound to the query that produced it.

A cursor is ``base64url(json) + "." + base64url(hmac)``. The JSON holds the resume state (a DynamoDB
LastEvaluatedKey, plus the current day for by-day queries) and a digest of the query's parameters, so
a cursor replayed against a different query, or edited by hand, is refused with 400 instead of reaching
DynamoDB as a foreign ExclusiveStartKey.

The HMAC key is the API key when one is configured (local uvicorn) and otherwise derived from the stack
and table names: that makes cursors tamper-evident and identical across Lambda containers, not secret.
They hold nothing the caller does not already know (device id, timestamps).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from functions.api.errors import BadRequest
from functions.settings import get_settings

MAX_CURSOR_CHARS = 2048
_VERSION = 1


def _key() -> bytes:
    s = get_settings()
    material = s.api_key or f"{s.stack_name}|{s.devices_table}|{s.aggregates_table}|{s.anomalies_table}"
    return hashlib.sha256(b"iotpipe-cursor|" + material.encode()).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _context_digest(context: Mapping[str, Any]) -> str:
    canonical = json.dumps(context, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def encode_cursor(state: Mapping[str, Any], context: Mapping[str, Any]) -> str:
    payload = json.dumps({"v": _VERSION, "q": _context_digest(context), "s": state}, separators=(",", ":"))
    raw = payload.encode()
    mac = hmac.new(_key(), raw, hashlib.sha256).digest()[:16]
    return f"{_b64(raw)}.{_b64(mac)}"


def decode_cursor(cursor: str | None, context: Mapping[str, Any]) -> dict[str, Any] | None:
    """The resume state of ``cursor``, or None for the first page. 400 if forged, stale or foreign."""
    if cursor is None or cursor == "":
        return None
    invalid = BadRequest("`cursor` is not a cursor this query returned", "invalid_cursor")
    if len(cursor) > MAX_CURSOR_CHARS or cursor.count(".") != 1:
        raise invalid
    body, mac = cursor.split(".")
    try:
        raw, given = _unb64(body), _unb64(mac)
    except (binascii.Error, ValueError):
        raise invalid from None
    if not hmac.compare_digest(hmac.new(_key(), raw, hashlib.sha256).digest()[:16], given):
        raise invalid
    try:
        payload = json.loads(raw)
    except ValueError:
        raise invalid from None
    if (
        not isinstance(payload, dict)
        or payload.get("v") != _VERSION
        or payload.get("q") != _context_digest(context)
        or not isinstance(payload.get("s"), dict)
    ):
        raise invalid
    return payload["s"]
