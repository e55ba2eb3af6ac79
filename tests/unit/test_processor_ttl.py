"""Aggregate items carry the table's TTL attribute: expires_at = window_end + AGGREGATES_TTL_DAYS."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from functions.core.readings import Reading
from functions.processor.exactly_once import WindowGroup, build_item
from functions.processor.ingestion_processor import ProcessorConfig, process_batch
from functions.settings import get_settings
from testkit.events import make_records, reading_doc
from testkit.processor import fake_ports

WINDOW_START = 1_795_000_200  # a multiple of 60
NOW_S = WINDOW_START + 90.0
DAY_S = 86_400


@pytest.fixture(autouse=True)
def _fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("AGGREGATES_TTL_DAYS", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _reading(offset_ms: int, seq: int) -> Reading:
    return Reading(
        device_id="dev-1",
        epoch_ms=WINDOW_START * 1000 + offset_ms,
        channels={"temperature": 20.0, "humidity": 50.0, "pressure": 1010.0},
        shard_id="shardId-000000000000",
        sequence_number=str(seq),
    )


def _group(*readings: Reading) -> WindowGroup:
    return WindowGroup(device_id="dev-1", window_start=WINDOW_START, readings=list(readings))


def test_item_expires_ttl_days_after_its_window_ends() -> None:
    r = _reading(1_000, 10)
    item = build_item(None, _group(r), [r], anomalies=0, now_s=NOW_S, window_s=60, ttl_days=7)
    # window_end = 1,795,000,260; + 7 days
    assert item["window_end"] == WINDOW_START + 60
    assert item["expires_at"] == WINDOW_START + 60 + 7 * DAY_S


def test_default_ttl_is_90_days_from_settings() -> None:
    r = _reading(1_000, 10)
    item = build_item(None, _group(r), [r], anomalies=0, now_s=NOW_S, window_s=60)
    assert get_settings().aggregates_ttl_days == 90
    assert item["expires_at"] == WINDOW_START + 60 + 90 * DAY_S


def test_ttl_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGGREGATES_TTL_DAYS", "30")
    get_settings.cache_clear()
    r = _reading(1_000, 10)
    item = build_item(None, _group(r), [r], anomalies=0, now_s=NOW_S, window_s=60)
    assert item["expires_at"] == WINDOW_START + 60 + 30 * DAY_S


def test_a_later_write_keeps_the_same_expiry_whatever_the_clock() -> None:
    # GIVEN a stored window WHEN a later batch (an hour later) merges into it
    r1, r2 = _reading(1_000, 10), _reading(2_000, 11)
    first = build_item(None, _group(r1), [r1], anomalies=0, now_s=NOW_S, window_s=60, ttl_days=90)
    second = build_item(first, _group(r2), [r2], anomalies=0, now_s=NOW_S + 3600, window_s=60, ttl_days=90)
    # THEN expires_at is derived from the window, not from the time of the write
    assert second["expires_at"] == first["expires_at"] == WINDOW_START + 60 + 90 * DAY_S
    assert second["count"] == 2


def test_processed_batch_stores_expires_at_on_every_window() -> None:
    ports = fake_ports(("dev-1",))
    records = make_records(
        [reading_doc("dev-1", WINDOW_START * 1000 + i * 20_000) for i in range(6)],  # 2 windows
        arrival_s=NOW_S + 60,
    )
    out = process_batch(records, ports, ProcessorConfig(sleep=lambda _: None), now_s=NOW_S + 60)
    assert out.batch_item_failures() == []
    assert len(ports.aggregates.items) == 2
    for item in ports.aggregates.items.values():
        assert item["expires_at"] == item["window_start"] + 60 + 90 * DAY_S
