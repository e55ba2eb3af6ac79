"""Anomaly items, idempotent persistence and alert cooldown (pure logic + in-memory fakes)."""

from __future__ import annotations

import pytest

from functions.adapters import codec
from functions.adapters.alerts import Alerter, should_alert
from functions.adapters.codec import to_dynamo
from functions.core.readings import DeviceInfo, Reading
from functions.core.timestamps import format_ms as iso_ms
from functions.detector.interface import Verdict
from functions.detector.pipeline_stage import handle_verdicts
from testkit.aws_stubs import StubbedClient
from testkit.fakes import InMemoryAnomalyStore, InMemoryCooldownStore, InMemoryPublisher

HOT = Verdict(
    0.8, True, "high", 3, "temperature:dev", "temperature 9.1 σ above device baseline", 0.64, "iforest-v1"
)
COLD = Verdict(0.4, False, "none", 0, "humidity:roc", "", 0.64, "iforest-v1")


def reading(seq: int, device: str = "dev-1", ms: int = 1_767_225_600_123) -> Reading:
    return Reading(
        device,
        ms + seq * 1000,
        {"temperature": 30.0, "humidity": 40.0, "pressure": 1000.0},
        "shardId-000000000001",
        f"4960{seq:04d}",
        DeviceInfo(device, site="Plant", location="Oslo, NO"),
    )


@pytest.mark.parametrize(
    ("last", "now", "expected"),
    [(None, 100.0, True), (100.0, 399.0, False), (100.0, 400.0, True), (100.0, 100.0, False)],
)
def test_should_alert(last, now, expected):
    assert should_alert(last, now, 300) is expected


def test_iso_ms():
    assert iso_ms(1_767_225_600_123) == "2026-01-01T00:00:00.123Z"


def test_anomaly_items_follow_data_model_and_redelivery_is_idempotent():
    store, alerter = InMemoryAnomalyStore(), Alerter(InMemoryCooldownStore(), InMemoryPublisher(), 300)
    batch = [reading(0), reading(1)]
    verdicts = [HOT, COLD]
    # WHEN the same batch is handled twice (Kinesis redelivery)
    first = handle_verdicts(batch, verdicts, store, alerter, now=1000.0, ttl_days=30)
    second = handle_verdicts(batch, verdicts, store, alerter, now=1001.0, ttl_days=30)
    # THEN one item exists, with identical content both times
    assert first.anomalies == second.anomalies
    assert len(store.items) == 1
    item = next(iter(store.items.values()))
    assert item["ts_seq"] == "2026-01-01T00:00:00.123Z#49600000"
    assert item["day"] == "2026-01-01"
    assert item["expires_at"] == 1_767_225_600 + 30 * 86_400
    assert item["severity_rank"] == 3
    assert item["site"] == "Plant"
    assert to_dynamo(item)["score"].__class__.__name__ == "Decimal"


def test_one_alert_per_device_per_cooldown_and_suppressed_count_is_reported():
    publisher = InMemoryPublisher()
    alerter = Alerter(InMemoryCooldownStore(), publisher, cooldown_s=300)
    store = InMemoryAnomalyStore()
    # GIVEN three anomalies of one device and one of another in a batch
    batch = [reading(0), reading(1), reading(2), reading(3, device="dev-2")]
    r1 = handle_verdicts(batch, [HOT] * 4, store, alerter, now=1000.0, ttl_days=30)
    assert (r1.alerts_sent, r1.alerts_suppressed) == (2, 2)
    # WHEN more anomalies come within the cooldown, then after it
    r2 = handle_verdicts([reading(10)], [HOT], store, alerter, now=1100.0, ttl_days=30)
    assert (r2.alerts_sent, r2.alerts_suppressed) == (0, 1)
    r3 = handle_verdicts([reading(20)], [HOT], store, alerter, now=1300.0, ttl_days=30)
    # THEN the next alert reports what was suppressed in between
    assert (r3.alerts_sent, r3.alerts_suppressed) == (1, 0)
    last = publisher.messages[-1]["message"]
    assert last["device_id"] == "dev-1"
    assert last["suppressed_since_last_alert"] == 3


def test_no_topic_means_no_alerts():
    result = handle_verdicts(
        [reading(0)],
        [HOT],
        InMemoryAnomalyStore(),
        Alerter(InMemoryCooldownStore(), None, 300),
        now=0.0,
        ttl_days=1,
    )
    assert (result.alerts_sent, result.alerts_suppressed) == (0, 0)
    assert len(result.anomalies) == 1


def test_dynamo_store_batches_dedupes_and_retries_unprocessed():
    from functions.adapters.anomalies import DynamoAnomalyStore
    from functions.detector.pipeline_stage import anomaly_item

    items = [anomaly_item(reading(i), HOT, 30) for i in range(30)]
    store_items = [codec.to_item(i) for i in items]
    # GIVEN a table that throttles the first request of the first batch once (UnprocessedItems)
    stub = StubbedClient("dynamodb")
    stub.answer("batch_write_item", {"UnprocessedItems": {"tbl": [{"PutRequest": {"Item": store_items[0]}}]}})
    stub.answer("batch_write_item", {"UnprocessedItems": {}}, times=2)
    with stub:
        written = DynamoAnomalyStore("tbl", dynamodb=stub.client).put_many([*items, items[0]])
    assert written == 30
    calls = [p["RequestItems"] for p in stub.params("batch_write_item")]
    assert [len(c["tbl"]) for c in calls] == [25, 1, 5]
    assert calls[0]["tbl"][0]["PutRequest"]["Item"]["ts_seq"]["S"].endswith("#49600000")


def test_dynamo_store_gives_up_after_eight_attempts_of_unprocessed_items():
    from functions.adapters.anomalies import AnomalyStoreError, DynamoAnomalyStore
    from functions.detector.pipeline_stage import anomaly_item

    item = anomaly_item(reading(0), HOT, 30)
    throttled = {"UnprocessedItems": {"tbl": [{"PutRequest": {"Item": codec.to_item(item)}}]}}
    stub, sleeps = StubbedClient("dynamodb").answer("batch_write_item", throttled, times=8), []
    store = DynamoAnomalyStore("tbl", dynamodb=stub.client, sleep=sleeps.append)
    with stub, pytest.raises(AnomalyStoreError):
        store.put_many([item])
    # 8 attempts; full jitter up to 0.05 * 2**(n-1) s (capped at 1 s) before retry n, none after the last.
    assert len(stub.calls) == 8
    assert len(sleeps) == 7
    assert all(0 <= s <= min(1.0, 0.05 * 2 ** (n - 1)) for n, s in enumerate(sleeps, start=1))
