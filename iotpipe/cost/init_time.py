"""Cold starts priced: AWS bills the init phase of on-demand Lambda functions packaged as a ZIP on a
managed runtime (all of ours) at the function's duration price (GB-s), since 2025-08-01.

Init time per function is its handler module's import, measured by ``bench/import_times.py`` from the
zip the function deploys, with the bytecode it ships (median wall time, 15 fresh interpreters each,
``bench/results/import-times-2026-12-07.json``, measured on a shared 2-core machine: a full core per
import). Not included because nothing local measures them: the managed runtime's own start before the
import, and a slower CPU share at small memory sizes (Lambda gives CPU in proportion to memory).

Cold starts per month come from a deliberately simple model. AWS publishes neither how long an execution
environment lives nor how soon an idle one is reclaimed, so both are assumptions, named here:

- ``ENVIRONMENT_LIFETIME_H``: a busy environment is replaced every 2 hours (lifetimes seen in practice
  are a few hours at most);
- ``IDLE_REAP_S``: an environment idle for 10 minutes is gone (5 to 15 minutes are seen in practice).

Per function:

- processor: one environment per shard (ParallelizationFactor 1, the template's default), never idle (the
  event source mapping invokes it for every batch): ``shards x 730 h / lifetime``;
- query API: requests arrive at random (a Poisson process) at ``api_requests_per_day``; a request after
  a gap longer than ``IDLE_REAP_S`` starts cold (a share ``exp(-rate x IDLE_REAP_S)`` of them); the
  environments traffic keeps busy (``rate x duration``, at least one, Little's law) are replaced every
  lifetime, if traffic keeps them warm that long (``random_arrivals``);
- ingest (``ingest_via_api``): likewise at its request rate; its authorizer likewise at its call rate,
  which API Gateway's cache (300 s per device token) bounds by ``devices / 300 s``;
- calibrator and compactor: scheduled; a run more than ``IDLE_REAP_S`` after the previous one starts
  cold every time;
- IoT ingest: on AWS the readings rule stores readings through its Kinesis action and the function
  runs only for refused messages, which the model does not count: not priced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from iotpipe.cost.prices import DEFAULT_PRICES, HOURS_PER_MONTH, SECONDS_PER_MONTH, Prices
from iotpipe.cost.workload import Workload

if TYPE_CHECKING:
    from iotpipe.cost.estimate import Line

ENVIRONMENT_LIFETIME_H = 2.0
IDLE_REAP_S = 600.0
AUTHORIZER_CACHE_S = 300.0  # template DeviceAuthorizerCacheSeconds default
AUTHORIZER_MEMORY_MB = 256  # template IngestAuthorizerFunction MemorySize
AUTHORIZER_MS = 20.0  # one GetItem and a policy (assumed, not measured)
COMPACTOR_EVERY_S = 3600.0  # hourly (template schedule)

# Median import of each function's handler from its own zip with the bytecode it ships, wall ms
# (bench/results/import-times-2026-12-07.json, "after_pyc_ms"; the same run's "before_src_ms" are the
# figures without bytecode and without the api bundle's cut).
INIT_MS = {
    "processor": 203.0,
    "calibrator": 274.3,
    "compactor": 132.6,
    "ingest": 167.8,
    "authorizer": 112.0,
    "api": 631.9,
}


@dataclass(frozen=True)
class ColdStarts:
    function: str
    per_month: float
    init_ms: float
    memory_mb: int
    grows_with_readings: bool

    @property
    def gb_s(self) -> float:
        return self.per_month * self.init_ms / 1000 * self.memory_mb / 1024


def _busy_environments_per_month(environments: float) -> float:
    return environments * HOURS_PER_MONTH / ENVIRONMENT_LIFETIME_H


def random_arrivals(per_month: float, duration_ms: float) -> float:
    """Cold starts of a function invoked at random at ``per_month`` calls of ``duration_ms`` each.

    A call after a gap longer than ``IDLE_REAP_S`` starts cold (``exp(-rate x IDLE_REAP_S)`` of them);
    an environment is replaced after a lifetime only if it stayed warm that long, i.e. no reclaim
    window of the lifetime went without a call (``(1 - exp(-rate x IDLE_REAP_S)) ** (lifetime /
    IDLE_REAP_S)``): 1 for a busy API, 0 for a quiet one.
    """
    if per_month <= 0:
        return 0.0
    rate = per_month / SECONDS_PER_MONTH
    idle_share = math.exp(-rate * IDLE_REAP_S)
    busy = max(1.0, rate * duration_ms / 1000)
    warm_a_lifetime = (1 - idle_share) ** (ENVIRONMENT_LIFETIME_H * 3600 / IDLE_REAP_S)
    return per_month * idle_share + _busy_environments_per_month(busy) * warm_a_lifetime


def scheduled(every_s: float) -> float:
    runs = SECONDS_PER_MONTH / every_s
    return runs if every_s > IDLE_REAP_S else _busy_environments_per_month(1.0)


def cold_starts(w: Workload, shards: int) -> list[ColdStarts]:
    """Each priced function's cold starts per month (see the module docstring for the model)."""
    out = [
        ColdStarts("processor", _busy_environments_per_month(shards), INIT_MS["processor"],
                   w.processor_memory_mb, grows_with_readings=True),
        ColdStarts("api", random_arrivals(w.api_requests_per_day * SECONDS_PER_MONTH / 86_400, w.query_ms),
                   INIT_MS["api"], w.query_memory_mb, grows_with_readings=False),
        ColdStarts("calibrator", scheduled(w.calibration_every_s), INIT_MS["calibrator"],
                   w.calibrator_memory_mb, grows_with_readings=False),
    ]
    if w.archive_compaction:
        out.append(ColdStarts("compactor", scheduled(COMPACTOR_EVERY_S), INIT_MS["compactor"],
                              w.compactor_memory_mb, grows_with_readings=False))
    if w.ingest_via_api:
        requests = w.devices * w.rate_hz * SECONDS_PER_MONTH / w.readings_per_ingest_request
        authorizations = min(requests, w.devices * SECONDS_PER_MONTH / AUTHORIZER_CACHE_S)
        out += [
            ColdStarts("ingest", random_arrivals(requests, w.ingest_ms), INIT_MS["ingest"],
                       w.ingest_memory_mb, grows_with_readings=True),
            ColdStarts("authorizer", random_arrivals(authorizations, AUTHORIZER_MS), INIT_MS["authorizer"],
                       AUTHORIZER_MEMORY_MB, grows_with_readings=True),
        ]
    return out


def init_facts(w: Workload, shards: int, p: Prices = DEFAULT_PRICES) -> dict[str, dict[str, float]]:
    """``--json``'s ``init``: per function, cold starts a month, init ms, memory, GB-s and USD a month."""
    return {c.function: {"cold_starts_per_month": round(c.per_month, 1), "init_ms": c.init_ms,
                         "memory_mb": c.memory_mb, "gb_s_per_month": round(c.gb_s, 3),
                         "usd_per_month": round(c.gb_s * p.lambda_gb_second, 4)}
            for c in cold_starts(w, shards)}


def init_lines(w: Workload, shards: int, p: Prices) -> list[Line]:
    """One "init (cold starts)" line per function, at the Lambda duration price."""
    from iotpipe.cost.estimate import Line  # estimate.py imports this module: Line at call time

    return [Line("lambda", f"{c.function} init (cold starts)", c.gb_s, "GB-s", c.gb_s * p.lambda_gb_second,
                 fixed=not c.grows_with_readings)
            for c in cold_starts(w, shards)]
