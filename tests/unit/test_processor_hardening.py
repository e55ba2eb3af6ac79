"""Issue 11: hostile numbers, per-reading containment of later stages, the time budget, small items.

Numbers go through the REAL serialisation of both tables (``adapters.aggregates.item_to_dynamo`` and the
one codec, ``adapters.codec``, that both adapters use), checked against DynamoDB's number rules.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any

import orjson
import pytest
from boto3.dynamodb.types import TypeSerializer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions.adapters.aggregates import item_to_dynamo
from functions.adapters.alerts import Alerter
from functions.adapters.anomalies import DynamoAnomalyStore
from functions.adapters.codec import to_dynamo
from functions.core.errors import StoreError
from functions.core.readings import Reading
from functions.detector.interface import Verdict
from functions.detector.pipeline_stage import anomaly_item, handle_verdicts
from functions.processor import exactly_once
from functions.processor.decode import DecodeRules, decode_items, parse_timestamp_ms
from functions.processor.exactly_once import WindowGroup
from functions.processor.ingestion_processor import ProcessorConfig, process_batch
from functions.processor.records import Rejection
from testkit.events import SEQ_BASE, make_records, packed, reading_doc
from testkit.fakes import (
    FakeDynamoDBClient,
    InMemoryAggregateStore,
    InMemoryCooldownStore,
    attribute_numbers,
    dynamodb_accepts,
)
from testkit.processor import fake_ports

NOW_S = 1_795_000_020.0
NOW_MS = int(NOW_S * 1000)
WINDOW = (NOW_MS // 60_000) * 60
CONFIG = ProcessorConfig(sleep=lambda _: None)
RULES = DecodeRules()
ANOMALY_KEY = ("device_id", "ts_seq")  # the anomalies table's key, for the boto-level table fake


# --- DynamoDB's number rules, as the service applies them ------------------------------------------


class DynamoRulesAggregateStore(InMemoryAggregateStore):
    """The in-memory table, refusing what DynamoDB refuses: every put goes through the real adapter's
    ``item_to_dynamo`` and is rejected like the service does (``ValidationException``)."""

    def put(self, item: dict[str, Any], expected_version: int | None) -> None:
        bad = [n for n in attribute_numbers(item_to_dynamo(item)) if not dynamodb_accepts(n)]
        if bad:
            raise StoreError(f"aggregates.put_item: ClientError ValidationException {bad[:3]}",
                             transient=False, code="ValidationException")
        super().put(item, expected_version)


def archived(ports: Any, prefix: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in ports.archive.lines(prefix)]


def verdict(flag: bool) -> Verdict:
    return Verdict(score=0.9 if flag else 0.1, is_anomaly=flag, severity="high" if flag else "none",
                   severity_rank=3 if flag else 0, top_feature="temperature:raw", reason="r",
                   threshold=0.5, model_version="test")


class FlagAll:
    """A detector that flags every reading (so every reading's values reach the anomalies table)."""

    def detect(self, readings: Sequence[Reading]) -> list[Verdict]:
        return [verdict(True) for _ in readings]


def real_anomaly_ports(**kwargs: Any) -> tuple[Any, FakeDynamoDBClient]:
    client = FakeDynamoDBClient(ANOMALY_KEY)
    ports = fake_ports(("dev-1", "dev-2", "dev-3"), detector=kwargs.pop("detector", FlagAll()),
                       handle_verdicts=handle_verdicts)
    ports.anomaly_store = DynamoAnomalyStore("anomalies", dynamodb=client)
    ports.alerter = Alerter(InMemoryCooldownStore(), None, 300)
    ports.aggregates = DynamoRulesAggregateStore()
    return ports, client


# --- finding 1: one tiny number dropped a whole batch ----------------------------------------------


def test_one_tiny_number_is_quarantined_and_the_rest_of_the_batch_is_stored() -> None:
    # GIVEN the POST /ingest of 21: 20 good readings and one schema-valid temperature of 1e-200,
    # through the real serialisers of both tables
    ports, client = real_anomaly_ports()
    t = WINDOW * 1000
    docs = [reading_doc(f"dev-{1 + i % 3}", t + 1000 * i) for i in range(20)]
    docs.insert(7, reading_doc("dev-1", t + 50_500, temperature=1e-200))
    # WHEN processed
    out = process_batch(make_records(docs, arrival_s=NOW_S), ports, CONFIG, now_s=NOW_S)
    # THEN nothing is handed back: 20 aggregated and stored as anomalies, 1 quarantined with a reason
    assert out.batch_item_failures() == []
    assert (out.aggregated, out.quarantined, dict(out.rejected)) == (20, 1, {"unrepresentable_number": 1})
    assert len(client.items) == 20
    assert sum(i["count"] for i in ports.aggregates.items.values()) == 20
    (line,) = archived(ports, "quarantine/")
    assert (line["reason"], line["stage"]) == ("unrepresentable_number", "validate")


def test_an_extra_channel_whose_square_underflows_is_quarantined() -> None:
    doc = reading_doc("dev-1", NOW_MS - 5000, extra={"vibration": 1e-100})
    (item,) = decode_items(make_records([doc], arrival_s=NOW_S)[0], RULES, NOW_MS)
    assert isinstance(item, Rejection)
    assert item.reason == "unrepresentable_number"
    assert "vibration" in item.detail


def all_floats() -> st.SearchStrategy[float]:
    """The whole double range: any bit pattern (subnormals included), plus values near the limits."""
    near = [1e-130, 1e-65, 1e-60, 9.99e-61, 1.0000000000000002e-60, 1e60, 1e62, 1e125, 5e-324, 2.2e-308]
    return st.one_of(
        st.integers(0, 2**64 - 1).map(lambda bits: struct.unpack("<d", struct.pack("<Q", bits))[0]),
        st.sampled_from(near + [-x for x in near]),
        st.floats(allow_nan=False, allow_infinity=False),
        st.floats(min_value=-1e-55, max_value=1e-55),
    ).filter(math.isfinite)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=all_floats(), channel=st.sampled_from(["temperature", "humidity", "extra"]),
       count=st.sampled_from([1, 2, 7, 60]))
