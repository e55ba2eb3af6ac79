"""The archive contract (functions.core.archive_lines): line types round trip, lines archived before the
contract existed decode to the same bytes, what the processor writes matches the JSON Schemas, and the
one reading path (``iter_lines``/``iter_objects``) reads from a time on."""

from __future__ import annotations

import orjson
import pytest

from functions.core.archive_layout import PROCESSED_PREFIX, QUARANTINE_PREFIX, archive_key
from functions.core.archive_lines import ArchiveLineError, ProcessedLine, QuarantinedLine, decode_line
from functions.core.readings import DeviceInfo
from functions.core.timestamps import parse_ms
from functions.processor.ingestion_processor import ProcessorConfig, process_batch
from functions.schemas import SchemaValidationError, validate
from testkit.events import make_records, reading_doc
from testkit.fakes import InMemoryArchive
from testkit.processor import fake_ports

# Lines as the processor wrote them before the contract was one module (functions/processor/archive_keys.py
# at 131c159): archived objects of that time must read back the same, and re-encode to the same bytes.
OLD_PROCESSED = (
    b'{"anomaly":true,"anomaly_score":7.25,"channels":{"humidity":40.0,"pressure":1013.0,"temperature":21.5},'
    b'"device_id":"dev-1","epoch_ms":1795000021000,"ground_truth":"spike","index":2,"location":"Lisbon, PT",'
    b'"sequence_number":"49650000000000000000000000000000000000000000000000000001","severity":"high",'
    b'"shard_id":"shardId-000000000000","site":"site-a","status":"aggregated","timestamp":"2026-11-18T11:07:01.000Z"}'
)
OLD_DUPLICATE = (
    b'{"channels":{"temperature":21.5},"device_id":"dev-1","epoch_ms":1795000021000,"location":"",'
    b'"sequence_number":"7","shard_id":"shardId-000000000001","site":"","status":"duplicate",'
    b'"timestamp":"2026-11-18T11:07:01.000Z"}'
)
OLD_QUARANTINED = (
    b'{"approximate_arrival":"2026-11-18T11:07:00.500Z","detail":"unexpected character","device_id":"dev-9",'
    b'"index":0,"raw_b64":"bm90IGpzb24=","reason":"unknown_device","sequence_number":"8",'
    b'"shard_id":"shardId-000000000000","stage":"enrich"}'
)

PROCESSED = ProcessedLine("dev-1", 1_795_000_021_000, {"temperature": 21.5, "co2": 400.0}, "site-a",
                          "Lisbon, PT", "shardId-000000000000", "49650000000000000001", "aggregated",
                          True, 7.25, "high", "spike", 3)
QUARANTINED = QuarantinedLine("late", "validate", "older than 600 s", "shardId-000000000000", "42",
                              1_795_000_020_500, "e30=", "dev-1", 1)


@pytest.mark.parametrize("line", [
    PROCESSED,
    ProcessedLine("dev-2", 0, {}, "", "", "shardId-000000000002", "1", "duplicate"),  # no verdict, no index
])
def test_a_processed_line_round_trips(line: ProcessedLine) -> None:
    encoded = line.encode()
    assert ProcessedLine.decode(encoded) == line
    assert decode_line(encoded) == line
    assert ProcessedLine.decode(encoded).encode() == encoded


@pytest.mark.parametrize("line", [
    QUARANTINED,
    QuarantinedLine("malformed_json", "decode", "", "shardId-000000000000", "43", 0, "bm90IGpzb24="),
])
def test_a_quarantined_line_round_trips(line: QuarantinedLine) -> None:
    encoded = line.encode()
    assert QuarantinedLine.decode(encoded) == line
    assert decode_line(encoded) == line
    assert QuarantinedLine.decode(encoded).encode() == encoded


def test_lines_archived_before_the_contract_decode_and_re_encode_to_the_same_bytes() -> None:
    old = ProcessedLine.decode(OLD_PROCESSED)
    assert (old.device_id, old.epoch_ms, old.status, old.anomaly, old.anomaly_score, old.severity) == (
        "dev-1", parse_ms("2026-11-18T11:07:01Z"), "aggregated", True, 7.25, "high")
    assert old.channels == {"humidity": 40.0, "pressure": 1013.0, "temperature": 21.5}
    assert (old.index, old.ground_truth, old.site, old.location) == (2, "spike", "site-a", "Lisbon, PT")
    for line in (OLD_PROCESSED, OLD_DUPLICATE, OLD_QUARANTINED):
        assert decode_line(line).encode() == line
    quarantined = QuarantinedLine.decode(OLD_QUARANTINED)
    assert (quarantined.reason, quarantined.device_id, quarantined.index) == ("unknown_device", "dev-9", 0)
    assert quarantined.approximate_arrival_ms == parse_ms("2026-11-18T11:07:00.500Z")


def test_a_line_that_is_not_its_type_is_a_clear_error() -> None:
    with pytest.raises(ArchiveLineError, match="not JSON"):
        ProcessedLine.decode(b"{not json")
    with pytest.raises(ArchiveLineError, match="device_id"):
        ProcessedLine.decode(OLD_DUPLICATE.replace(b'"device_id"', b'"device"'))
    with pytest.raises(ArchiveLineError, match="raw_b64"):
        QuarantinedLine.decode(OLD_QUARANTINED.replace(b'"raw_b64"', b'"raw"'))


