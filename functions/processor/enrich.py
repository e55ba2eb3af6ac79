"""Stage 2: enrichment from the device registry, through a per-container TTL cache.

The cache lives as long as the Lambda container (module scope in the handler), so a warm function asks
DynamoDB only for devices it has not seen within ``ttl_s``. Unknown ids are cached too (negative cache,
shorter TTL) so a producer spraying a bad id costs one lookup per minute, not one per batch; the
negative TTL is short because a device registered a moment ago should start flowing soon.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from functions.core.ports import DeviceRegistry
from functions.core.readings import DeviceInfo

NEGATIVE_TTL_CAP_S = 60.0
MAX_ENTRIES = 100_000  # ~ a few tens of MB at most; cleared wholesale when exceeded (simple and rare)


class DeviceCache:
    def __init__(
        self,
        registry: DeviceRegistry,
        ttl_s: float,
        negative_ttl_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._ttl = float(ttl_s)
        self._negative_ttl = float(
            min(ttl_s, NEGATIVE_TTL_CAP_S) if negative_ttl_s is None else negative_ttl_s
        )
        self._clock = clock
        # device_id -> (expires_at, DeviceInfo or None for "known not to exist")
        self._entries: dict[str, tuple[float, DeviceInfo | None]] = {}
        self.lookups = 0  # registry calls made (for tests and logs)

    def resolve(self, device_ids: Iterable[str]) -> dict[str, DeviceInfo | None]:
        """DeviceInfo (or None if unregistered) for every id. Raises StoreError if the registry fails."""
        now = self._clock()
        result: dict[str, DeviceInfo | None] = {}
        missing: list[str] = []
        entries = self._entries
        for device_id in device_ids:
            entry = entries.get(device_id)
            if entry is not None and entry[0] > now:
                result[device_id] = entry[1]
            else:
                missing.append(device_id)
        if missing:
            self.lookups += 1
            found = self._registry.get_many(missing)
            if len(entries) + len(missing) > MAX_ENTRIES:
                entries.clear()
            for device_id in missing:
                info = found.get(device_id)
                # An item that did not read whole is asked for again as soon as an unknown id would be:
                # a fix to it takes effect within the short TTL.
                ttl = self._ttl if info is not None and not info.faults else self._negative_ttl
                entries[device_id] = (now + ttl, info)
                result[device_id] = info
        return result

    def invalidate(self, device_id: str | None = None) -> None:
        if device_id is None:
            self._entries.clear()
        else:
            self._entries.pop(device_id, None)