def test_every_accepted_number_is_storable_in_both_tables_with_its_window_statistics(
    value: float, channel: str, count: int
) -> None:
    # GIVEN a reading with `value` in one channel (the others ordinary)
    kwargs: dict[str, Any] = {"extra": {"x": value}} if channel == "extra" else {channel: value}
    doc = reading_doc("dev-1", NOW_MS - 5000, **kwargs)
    # JSON as a producer would send it (orjson writes the shortest round-trip form of the float)
    record = make_records([orjson.loads(orjson.dumps(doc))], arrival_s=NOW_S)[0]
    (item,) = decode_items(record, RULES, NOW_MS)
    if isinstance(item, Rejection):
        # THEN either it is quarantined, with a reason that says why
        assert item.reason in {"out_of_range", "unrepresentable_number"}
        if item.reason == "unrepresentable_number":
            assert value != 0
            assert not 1e-60 <= abs(value) <= 1e60
        return
    # OR accepted, and then a window of `count` such readings (and a mixed window) and its anomaly item
    # serialise through the real adapters into numbers DynamoDB accepts
    readings = [Reading("dev-1", item.epoch_ms + i, dict(item.channels), "s", str(i)) for i in range(count)]
    negated = {k: -v for k, v in item.channels.items()}
    mixed = [*readings, Reading("dev-1", item.epoch_ms + count + 1, negated, "s", str(count + 1))]
    for group in (readings, mixed):
        window = WindowGroup("dev-1", (item.epoch_ms // 60_000) * 60, group)
        stored = exactly_once.build_item(None, window, group, 0, NOW_S, 60, ttl_days=1)
        assert all(dynamodb_accepts(n) for n in attribute_numbers(item_to_dynamo(stored)))
    anomaly = anomaly_item(item, verdict(True), ttl_days=1)
    serialized = {k: TypeSerializer().serialize(to_dynamo(v)) for k, v in anomaly.items()}
    assert all(dynamodb_accepts(n) for n in attribute_numbers(serialized))


# --- containment: a later stage failing for one reading takes only that reading --------------------


class PickyDetector(FlagAll):
    """Raises whenever a reading of `bad_device` is in the call (a detector bug on particular input)."""

    def __init__(self, bad_epoch_ms: int) -> None:
        self.bad = bad_epoch_ms

    def detect(self, readings: Sequence[Reading]) -> list[Verdict]:
        if any(r.epoch_ms == self.bad for r in readings):
            raise ValueError("feature builder choked")
        return super().detect(readings)


def batch_of(n: int = 12) -> list[dict[str, Any]]:
    t = WINDOW * 1000
    return [reading_doc(f"dev-{1 + i % 3}", t + 1000 * i) for i in range(n)]


def test_a_detector_failure_on_one_reading_leaves_it_aggregated_unscored_and_counted() -> None:
    docs = batch_of()
    bad_ms = WINDOW * 1000 + 4000  # dev-2's second reading
    ports, client = real_anomaly_ports(detector=PickyDetector(bad_ms))
    out = process_batch(make_records(docs, arrival_s=NOW_S), ports, CONFIG, now_s=NOW_S)
    assert out.batch_item_failures() == []
    assert (out.aggregated, dict(out.rejected)) == (12, {})
    assert out.aggregated + out.duplicates + out.quarantined + out.retry == out.records_in == 12
    assert archived(ports, "quarantine/") == []
    lines = archived(ports, "processed/")
    unscored = [line for line in lines if "anomaly" not in line]
    assert [(u["device_id"], u["epoch_ms"]) for u in unscored] == [("dev-2", bad_ms)]
    assert out.detection_failures == {"unscored": 1}
    assert ports.metrics.total("DetectionFailures", Reason="unscored") == 1
    assert len(client.items) == 11  # the other readings were scored and stored


def test_an_anomaly_item_the_table_refuses_leaves_its_reading_aggregated_and_counted() -> None:
    ports, _ = real_anomaly_ports()
    # GIVEN an anomalies table that refuses dev-3's items (as DynamoDB does an item it cannot store)
    client = FakeDynamoDBClient(ANOMALY_KEY, refuse=lambda item: item["device_id"]["S"] == "dev-3")
    ports.anomaly_store = DynamoAnomalyStore("anomalies", dynamodb=client)
    out = process_batch(make_records(batch_of(), arrival_s=NOW_S), ports, CONFIG, now_s=NOW_S)
    assert out.batch_item_failures() == []
    assert (out.aggregated, dict(out.rejected)) == (12, {})
    assert archived(ports, "quarantine/") == []
    assert len(client.items) == 8  # dev-3's four anomalies were refused, the others stored
    assert out.detection_failures == {"anomaly_not_stored": 4}
    assert ports.metrics.total("DetectionFailures", Reason="anomaly_not_stored") == 4


def test_an_anomaly_store_outage_still_hands_the_batch_back() -> None:
    # An outage (throttling past retries) is not about particular readings: redelivery, as before
    ports, _ = real_anomaly_ports()

    throttled = FakeDynamoDBClient(ANOMALY_KEY, fail_code="ProvisionedThroughputExceededException")
    ports.anomaly_store = DynamoAnomalyStore("anomalies", dynamodb=throttled)
    out = process_batch(make_records(batch_of(), arrival_s=NOW_S), ports, CONFIG, now_s=NOW_S)
    assert out.batch_item_failures() == [{"itemIdentifier": str(SEQ_BASE)}]
    assert (out.retry, out.quarantined) == (12, 0)


def test_a_window_item_the_table_refuses_quarantines_that_windows_readings_only() -> None:
    # GIVEN a window item DynamoDB refuses (here: the in-memory table refusing dev-2's window)
    ports = fake_ports(("dev-1", "dev-2", "dev-3"))
    store = ports.aggregates
    real_put = store.put

    def put(item: dict[str, Any], expected_version: int | None) -> None:
        if item["device_id"] == "dev-2":
            raise StoreError("aggregates.put_item: ClientError ValidationException", transient=False,
                             code="ValidationException")
        real_put(item, expected_version)

    store.put = put  # type: ignore[method-assign]
    out = process_batch(make_records(batch_of(), arrival_s=NOW_S), ports, CONFIG, now_s=NOW_S)
    assert out.batch_item_failures() == []
    assert (out.aggregated, dict(out.rejected)) == (8, {"storage_rejected": 4})
    assert {(line["stage"], line["device_id"]) for line in archived(ports, "quarantine/")} == {
        ("aggregate", "dev-2")
    }
    assert len(archived(ports, "processed/")) == 8


def test_an_alert_failure_is_counted_and_fails_nothing() -> None:
    ports, client = real_anomaly_ports()

    class DownPublisher:
        def publish(self, subject: str, message: str, attributes: dict[str, str]) -> None:
            raise ConnectionError("sns down")

    ports.alerter = Alerter(InMemoryCooldownStore(), DownPublisher(), 300)
    out = process_batch(make_records(batch_of(), arrival_s=NOW_S), ports, CONFIG, now_s=NOW_S)
    assert out.batch_item_failures() == []
    assert (out.aggregated, out.alerts_failed) == (12, 3)
    assert ports.metrics.total("AlertsFailed") == 3
    assert len(client.items) == 12


# --- finding 3: metrics agree with the table ------------------------------------------------------


def test_archive_failure_keeps_the_aggregated_metric_equal_to_the_table() -> None:
    # GIVEN the archive outage: aggregates are written, every archive put fails
    ports = fake_ports(("dev-1", "dev-2", "dev-3"))
    ports.archive.fail_next = 3
    for first in (0, 12, 24):
        docs = [reading_doc(f"dev-{1 + i % 3}", WINDOW * 1000 + 1000 * i) for i in range(first, first + 12)]
        records = make_records(docs, first_seq=SEQ_BASE + first, arrival_s=NOW_S)
        out = process_batch(records, ports, CONFIG, now_s=NOW_S)
        assert out.batch_item_failures()  # handed back (ministack drops these records)
    # THEN the failure is visible, and RecordsAggregated equals the table's count even though no
    # record completed (before: the metric counted 0 of these 36 readings while the table held them)
    table = sum(i["count"] for i in ports.aggregates.items.values())
    assert table == 36
    assert ports.metrics.total("RecordsAggregated") == table
    assert ports.metrics.total("ArchiveWriteFailures") == 3


# --- the time budget -------------------------------------------------------------------------------


def test_the_time_budget_hands_back_what_it_cannot_start_and_redelivery_completes_it() -> None:
    # GIVEN an invocation whose time runs out after 2 window writes (fake clock: 1 s per call)
    ports = fake_ports(("dev-1", "dev-2", "dev-3"))
    calls = iter(range(10_000))
    left = {"ms": 12_500}

    def remaining_ms() -> int:
        next(calls)
        left["ms"] -= 1000
        return left["ms"]

    records = make_records(batch_of(12), arrival_s=NOW_S)
    out = process_batch(records, ports, ProcessorConfig(sleep=lambda _: None, reserve_ms=10_000),
                        now_s=NOW_S, remaining_ms=remaining_ms)
    # THEN the rest is handed back from the first record of an unwritten window, instead of timing out
    assert out.out_of_time
    assert out.windows_written == 2
    (failure,) = out.batch_item_failures()
    assert int(failure["itemIdentifier"]) == SEQ_BASE + 2  # dev-3's first record: its window never started
    # AND the redelivery from that record completes the batch exactly once
    rest = [r for r in records if int(r.sequence_number) >= int(failure["itemIdentifier"])]
    again = process_batch(rest, ports, CONFIG, now_s=NOW_S)
    assert again.batch_item_failures() == []
    assert out.aggregated + again.aggregated == 12 == sum(i["count"] for i in ports.aggregates.items.values())
    assert len(archived(ports, "processed/")) == 12


def test_whole_batch_hand_back_for_ministack_archives_nothing_and_counts_once() -> None:
    # GIVEN PARTIAL_BATCH_RESPONSE=raise (ministack drops batchItemFailures but retries a failed call)
    ports = fake_ports(("dev-1", "dev-2", "dev-3"))
    config = ProcessorConfig(sleep=lambda _: None, hand_back_whole_batch=True, max_write_attempts=1)
    ports.aggregates.outage_after_attempts = 2
    records = make_records(batch_of(12), arrival_s=NOW_S)
    out = process_batch(records, ports, config, now_s=NOW_S)
    # THEN everything not yet in the table is retry, nothing is archived, the first record is reported
    assert out.batch_item_failures() == [{"itemIdentifier": str(SEQ_BASE)}]
    assert not ports.archive.objects
    assert out.aggregated + out.retry == 12
    # AND the retried whole batch counts each reading once
    ports.aggregates.outage_after_attempts = None
    again = process_batch(records, ports, CONFIG, now_s=NOW_S)
    assert again.aggregated + again.redelivered == 12
    assert out.aggregated + again.aggregated == 12
    assert len(archived(ports, "processed/")) == 12


def test_handler_fails_the_invocation_when_handing_back_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    from functions.processor import handler
    from testkit.events import FakeLambdaContext, kinesis_event

    ports = fake_ports(("dev-1",))
    ports.archive.fail_next = 1
    monkeypatch.setattr(handler, "_ports", ports)
    monkeypatch.setattr(handler, "_config", ProcessorConfig(sleep=lambda _: None, hand_back_whole_batch=True))
    event = kinesis_event([reading_doc("dev-1", NOW_MS - 5000)])
    with pytest.raises(handler.HandBack):
        handler.handler(event, FakeLambdaContext())


# --- finding 6: small items -------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["2026-11-21t23:05:16.123z", "2026-11-21T23:05:16.123z",
                                  "2026-11-21t23:05:16Z", "2026-11-21t23:05:16.123+00:00"])
