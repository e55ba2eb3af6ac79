"""The test-only fault hook (testkit/faults.py): spec parsing, the DynamoDB client wrapper, the
once-marker, and the path through the real aggregates adapter, process_batch and the test stacks'
handler (testkit/fault_handler.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from functions.adapters.aggregates import DynamoAggregateStore, item_from_dynamo
from functions.adapters.client_errors import translate_client_error
from functions.core.errors import StoreError
from functions.processor.enrich import DeviceCache
from functions.processor.ingestion_processor import ProcessorConfig, ProcessorPorts, process_batch
from testkit import fault_handler as processor_handler
from testkit import faults
from testkit.events import FakeLambdaContext, devices, kinesis_event, make_records, reading_doc
from testkit.fakes import FakeDynamoDBClient, InMemoryArchive, InMemoryDeviceRegistry, InMemoryMetrics
from testkit.faults import FaultInjectingDynamoDB, FaultPlan, FaultSpecError, InjectedFault

NOW_S = 1_795_000_300.0
NOW_MS = int(NOW_S * 1000)
DEVICES = tuple(f"dev-{i}" for i in range(6))
TABLE = "aggregates"


def put(client: Any, device_id: str = "dev-1", window_start: int = 60, version: int = 1) -> Any:
    """One unconditional-looking aggregate put (a new item) through the client."""
    return client.put_item(
        TableName=TABLE,
        Item={"device_id": {"S": device_id}, "window_start": {"N": str(window_start)},
              "version": {"N": str(version)}},
        ConditionExpression="attribute_not_exists(device_id)",
    )


# --- parsing ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", [None, "", "  ", ";"])
def test_unset_or_blank_means_no_faults(spec: str | None) -> None:
    assert faults.parse(spec) is None


def test_parse_reads_every_key() -> None:
    plan = faults.parse(" crash_after_writes=3 ; throttle_writes=5;once_key=ab-1.x_2;"
                        "device_prefix=f12ab3-;marker_dir=/tmp/x;")
    assert plan == FaultPlan(crash_after_writes=3, throttle_writes=5, once_key="ab-1.x_2",
                             device_prefix="f12ab3-", marker_dir="/tmp/x")
    assert plan.marker_path == Path("/tmp/x/ab-1.x_2")
    assert faults.parse("crash_after_writes=0") == FaultPlan(crash_after_writes=0)
    assert faults.parse("throttle_writes=2").marker_path is None


@pytest.mark.parametrize("spec", [
    "crash_after_writes",  # no value
    "crash_after_writes=three",
    "crash_after_writes=-1",
    "throttle_writes=1;throttle_writes=2",
    "explode=1",
    "once_key=abc",  # no fault
    "throttle_writes=0",  # no fault either
    "throttle_writes=1;once_key=../etc",  # a token, never a path
    "throttle_writes=1;once_key=",
])
def test_malformed_specs_fail_loudly(spec: str) -> None:
    with pytest.raises(FaultSpecError):
        faults.parse(spec)


def test_plan_is_read_once_and_only_honoured_on_an_emulator(monkeypatch: pytest.MonkeyPatch) -> None:
    faults.get_plan.cache_clear()
    try:
        monkeypatch.delenv(faults.ENV_VAR, raising=False)
        monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
        assert faults.get_plan() is None
        faults.get_plan.cache_clear()
        monkeypatch.setenv(faults.ENV_VAR, "throttle_writes=2")
        assert faults.get_plan() == FaultPlan(throttle_writes=2)
        monkeypatch.setenv(faults.ENV_VAR, "throttle_writes=9")  # read once: later changes are not seen
        assert faults.get_plan() == FaultPlan(throttle_writes=2)
        # On AWS (no emulator endpoint) a stray variable changes nothing.
        faults.get_plan.cache_clear()
        monkeypatch.delenv("AWS_ENDPOINT_URL")
        assert faults.get_plan() is None
    finally:
        faults.get_plan.cache_clear()


# --- the wrapper -----------------------------------------------------------------------------------------

def test_crash_after_n_committed_writes_then_every_write_of_the_invocation_fails() -> None:
    inner = FakeDynamoDBClient()
    client = FaultInjectingDynamoDB(inner, FaultPlan(crash_after_writes=2))
    put(client, "dev-1")
    put(client, "dev-2")
    with pytest.raises(InjectedFault):
        put(client, "dev-3")
    with pytest.raises(InjectedFault):
        put(client, "dev-4")
    assert inner.puts == 2  # a real partial write
    assert sorted(k[0] for k in inner.items) == ["dev-1", "dev-2"]
    # Without once_key the next invocation crashes again after 2 writes.
    client.begin_invocation()
    put(client, "dev-5")
    put(client, "dev-6")
    with pytest.raises(InjectedFault):
        put(client, "dev-7")


def test_a_failed_conditional_put_is_not_a_committed_write() -> None:
    inner = FakeDynamoDBClient()
    client = FaultInjectingDynamoDB(inner, FaultPlan(crash_after_writes=1))
    put(client, "dev-1")
    client.begin_invocation()
    with pytest.raises(ClientError):  # the item exists: ConditionalCheckFailed passes through
        put(client, "dev-1")
    assert client.committed == 0
    put(client, "dev-2")
    with pytest.raises(InjectedFault):
        put(client, "dev-3")


def test_once_key_fires_in_one_invocation_across_processes(tmp_path: Path) -> None:
    plan = FaultPlan(crash_after_writes=1, once_key="tok-1", marker_dir=str(tmp_path))
    first_inner = FakeDynamoDBClient()
    first = FaultInjectingDynamoDB(first_inner, plan)  # the worker that crashes
    put(first, "dev-1")
    with pytest.raises(InjectedFault):
        put(first, "dev-2")
    # A fresh worker process (new wrapper, same marker directory) and later invocations of the first one
    # write freely.
    second = FaultInjectingDynamoDB(FakeDynamoDBClient(), plan)
    for name in ("dev-1", "dev-2", "dev-3"):
        put(second, name)
    first.begin_invocation()
    put(first, "dev-2")
    put(first, "dev-3")
    events = [json.loads(line) for line in (tmp_path / "tok-1").read_text().splitlines()]
    assert [(e["fault"], e["committed_writes"], e["device_id"]) for e in events] == [
        ("crash_after_writes", 1, "dev-2")
    ]


def test_throttle_the_first_n_writes_with_a_throttling_client_error(tmp_path: Path) -> None:
    plan = FaultPlan(throttle_writes=3, once_key="tok-2", marker_dir=str(tmp_path))
    inner = FakeDynamoDBClient()
    client = FaultInjectingDynamoDB(inner, plan)
    for _ in range(3):
        with pytest.raises(ClientError) as info:
            put(client, "dev-1")
        assert info.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
        # The adapter turns it into a transient StoreError, which the write loop retries.
        translated = translate_client_error(info.value, "aggregates.put_item")
        assert isinstance(translated, StoreError)
        assert translated.transient
    put(client, "dev-1")
    assert inner.puts == 1
    # once: the next invocation, and another worker, are not throttled
    client.begin_invocation()
    put(client, "dev-2")
    put(FaultInjectingDynamoDB(inner, plan), "dev-3")
    assert len((tmp_path / "tok-2").read_text().splitlines()) == 3


def test_device_prefix_limits_the_faults_to_matching_windows() -> None:
    inner = FakeDynamoDBClient()
    client = FaultInjectingDynamoDB(inner, FaultPlan(crash_after_writes=1, throttle_writes=1,
                                                     device_prefix="fx-"))
    put(client, "dev-1")  # not counted, not throttled
    with pytest.raises(ClientError):
        put(client, "fx-dev-1")
    put(client, "fx-dev-1")
    put(client, "dev-2")
    with pytest.raises(InjectedFault):
        put(client, "fx-dev-2")
    put(client, "dev-3")  # other devices still write after the crash
    assert sorted(k[0] for k in inner.items) == ["dev-1", "dev-2", "dev-3", "fx-dev-1"]


def test_other_calls_pass_through_untouched() -> None:
    inner = FakeDynamoDBClient()
    client = FaultInjectingDynamoDB(inner, FaultPlan(crash_after_writes=0))
    assert client.get_item(TableName=TABLE, Key={"device_id": {"S": "x"}, "window_start": {"N": "0"}},
                           ConsistentRead=True) == {}
    assert client.batch_get_item is not None
    assert client.items is inner.items


# --- through the adapter, process_batch and the handler ------------------------------------------------

def readings(n: int = 180) -> list[Any]:
    """n readings round-robin over 6 devices, spanning 3 one-minute windows each (18 windows)."""
    start = (NOW_MS - 240_000) // 60_000 * 60_000
    payloads = [reading_doc(DEVICES[i % 6], start + (i // 6) * 6000, temperature=10 + (i * 7) % 13)
                for i in range(n)]
    return make_records(payloads, arrival_s=NOW_S)


def ports(client: Any) -> ProcessorPorts:
    registry = InMemoryDeviceRegistry(devices(*DEVICES))
    return ProcessorPorts(devices=DeviceCache(registry, ttl_s=300, clock=lambda: 0.0),
                          aggregates=DynamoAggregateStore(TABLE, dynamodb=client, sleep=lambda _: None),
                          archive=InMemoryArchive(), metrics=InMemoryMetrics())


CONFIG = ProcessorConfig(sleep=lambda _: None, write_concurrency=4)


def stats(inner: FakeDynamoDBClient) -> dict[tuple[str, str], tuple[int, float, float, float]]:
    out = {}
    for key, attrs in inner.items.items():
        item = item_from_dynamo(attrs)
        t = item["channels"]["temperature"]
        out[key] = (item["count"], round(t["sum"], 9), t["min"], t["max"])
    return out


def single_pass() -> dict:
    inner = FakeDynamoDBClient()
    outcome = process_batch(readings(), ports(inner), CONFIG, now_s=NOW_S)
    assert outcome.aggregated == 180
    assert not outcome.failed_sequence_numbers
    return stats(inner)


def test_crash_after_a_partial_write_through_the_adapter_then_retry_counts_everything_once(
    tmp_path: Path,
) -> None:
    plan = FaultPlan(crash_after_writes=5, once_key="crash", marker_dir=str(tmp_path))
    inner = FakeDynamoDBClient()
    # WHEN the first invocation crashes after 5 committed window writes (the exception is not absorbed
    # into batchItemFailures: it ends the invocation)
    with pytest.raises(InjectedFault):
        process_batch(readings(), ports(FaultInjectingDynamoDB(inner, plan)), CONFIG, now_s=NOW_S)
    assert inner.puts == 5
    # AND the mapping retries the batch in a fresh worker
    retry = process_batch(readings(), ports(FaultInjectingDynamoDB(inner, plan)), CONFIG, now_s=NOW_S)
    # THEN the windows equal a single pass; the 5 windows written before the crash are recognised as
    # redelivered (the crash published no counts: RecordsAggregated trails the table by them, see
    # docs/processing.md "Metrics")
    assert not retry.failed_sequence_numbers
    assert retry.retry == 0
    assert retry.aggregated + retry.redelivered == 180
    assert retry.redelivered == 5 * 10
    assert stats(inner) == single_pass()


def test_throttled_writes_are_retried_inside_the_invocation(tmp_path: Path) -> None:
    plan = FaultPlan(throttle_writes=5, once_key="thr", marker_dir=str(tmp_path))
    inner = FakeDynamoDBClient()
    client = FaultInjectingDynamoDB(inner, plan)
    outcome = process_batch(readings(), ports(client), CONFIG, now_s=NOW_S)
    assert client.throttled == 5
    assert not outcome.failed_sequence_numbers
    assert outcome.aggregated == 180
    assert inner.puts == 18  # one write per window: no throttled write was committed
    assert stats(inner) == single_pass()


def test_handler_without_the_variable_builds_the_plain_adapter(monkeypatch: pytest.MonkeyPatch) -> None:
    from functions.settings import get_settings

    monkeypatch.setenv("METRICS_SINK", "none")
    monkeypatch.delenv(faults.ENV_VAR, raising=False)
    monkeypatch.setattr(processor_handler, "_faults", None)
    faults.get_plan.cache_clear()
    get_settings.cache_clear()
    try:
        built = processor_handler.build_ports()
    finally:
        get_settings.cache_clear()
        faults.get_plan.cache_clear()
    assert processor_handler._faults is None
    assert built.aggregates._client is None  # the default lazily created client, nothing wrapped


def test_handler_wraps_the_aggregates_client_when_the_variable_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from functions.settings import get_settings

    monkeypatch.setenv("METRICS_SINK", "none")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")  # nothing is called
    monkeypatch.setenv(faults.ENV_VAR, "crash_after_writes=1")
    monkeypatch.setattr(processor_handler, "_faults", None)
    faults.get_plan.cache_clear()
    get_settings.cache_clear()
    try:
        built = processor_handler.build_ports()
    finally:
        get_settings.cache_clear()
        faults.get_plan.cache_clear()
    assert isinstance(processor_handler._faults, FaultInjectingDynamoDB)
    assert built.aggregates._client is processor_handler._faults


def test_handler_reports_the_injected_crash_as_a_function_error(monkeypatch: pytest.MonkeyPatch) -> None:
    inner = FakeDynamoDBClient()
    client = FaultInjectingDynamoDB(inner, FaultPlan(crash_after_writes=1))
    monkeypatch.setattr(processor_handler, "_ports", ports(client))
    monkeypatch.setattr(processor_handler, "_config", CONFIG)
    monkeypatch.setattr(processor_handler, "_faults", client)
    event = kinesis_event([reading_doc(d, NOW_MS - 120_000) for d in DEVICES], arrival_s=NOW_S)
    # The handler resets the per-invocation counters, so every invocation crashes after one write.
    for expected_writes in (1, 2):
        with pytest.raises(RuntimeError, match="injected fault"):
            processor_handler.handler(event, FakeLambdaContext())
        assert inner.puts == expected_writes
