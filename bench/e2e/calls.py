"""The AWS call counter: calls per 1,000 readings, counted on the emulator with botocore event hooks."""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3

from bench.e2e.load import generate
from bench.e2e.measure import ddb_size
from bench.e2e.options import Options
from bench.e2e.report import say
from functions.processor.batch import ProcessorConfig, ProcessorPorts
from simulator.config import SimulatorConfig
from simulator.fleet import generate_fleet

# DynamoDB data-plane operations that accept ReturnConsumedCapacity (the counter asks for TOTAL).
_CAPACITY_OPS = frozenset({"GetItem", "BatchGetItem", "PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem",
                           "Query", "Scan", "TransactWriteItems", "TransactGetItems"})


class CallCounter:
    """botocore hooks: calls per API (DynamoDB ones per table; BatchGetItem keys, BatchWriteItem items), an
    estimate of the write units from the items' sizes (``wcu``), and the capacity DynamoDB itself reports
    (``consumed``, per operation and table: the counter adds ``ReturnConsumedCapacity=TOTAL`` to every
    DynamoDB call, which changes nothing else). Workers call it from the processor's thread pool."""

    def __init__(self, aggregates_table: str) -> None:
        self.aggregates_table = aggregates_table
        self.counts: Counter[str] = Counter()
        self.consumed: Counter[str] = Counter()
        self.body_bytes: Counter[str] = Counter()  # bytes of each S3 PutObject body, per API
        self.wcu = 0
        self._lock = threading.Lock()

    def attach(self, client: Any) -> None:
        # before-parameter-build hands over the API parameters (before-call only the wire request)
        client.meta.events.register("before-parameter-build.*.*", self)
        client.meta.events.register("after-call.dynamodb.*", self.after_call)

    def clear(self) -> None:
        with self._lock:
            self.counts.clear()
            self.consumed.clear()
            self.body_bytes.clear()
            self.wcu = 0

    def _table(self, name: str) -> str:
        """The stack's table a name refers to: ``<stack>-aggregates`` -> ``aggregates``."""
        return "aggregates" if name == self.aggregates_table else name.rsplit("-", 1)[-1]

    def __call__(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        name = model.name
        service = model.service_model.service_name
        if service == "dynamodb" and name in _CAPACITY_OPS:
            params["ReturnConsumedCapacity"] = "TOTAL"
        with self._lock:
            if name == "PutItem":
                self.counts[f"dynamodb.PutItem.{self._table(params['TableName'])}"] += 1
                # 1 WCU per started KB of the item written (standard tables, on-demand bills the same WRU)
                self.wcu += math.ceil(sum(len(k) + ddb_size(v) for k, v in params["Item"].items()) / 1024)
            elif name == "UpdateItem":
                self.counts[f"dynamodb.UpdateItem.{self._table(params['TableName'])}"] += 1
                self.wcu += 1
            elif name == "BatchGetItem":
                for table, request in params["RequestItems"].items():
                    self.counts[f"dynamodb.BatchGetItem.{self._table(table)}"] += 1
                    self.counts[f"dynamodb.BatchGetItem.{self._table(table)}.keys"] += len(request["Keys"])
            elif name == "BatchWriteItem":
                for table, requests in params["RequestItems"].items():
                    self.counts[f"dynamodb.BatchWriteItem.{self._table(table)}"] += 1
                    self.counts[f"dynamodb.BatchWriteItem.{self._table(table)}.items"] += len(requests)
                    self.wcu += len(requests)
            elif name == "GetItem":
                self.counts[f"dynamodb.GetItem.{self._table(params['TableName'])}"] += 1
            else:
                self.counts[f"{service}.{name}"] += 1
                if name == "PutObject" and isinstance(params.get("Body"), bytes | bytearray):
                    self.body_bytes[f"{service}.{name}"] += len(params["Body"])

    def after_call(self, model: Any, parsed: dict[str, Any], **_: Any) -> None:
        consumed = parsed.get("ConsumedCapacity")
        if not consumed:
            return
        with self._lock:
            for entry in consumed if isinstance(consumed, list) else [consumed]:
                table = self._table(entry.get("TableName", "?"))
                self.consumed[f"{model.name}.{table}"] += float(entry.get("CapacityUnits") or 0.0)


def count_calls(outputs: dict[str, str], opts: Options, batch_records: int) -> dict[str, Any]:
    """AWS calls per 1,000 readings, counted on the emulator with botocore event hooks.

    The processor's calls happen inside the emulator's Lambda workers, where a hook in this process cannot
    see them; so the real handler (real adapters, detector included) runs here, in-process, against the
    first point's stack, on fresh simulator records (new device ids, so every window is new) cut into
    batches of ``batch_records`` Kinesis records of one shard, as the mapping delivered them.
    """
    processor = point_processor_at(outputs)
    counter = CallCounter(outputs["AggregatesTableName"])
    for service in ("dynamodb", "s3", "sns", "cloudwatch"):
        counter.attach(processor.clients(service))
    events = _fresh_events(outputs, opts)
    counter.clear()  # the devices' registration above is not the processor's
    from functions.processor.handler import HandBack

    t0 = time.perf_counter()
    invocations = 0
    handed_back: list[str] = []
    for i in range(0, len(events), batch_records):
        try:
            processor.invoke(events[i : i + batch_records])
        except HandBack as exc:  # counted, not fatal: the curve above is already measured
            handed_back.append(str(exc))
        invocations += 1
    elapsed = time.perf_counter() - t0
    readings = len(events)
    per_k = {k: round(v * 1000 / readings, 2) for k, v in sorted(counter.counts.items())}
    return {"readings": readings, "batch_records": batch_records, "invocations": invocations,
            "per_1000_readings": per_k, "wcu_per_1000_readings": round(counter.wcu * 1000 / readings, 2),
            "consumed_per_1000_readings": {k: round(v * 1000 / readings, 2)
                                           for k, v in sorted(counter.consumed.items())},
            "in_process_records_per_s": round(readings / elapsed, 1), "handed_back": handed_back,
            "note": "the real handler in-process against ministack's DynamoDB/S3; one shard, batches of "
                    "batch_records as the mapping delivered them in the first point"}


@dataclass(frozen=True)
class InProcessor:
    """The processor's handler run in this process against a deployed stack: its ports and config, built
    from settings made of the stack's outputs, and the clients they use (to hook counters or timers on)."""

    ports: ProcessorPorts
    config: ProcessorConfig
    clients: Callable[[str], Any]  # service -> the client the ports use

    def invoke(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """One invocation of the handler's ``run`` on Kinesis event records (raises ``HandBack`` as it)."""
        from functions.processor.handler import run
        from testkit.events import FakeLambdaContext

        return run({"Records": records}, FakeLambdaContext(), self.ports, self.config)


def point_processor_at(outputs: dict[str, str], **overrides: Any) -> InProcessor:
    """The in-process handler pointed at the stack's resources (``overrides``: settings fields, such as
    ``metrics_sink``). As the emulator runs it: the whole batch is handed back on a failure (ministack).
    The process's environment and cached settings are left alone."""
    from functions.adapters.clients import clients_for
    from functions.processor.wiring import build_config, build_ports
    from functions.settings import settings_for_stack

    settings = settings_for_stack(outputs, **{"partial_batch_response": "raise", **overrides})
    clients = clients_for(settings)
    return InProcessor(build_ports(settings, clients), build_config(settings), clients)


def _fresh_events(outputs: dict[str, str], opts: Options) -> list[dict[str, Any]]:
    """Kinesis event records of new simulated devices (registered under a prefix): every window is new."""
    from testkit.events import SEQ_BASE, kinesis_event_record

    fleet = generate_fleet(opts.devices, opts.seed)
    prefix = "calls-"
    ddb = boto3.client("dynamodb")
    items = []
    for d in fleet:
        item = d.to_dynamodb_item()
        item["device_id"] = {"S": prefix + d.device_id}
        items.append({"PutRequest": {"Item": item}})
    for i in range(0, len(items), 25):
        ddb.batch_write_item(RequestItems={outputs["DevicesTableName"]: items[i : i + 25]})
    config = SimulatorConfig(devices=opts.devices, rate_hz=opts.rate, seed=opts.seed + 1,
                             malformed_rate=opts.malformed_rate, burst=True, count=opts.burst_records)
    records = generate(config, fleet, int((time.time() - 200) * 1000))
    payloads = [p.payload.replace(b'"dev-', f'"{prefix}dev-'.encode()) for p in records]
    return [kinesis_event_record(data, SEQ_BASE + i, "shardId-000000000000", time.time(),
                                 prefix + records[i].device_id) for i, data in enumerate(payloads)]


def say_calls(calls: dict[str, Any]) -> None:
    per_k = ", ".join(f"{k} {v}" for k, v in calls["per_1000_readings"].items())
    say(f"calls:    per 1,000 readings (batches of {calls['batch_records']} records, {calls['invocations']} "
        f"invocations, in-process): {per_k}; ~{calls['wcu_per_1000_readings']} WCU")
