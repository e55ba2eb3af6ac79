"""The processor test harness: ``ProcessorPorts`` wired to the in-memory fakes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from functions.processor.enrich import DeviceCache
from functions.processor.ingestion_processor import ProcessorPorts
from testkit.events import devices
from testkit.fakes import InMemoryAggregateStore, InMemoryArchive, InMemoryDeviceRegistry, InMemoryMetrics


def fake_ports(
    device_ids: Sequence[str] = ("dev-1", "dev-2"),
    *,
    detector: Any | None = None,
    handle_verdicts: Any | None = None,
    clock: Any = None,
) -> Any:
    """ProcessorPorts wired to the in-memory fakes (``testkit.fakes``)."""
    registry = InMemoryDeviceRegistry(devices(*device_ids))
    cache = DeviceCache(registry, ttl_s=300, clock=clock or (lambda: 0.0))
    return ProcessorPorts(
        devices=cache,
        aggregates=InMemoryAggregateStore(),
        archive=InMemoryArchive(),
        metrics=InMemoryMetrics(),
        detector=detector,
        handle_verdicts=handle_verdicts,
        detector_state=registry,
    )