def test_rfc3339_lowercase_t_and_z_are_accepted(text: str) -> None:
    assert parse_timestamp_ms(text) == parse_timestamp_ms("2026-11-21T23:05:16.123Z") - (
        123 if ".123" not in text else 0
    )


def test_500_realistic_readings_in_one_record_are_500_readings() -> None:
    # GIVEN 500 simulator-like readings with labels in one packed record (~74 KB, over the old 64 KiB)
    docs = [reading_doc("dev-1", NOW_MS - 300_000 + 500 * i, temperature=21.123456789012,
                        humidity=45.987654321, pressure=1013.2512345, ground_truth="normal",
                        extra={"vibration": 0.0123456789, "battery": 3.712345}) for i in range(500)]
    data = packed(docs)
    assert len(data) > 65_536
    items = decode_items(make_records([data], arrival_s=NOW_S)[0], RULES, NOW_MS)
    assert len(items) == 500
    assert all(isinstance(i, Reading) for i in items)


# --- a literal below the smallest float (parsed as 0.0) follows the contract: quarantined ----------


def _text_record(text: str) -> Any:
    (record,) = make_records([text.encode()], arrival_s=NOW_S)
    return record


@pytest.mark.parametrize(
    ("value", "channel"),
    [("1e-400", "temperature"), ("-2.5E-999", "humidity"), ("0." + "0" * 400 + "1", "temperature"),
     ("1e-400", "vibration")],
)
def test_a_literal_that_underflows_to_zero_is_quarantined_not_stored_as_0(value: str, channel: str) -> None:
    doc = reading_doc("dev-1", NOW_MS - 5000, extra={"vibration": 3.0})
    text = orjson.dumps(doc).decode().replace(
        f'"{channel}":{orjson.dumps(doc.get(channel, 3.0)).decode()}', f'"{channel}":{value}'
    )
    assert value in text
    for items in (decode_items(_text_record(text), RULES, NOW_MS),
                  decode_items(_text_record(f"[{text},{orjson.dumps(doc).decode()}]"), RULES, NOW_MS)):
        assert isinstance(items[0], Rejection), items[0]
        assert items[0].reason == "unrepresentable_number"
        assert channel in items[0].detail
        assert "parsed as 0" in items[0].detail
        assert all(isinstance(i, Reading) for i in items[1:])  # the other element of a packed record


