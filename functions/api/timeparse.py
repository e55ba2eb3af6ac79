"""Query-string times: ISO 8601 or epoch milliseconds, always interpreted as UTC.

Parsing and formatting are the one time module's (``functions.core.timestamps``); this module only adds
the API's leniency (naive is UTC, epoch ms as digits), its range and its 400 responses.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from functions.api.errors import BadRequest
from functions.core.timestamps import format_datetime_ms, format_s, ms_to_datetime, parse_datetime

_EPOCH_MS = re.compile(r"^\d{1,15}$")
# The smallest and largest instants the API accepts (avoids datetime overflow on absurd inputs).
_MIN = datetime(1970, 1, 1, tzinfo=UTC)
_MAX = datetime(9999, 12, 31, tzinfo=UTC)


def parse_time(value: str, name: str) -> datetime:
    """``value`` as an aware UTC datetime; naive ISO strings are taken as UTC. 400 if unparseable."""
    text = value.strip()
    try:
        parsed = ms_to_datetime(int(text)) if _EPOCH_MS.match(text) else parse_datetime(text)
    except (ValueError, OverflowError, OSError):
        raise BadRequest(
            f"`{name}` must be ISO 8601 (e.g. 2026-11-21T23:05:00Z) or epoch milliseconds", "invalid_time"
        ) from None
    if not _MIN <= parsed < _MAX:
        raise BadRequest(f"`{name}` is out of range", "invalid_time")
    return parsed


# The data model's timestamp format (ISO 8601 UTC, milliseconds, ``Z``) and its to-the-second sibling.
iso_ms = format_datetime_ms
iso_s = format_s
