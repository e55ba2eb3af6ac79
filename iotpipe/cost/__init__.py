"""The cost model behind ``iotpipe cost``: the monthly AWS cost of the pipeline, per component, and per
million readings.

One module per step, in the order an estimate runs:

- ``template_facts``: the defaults read from cloudformation/template.yaml (parameters, resource properties,
  the processor's ``WRITE_CONCURRENCY`` from ``ProcessorWriteConcurrency``), with a fallback when the
  template cannot be read;
- ``workload``: what is being costed (``Workload``) and bench-measured replacements (``Measured``);
- ``limits`` and ``sizing``: the AWS limits, record and item sizes, shards, and the batch shape;
- ``traffic``: a month of the workload as the calls and bytes the services bill;
- ``estimate``: one function per service turning the traffic into priced ``Line``s, and the shard count
  (the cheapest between the write limits' and what lets a batch span the batching window);
- ``capacity``, ``quotas``: the capacity plan, and the plan against AWS's default quotas;
- ``scale``: the batching window's latency/cost trade-off, the sweep over fleet sizes and its plot;
- ``render``, ``scenarios``: the JSON and table, the what-ifs;
- ``bench_input``: ``--from-bench`` (bench/end_to_end.py's ``cost_inputs``); ``cli``: ``iotpipe cost``.

The names below are the package's public API (``from iotpipe.cost import Workload, estimate``).
"""

from __future__ import annotations

from iotpipe.cost.bench_input import measured_from_bench, measured_from_calls
from iotpipe.cost.capacity import capacity
from iotpipe.cost.cli import main
from iotpipe.cost.estimate import (
    HALVING_TARGET_USD_PER_MILLION,
    TARGET_USD_PER_MILLION,
    Estimate,
    Line,
    estimate,
)
from iotpipe.cost.limits import (
    BATCH_GET_MAX_KEYS,
    BATCH_WRITE_MAX_ITEMS,
    EVENT_ENVELOPE_BYTES,
    LAMBDA_PAYLOAD_BYTES,
    SHARD_BYTES_PER_S,
    SHARD_HEADROOM,
    SHARD_RECORDS_PER_S,
)
from iotpipe.cost.render import render, to_json
from iotpipe.cost.scenarios import what_if, what_if_scenarios
from iotpipe.cost.sizing import (
    batch_limit,
    batch_shape,
    item_bytes,
    kinesis_record_bytes,
    payload_cap,
    shards_for,
)
from iotpipe.cost.template_facts import (
    DEFAULTS,
    DEFAULTS_FROM,
    FALLBACK_DEFAULTS,
    TEMPLATE,
    WRITE_CONCURRENCY,
    count_template_alarms,
    load_defaults,
    template_defaults,
)
from iotpipe.cost.traffic import DAYS_PER_MONTH, Traffic, monthly_traffic
from iotpipe.cost.workload import (
    DETECTOR_FALSE_ALARM_RATE,
    FLAGGED_SHARE,
    TRUE_ANOMALY_SHARE,
    TTL_DELETION_LAG_DAYS,
    Measured,
    Workload,
)

__all__ = [
    "BATCH_GET_MAX_KEYS",
    "BATCH_WRITE_MAX_ITEMS",
    "DAYS_PER_MONTH",
    "DEFAULTS",
    "DEFAULTS_FROM",
    "DETECTOR_FALSE_ALARM_RATE",
    "EVENT_ENVELOPE_BYTES",
    "FALLBACK_DEFAULTS",
    "FLAGGED_SHARE",
    "HALVING_TARGET_USD_PER_MILLION",
    "LAMBDA_PAYLOAD_BYTES",
    "SHARD_BYTES_PER_S",
    "SHARD_HEADROOM",
    "SHARD_RECORDS_PER_S",
    "TARGET_USD_PER_MILLION",
    "TEMPLATE",
    "TRUE_ANOMALY_SHARE",
    "TTL_DELETION_LAG_DAYS",
    "WRITE_CONCURRENCY",
    "Estimate",
    "Line",
    "Measured",
    "Traffic",
    "Workload",
    "batch_limit",
    "batch_shape",
    "capacity",
    "count_template_alarms",
    "estimate",
    "item_bytes",
    "kinesis_record_bytes",
    "load_defaults",
    "main",
    "measured_from_bench",
    "measured_from_calls",
    "monthly_traffic",
    "payload_cap",
    "render",
    "shards_for",
    "template_defaults",
    "to_json",
    "what_if",
    "what_if_scenarios"
]