def test_a_line_becomes_the_reading_the_processor_archived() -> None:
    reading = PROCESSED.to_reading()
    assert (reading.device_id, reading.epoch_ms, reading.channels, reading.index) == (
        "dev-1", 1_795_000_021_000, {"temperature": 21.5, "co2": 400.0}, 3)
    assert (reading.device.site, reading.device.location) == ("site-a", "Lisbon, PT")
    registry = DeviceInfo("dev-1", site="site-b")
    assert PROCESSED.to_reading(registry).device is registry
    assert ProcessedLine.of(reading, "aggregated", True, 7.25, "high") == PROCESSED


def test_what_the_processor_writes_matches_the_schemas() -> None:
    # GIVEN a batch: a reading, a packed record of two, the first reading re-sent, an unknown device's
    now_s, now_ms = 1_795_000_020.0, 1_795_000_020_000
    good = reading_doc("dev-1", now_ms - 5000, ground_truth="normal")
    packed = orjson.dumps([reading_doc("dev-2", now_ms - 4000),
                           reading_doc("dev-1", now_ms - 3000, extra={"co2": 400.0})])
    payloads = [good, packed, good, reading_doc("nobody", now_ms - 2000)]
    ports = fake_ports()
    config = ProcessorConfig(sleep=lambda _: None)
    process_batch(make_records(payloads, arrival_s=now_s), ports, config, now_s=now_s)
    # WHEN its archive lines are read back
    processed = ports.archive.lines(f"{PROCESSED_PREFIX}/")
    quarantined = ports.archive.lines(f"{QUARANTINE_PREFIX}/")
    assert len(processed) == 4
    assert len(quarantined) == 1
    # THEN each matches its schema and decodes through the contract
    for line in processed:
        validate("processed", orjson.loads(line))
        assert isinstance(decode_line(line), ProcessedLine)
    for line in quarantined:
        validate("quarantined", orjson.loads(line))
        assert isinstance(decode_line(line), QuarantinedLine)
    assert sorted(ProcessedLine.decode(x).status for x in processed) == ["aggregated"] * 3 + ["duplicate"]
    assert sorted(ProcessedLine.decode(x).index for x in processed if b'"index"' in x) == [0, 1]


def test_a_verdict_comes_whole_or_not_at_all() -> None:
    validate("processed", orjson.loads(PROCESSED.encode()))
    doc = orjson.loads(PROCESSED.encode())
    del doc["severity"]
    with pytest.raises(SchemaValidationError):
        validate("processed", doc)


def _object(archive: InMemoryArchive, prefix: str, arrival: str, name: str, *devices: str) -> str:
    key = archive_key(prefix, "shardId-000000000000", name, name, parse_ms(arrival))
    archive.put_jsonl_gz(key, [ProcessedLine(d, parse_ms(arrival), {"t": 1.0}, "", "", "shardId-000000000000",
                                             name, "aggregated").encode() for d in devices])
    return key


def test_iter_lines_reads_every_object_from_the_hour_of_since_on_in_time_order() -> None:
    # GIVEN objects in three hours of two days, a quarantine object and a file that is no archive object
    archive = InMemoryArchive()
    _object(archive, PROCESSED_PREFIX, "2026-03-01T23:59:59Z", "1", "old")
    at_since = _object(archive, PROCESSED_PREFIX, "2026-03-02T10:00:00Z", "2", "a", "b")
    later = _object(archive, PROCESSED_PREFIX, "2026-03-03T00:30:00Z", "3", "c")
    _object(archive, QUARANTINE_PREFIX, "2026-03-02T11:00:00Z", "4", "q")
    archive.write(f"{PROCESSED_PREFIX}/dt=2026-03-02/hour=11/_manifest.json", b"{}", "application/json")
    since = parse_ms("2026-03-02T10:59:59.999Z")
    # WHEN read from ``since`` (in the hour of the second object) / THEN the second and third, in order
    names = [ProcessedLine.decode(x).device_id for x in archive.iter_lines(PROCESSED_PREFIX, since)]
    assert names == ["a", "b", "c"]
    assert [o.key for o, _ in archive.iter_objects(PROCESSED_PREFIX, since)] == [at_since, later]
    # AND without ``since`` every object of the prefix, and only of that prefix
    assert [ProcessedLine.decode(x).device_id for x in archive.iter_lines(PROCESSED_PREFIX)] == [
        "old", "a", "b", "c"]
    assert [decode_line(x).device_id for x in archive.iter_lines(QUARANTINE_PREFIX)] == ["q"]


def test_an_object_gone_between_listing_and_read_is_skipped() -> None:
    class Expiring(InMemoryArchive):
        def read(self, key: str) -> bytes | None:
            return None if key.endswith("-1-1.jsonl.gz") else super().read(key)

    archive = Expiring()
    _object(archive, PROCESSED_PREFIX, "2026-03-02T10:00:00Z", "1", "gone")
    _object(archive, PROCESSED_PREFIX, "2026-03-02T10:00:00Z", "2", "kept")
    assert [ProcessedLine.decode(x).device_id for x in archive.iter_lines(PROCESSED_PREFIX)] == ["kept"]


def test_the_compactor_shares_the_layout_without_the_line_codec() -> None:
    # The compactor's bundle is DuckDB and powertools, no orjson (pyproject.toml [tool.iotpipe.bundles]):
    # its handler and the archive adapter load the layout and reading path, never archive_lines.
    import subprocess
    import sys

    code = ("import sys, functions.compactor.handler, functions.adapters.archive; "
            "print(sorted(m for m in ('orjson', 'functions.core.archive_lines') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