def test_real_zeros_and_exponents_that_do_not_underflow_are_kept() -> None:
    doc = reading_doc("dev-1", NOW_MS - 5000, temperature=0.0, humidity=0.0, extra={"flow": 0.0})
    # "101325e-2" puts the re-reading's cue ("e-") in the text: the literals themselves decide
    text = orjson.dumps(doc).decode().replace('"pressure":1013.25', '"pressure":101325e-2')
    (item,) = decode_items(_text_record(text), RULES, NOW_MS)
    assert isinstance(item, Reading)
    assert item.channels == {"temperature": 0.0, "humidity": 0.0, "pressure": 1013.25, "flow": 0.0}
    tiny_but_float = orjson.dumps(doc).decode().replace('"flow":0.0', '"flow":0.0e-5')
    (item,) = decode_items(_text_record(tiny_but_float), RULES, NOW_MS)
    assert isinstance(item, Reading)
    assert item.channels["flow"] == 0.0


def test_an_underflowing_literal_through_the_batch_is_quarantined_and_conserved() -> None:
    ports, _ = real_anomaly_ports()
    t = WINDOW * 1000
    docs = [reading_doc("dev-1", t + 1000 * i) for i in range(3)]
    texts: list[Any] = [orjson.dumps(d) for d in docs]
    texts.append(orjson.dumps(reading_doc("dev-2", t + 9000)).replace(b'"temperature":21.5',
                                                                      b'"temperature":1e-400'))
    out = process_batch(make_records(texts, arrival_s=NOW_S), ports, CONFIG, now_s=NOW_S)
    assert (out.aggregated, dict(out.rejected)) == (3, {"unrepresentable_number": 1})
    assert out.aggregated + out.duplicates + out.quarantined + out.retry == out.records_in == 4
