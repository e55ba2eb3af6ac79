"""Exactly-once aggregates under redelivery, overlapping batches, bisection, crashes and races.

Every scenario is compared with the same records processed once, in one batch, on a fresh store.
"""

from __future__ import annotations

from typing import Any

import pytest

from functions.processor import exactly_once
from functions.processor.ingestion_processor import ProcessorConfig, process_batch
from functions.processor.records import KinesisRecord
from testkit.events import make_records, reading_doc
from testkit.fakes import CrashAfterWrites
from testkit.processor import fake_ports

NOW_S = 1_795_000_300.0
NOW_MS = int(NOW_S * 1000)
CONFIG = ProcessorConfig(sleep=lambda _: None)
DEVICES = ("dev-1", "dev-2", "dev-3")


def stream(n: int = 90, shard: str = "shardId-000000000000", first_seq: int = 1000) -> list[KinesisRecord]:
    """n readings, round-robin over 3 devices at 1 Hz each, spanning several 1-minute windows."""
    start = NOW_MS - 200_000
    payloads = [
        reading_doc(
            DEVICES[i % 3],
            start + (i // 3) * 2000 + i % 3,
            temperature=15 + (i * 7) % 11,
            humidity=40 + i % 5,
        )
        for i in range(n)
    ]
    return make_records(payloads, shard_id=shard, first_seq=first_seq, arrival_s=NOW_S)


def normalized(items: dict) -> dict:
    """Aggregates without the write counter and clock, sums rounded (summation order may differ)."""
    out: dict[Any, Any] = {}
    for key, item in items.items():
        item = dict(item)
        item.pop("version")
        item.pop("updated_at")
        item["channels"] = {
            name: {k: round(v, 6) if isinstance(v, float) else v for k, v in stats.items()}
            for name, stats in item["channels"].items()
        }
        out[key] = item
    return out


def once(records: list[KinesisRecord]) -> dict:
    ports = fake_ports(DEVICES)
    out = process_batch(records, ports, CONFIG, now_s=NOW_S)
    assert out.batch_item_failures() == []
    return normalized(ports.aggregates.items)


def test_same_batch_twice_counts_once() -> None:
    # GIVEN a batch already applied
    records = stream()
    ports = fake_ports(DEVICES)
    process_batch(records, ports, CONFIG, now_s=NOW_S)
    writes = ports.aggregates.puts
    # WHEN it is delivered again
    again = process_batch(records, ports, CONFIG, now_s=NOW_S)
    # THEN everything is recognised as redelivered (counted by the first pass), nothing is written,
    # aggregates equal a single pass
    assert again.redelivered == len(records)
    assert (again.aggregated, again.duplicates) == (0, 0)
    assert ports.aggregates.puts == writes
    assert normalized(ports.aggregates.items) == once(records)


def test_overlapping_batches() -> None:
    # GIVEN batches [0, 60) and [30, 90) of the same shard
    records = stream()
    ports = fake_ports(DEVICES)
    a = process_batch(records[:60], ports, CONFIG, now_s=NOW_S)
    b = process_batch(records[30:], ports, CONFIG, now_s=NOW_S)
    # THEN the overlap is dropped once, and aggregates equal a single pass
    assert a.aggregated == 60
    assert b.aggregated == 30
    assert b.redelivered == 30
    assert b.duplicates == 0
    assert normalized(ports.aggregates.items) == once(records)


def test_bisected_halves_after_a_failed_whole() -> None:
    # GIVEN a batch whose first attempt failed at record 40 (partially applied), then bisected
    records = stream()
    ports = fake_ports(DEVICES)
    ports.aggregates.crash_after_writes = 2
    with pytest.raises(CrashAfterWrites):
        process_batch(records, ports, CONFIG, now_s=NOW_S)
    ports.aggregates.crash_after_writes = None
    # WHEN the halves are delivered in order, then the whole batch again
    process_batch(records[:45], ports, CONFIG, now_s=NOW_S)
    process_batch(records[45:], ports, CONFIG, now_s=NOW_S)
    process_batch(records, ports, CONFIG, now_s=NOW_S)
    # THEN aggregates equal a single pass
    assert normalized(ports.aggregates.items) == once(records)


@pytest.mark.parametrize("crash_after", [0, 1, 3, 5])
def test_crash_after_partial_write_then_retry(crash_after: int) -> None:
    # GIVEN a function that dies after N window writes (Lambda timeout / OOM)
    records = stream()
    ports = fake_ports(DEVICES)
    ports.aggregates.crash_after_writes = crash_after
    with pytest.raises(CrashAfterWrites):
        process_batch(records, ports, CONFIG, now_s=NOW_S)
    assert ports.aggregates.puts == crash_after
    # WHEN the ESM retries the whole batch
    ports.aggregates.crash_after_writes = None
    out = process_batch(records, ports, CONFIG, now_s=NOW_S)
    # THEN the retry applies exactly what was missing
    assert out.batch_item_failures() == []
    assert normalized(ports.aggregates.items) == once(records)


def test_reported_failure_then_redelivery_from_the_reported_record() -> None:
    # GIVEN writes that fail for good in the first invocation after 2 windows
    records = stream()
    ports = fake_ports(DEVICES)
    config = ProcessorConfig(sleep=lambda _: None, max_write_attempts=1)
    ports.aggregates.outage_after_attempts = 2  # writes fail for good after 2 windows
    out = process_batch(records, ports, config, now_s=NOW_S)
    (failure,) = out.batch_item_failures()
    # WHEN Kinesis redelivers from the reported sequence number (Lambda's checkpoint semantics)
    ports.aggregates.outage_after_attempts = None
    rest = [r for r in records if int(r.sequence_number) >= int(failure["itemIdentifier"])]
    again = process_batch(rest, ports, CONFIG, now_s=NOW_S)
    # THEN the aggregates equal a single pass, and the per-invocation accounting adds up
    assert again.batch_item_failures() == []
    assert normalized(ports.aggregates.items) == once(records)
    assert out.aggregated + out.duplicates + out.retry == len(records)
    # AND a reading counts as aggregated in the invocation that put it in the table (even when its
    # record was handed back), as redelivered when it comes back: the metric equals the table's count
    assert out.retry + out.aggregated - (len(records) - len(rest)) == len(rest)
    assert again.redelivered == len(rest) - out.retry
    assert out.aggregated + again.aggregated == sum(i["count"] for i in ports.aggregates.items.values())


def test_concurrent_writer_conflicts_are_retried() -> None:
    records = stream()
    ports = fake_ports(DEVICES)
    ports.aggregates.conflict_injections = 0
    process_batch(records[:30], ports, CONFIG, now_s=NOW_S)
    ports.aggregates.conflict_injections = 4
    out = process_batch(records[30:], ports, CONFIG, now_s=NOW_S)
    assert out.write_conflicts == 4
    assert out.batch_item_failures() == []
    assert normalized(ports.aggregates.items) == once(records)


def test_ambiguous_write_failure_is_recognised_as_applied() -> None:
    # GIVEN puts that commit and then time out
    records = stream(30)
    ports = fake_ports(DEVICES)
    ports.aggregates.ambiguous_put_failures = 2
    out = process_batch(records, ports, CONFIG, now_s=NOW_S)
    # THEN the retry recognises its own write: counted as aggregated, not as duplicate
    assert out.aggregated == 30
    assert out.duplicates == 0
    assert normalized(ports.aggregates.items) == once(records)


def test_producer_resend_under_a_new_sequence_number_is_a_duplicate() -> None:
    # GIVEN a reading already applied, re-sent by its producer later (new sequence number)
    records = stream(30)
    ports = fake_ports(DEVICES)
    process_batch(records, ports, CONFIG, now_s=NOW_S)
    resent = make_records([reading_doc("dev-1", NOW_MS - 200_000)], first_seq=5000, arrival_s=NOW_S)
    # WHEN processed / THEN counted once
    out = process_batch(resent, ports, CONFIG, now_s=NOW_S)
    assert out.duplicates == 1
    assert normalized(ports.aggregates.items) == once(records)


def test_resharding_keeps_one_watermark_per_shard() -> None:
    # GIVEN a device whose records move from a parent shard to a child shard mid-window
    records = stream(30, shard="shardId-000000000000", first_seq=900)
    parent, child = records[:15], records[15:]
    child = [
        KinesisRecord("shardId-000000000002", str(10 + i), r.data_b64, r.approximate_arrival_ms)
        for i, r in enumerate(child)
    ]
    ports = fake_ports(DEVICES)
    process_batch(parent, ports, CONFIG, now_s=NOW_S)
    # WHEN the child's (numerically smaller) sequence numbers arrive, twice
    first = process_batch(child, ports, CONFIG, now_s=NOW_S)
    second = process_batch(child, ports, CONFIG, now_s=NOW_S)
    # THEN they are applied once: watermarks are per shard, never compared across shards
    assert first.aggregated == 15
    assert second.redelivered == 15
    assert sum(i["count"] for i in ports.aggregates.items.values()) == 30
    assert any(len(i["watermarks"]) == 2 for i in ports.aggregates.items.values())


def test_late_reading_within_allowed_lateness_updates_its_window() -> None:
    ports = fake_ports(DEVICES)
    records = stream(30)
    process_batch(records, ports, CONFIG, now_s=NOW_S)
    window = ((NOW_MS - 200_000) // 60_000) * 60
    before = ports.aggregates.items[("dev-1", window)]["count"]
    late = make_records([reading_doc("dev-1", window * 1000 + 59_999)], first_seq=9000, arrival_s=NOW_S)
    out = process_batch(late, ports, CONFIG, now_s=NOW_S)
    assert out.aggregated == 1
    assert ports.aggregates.items[("dev-1", window)]["count"] == before + 1


def test_split_fresh_compares_sequence_numbers_numerically() -> None:
    # GIVEN a watermark "99" and a record "100" (lexicographically smaller, numerically larger)
    item = {"watermarks": {"s": "99"}, "seen_offsets_ms": []}
    from functions.core.readings import Reading

    r = Reading("d", 1000, {"temperature": 1.0}, "s", "100")
    fresh, dups = exactly_once.split_fresh(item, [r], 0)
    assert fresh == [r]
    assert dups == []


def test_parallel_window_writes_give_the_same_aggregates() -> None:
    # GIVEN the handler's configuration: windows written by a thread pool
    records = stream()
    ports = fake_ports(DEVICES)
    config = ProcessorConfig(sleep=lambda _: None, write_concurrency=4)
    # WHEN processed twice / THEN the result equals a serial single pass
    process_batch(records, ports, config, now_s=NOW_S)
    again = process_batch(records, ports, config, now_s=NOW_S)
    assert again.redelivered == len(records)
    assert normalized(ports.aggregates.items) == once(records)
