"""Property-based tests: no exception escapes, and every input reading is accounted for exactly once.

Records are single readings, random bytes, random JSON and packed records (JSON arrays of readings,
some mutated, some corrupted). Conservation is in readings: each element of a packed record is one item,
a record that does not parse (or is an empty array) is one item.
"""

from __future__ import annotations

import base64
import itertools
import json
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions.processor.ingestion_processor import ProcessorConfig, process_batch
from functions.processor.records import KinesisRecord
from testkit.events import reading_doc
from testkit.processor import fake_ports

NOW_S = 1_795_000_300.0
NOW_MS = int(NOW_S * 1000)
CONFIG = ProcessorConfig(sleep=lambda _: None)
DEVICES = ("dev-1", "dev-2", "dev-3")

any_json = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text()
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=10,
)


@st.composite
def mutated_reading(draw: st.DrawFn, corrupt: bool = True) -> bytes:
    """A plausible reading, then zero or more mutations: wrong types, missing keys, odd values, junk."""
    doc: dict[str, Any] = reading_doc(
        draw(st.sampled_from([*DEVICES, "ghost", "bad id", ""])),
        NOW_MS + draw(st.integers(-900_000, 300_000)),
        temperature=draw(st.floats(-120, 140, allow_nan=False)),
        humidity=draw(st.floats(-5, 110, allow_nan=False)),
        pressure=draw(st.floats(200, 1200, allow_nan=False)),
        iso=draw(st.booleans()),
    )
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from([*doc.keys(), "extra", "ground_truth", "surprise"]))
        action = draw(st.sampled_from(["delete", "replace", "extra"]))
        if action == "delete":
            doc.pop(key, None)
        elif action == "replace":
            doc[key] = draw(any_json)
        else:
            doc["extra"] = draw(
                st.dictionaries(st.sampled_from(["co2", "voc", "humidity"]), st.floats(-2e9, 2e9), max_size=2)
            )
    raw = json.dumps(doc).encode()  # json, not orjson: big integers must reach the decoder too
    if corrupt and draw(st.integers(0, 9)) == 0:  # occasionally corrupt the bytes
        cut = draw(st.integers(0, len(raw)))
        raw = raw[:cut] + draw(st.binary(max_size=5)) + raw[cut:]
    return raw


@st.composite
def packed_record(draw: st.DrawFn) -> bytes:
    """A packed record: a JSON array of (possibly mutated) readings and odd elements, rarely corrupted."""
    elements = draw(
        st.lists(
            st.one_of(
                mutated_reading(corrupt=False),
                mutated_reading(corrupt=False),
                any_json.map(lambda d: json.dumps(d).encode()),
            ),
            max_size=8,
        )
    )
    raw = b"[" + b",".join(elements) + b"]"
    if draw(st.integers(0, 19)) == 0:  # a packed record that no longer parses: one quarantined item
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    return raw


payloads = st.lists(
    st.one_of(
        mutated_reading(),
        packed_record(),
        st.binary(max_size=64),
        any_json.map(lambda d: json.dumps(d).encode()),
    ),
    max_size=40,
)


def items_in(raw: bytes) -> int:
    """Readings a record contributes: the elements of a non-empty array, else 1 (the record itself)."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return 1
    return len(doc) if isinstance(doc, list) and doc else 1


def to_records(
    raws: list[bytes], first_seq: int = 100, shard: str = "shardId-000000000000"
) -> list[KinesisRecord]:
    return [
        KinesisRecord(shard, str(first_seq + i), base64.b64encode(raw).decode(), NOW_MS, "pk")
        for i, raw in enumerate(raws)
    ]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raws=payloads, duplicate_tail=st.integers(0, 5))
def test_conservation_no_exception_every_record_accounted(raws: list[bytes], duplicate_tail: int) -> None:
    # GIVEN random bytes, random JSON and mutated readings (with some exact repeats)
    raws = raws + raws[:duplicate_tail]
    records = to_records(raws)
    ports = fake_ports(DEVICES)
    # WHEN processed (the call itself must not raise)
    out = process_batch(records, ports, CONFIG, now_s=NOW_S)
    items = sum(items_in(raw) for raw in raws)
    # THEN every reading has exactly one disposition and the buckets add up, in readings
    assert len(out.dispositions) == items
    assert out.records_in == items
    assert out.kinesis_records_in == len(records)
    assert out.aggregated + out.duplicates + out.quarantined + out.retry == items
    assert out.retry == 0
    assert out.batch_item_failures() == []
    # AND every record is accounted for by at least one item
    assert {(s, q) for s, q, _ in out.dispositions} == {(r.shard_id, r.sequence_number) for r in records}
    # AND the stored counts equal the aggregated readings, the archive holds one line per reading
    assert sum(int(i["count"]) for i in ports.aggregates.items.values()) == out.aggregated
    archived = len(ports.archive.lines("processed/")) + len(ports.archive.lines("quarantine/"))
    assert archived == items
    # AND the metrics say the same
    m = ports.metrics
    assert m.total("RecordsIn") == items
    assert m.total("KinesisRecordsIn") == len(records)
    assert m.total("RecordsAggregated") + m.total("DuplicatesDropped") + m.total("RecordsRejected") == items


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    raws=payloads,
    cuts=st.lists(st.integers(0, 40), max_size=4),
    replays=st.lists(st.integers(0, 40), max_size=3),
)
def test_any_split_and_replay_gives_the_same_aggregates(
    raws: list[bytes], cuts: list[int], replays: list[int]
) -> None:
    # GIVEN the same records processed once, and as arbitrary consecutive batches plus replayed suffixes
    records = to_records(raws)
    single = fake_ports(DEVICES)
    process_batch(records, single, CONFIG, now_s=NOW_S)
    split = fake_ports(DEVICES)
    bounds = sorted({0, len(records), *(min(c, len(records)) for c in cuts)})
    for lo, hi in itertools.pairwise(bounds):
        process_batch(records[lo:hi], split, CONFIG, now_s=NOW_S)
    for start in replays:
        process_batch(records[min(start, len(records)) :], split, CONFIG, now_s=NOW_S)
    # THEN the stored windows are the same (up to float summation order)
    assert split.aggregates.items.keys() == single.aggregates.items.keys()
    for key, item in single.aggregates.items.items():
        other = split.aggregates.items[key]
        assert other["count"] == item["count"]
        assert other["watermarks"] == item["watermarks"]
        assert other["seen_offsets_ms"] == item["seen_offsets_ms"]
        for name, stats in item["channels"].items():
            got = other["channels"][name]
            assert (got["count"], got["min"], got["max"]) == (stats["count"], stats["min"], stats["max"])
            assert abs(got["sum"] - stats["sum"]) <= 1e-6 * max(1.0, abs(stats["sum"]))
