"""Query-string times: ISO 8601 or epoch milliseconds, always interpreted as UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from functions.api.errors import BadRequest

_EPOCH_MS = re.compile(r"^\d{1,15}$")
# The smallest and largest instants the API accepts (avoids datetime overflow on absurd inputs).
_MIN = datetime(1970, 1, 1, tzinfo=UTC)
_MAX = datetime(9999, 12, 31, tzinfo=UTC)


def parse_time(value: str, name: str) -> datetime:
    """``value`` as an aware UTC datetime; naive ISO strings are taken as UTC. 400 if unparseable."""
    text = value.strip()
    try:
        if _EPOCH_MS.match(text):
            parsed = datetime.fromtimestamp(int(text) / 1000, tz=UTC)
        else:
            parsed = datetime.fromisoformat(text.replace("z", "Z"))
            parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        raise BadRequest(
            f"`{name}` must be ISO 8601 (e.g. 2026-11-21T23:05:00Z) or epoch milliseconds", "invalid_time"
        ) from None
    if not _MIN <= parsed < _MAX:
        raise BadRequest(f"`{name}` is out of range", "invalid_time")
    return parsed


def iso_ms(moment: datetime) -> str:
    """The data model's timestamp format: ISO 8601 UTC with milliseconds and ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def iso_s(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
