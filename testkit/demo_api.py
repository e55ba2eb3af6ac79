"""The API over seeded in-memory stores, for working on the live view and for
tests/integration/test_live_view.py (no AWS needed):

    API_KEY=dev uvicorn --factory testkit.demo_api:create_app
    API_KEY=dev DEMO_SCENARIO=quarantine-flood uvicorn --factory testkit.demo_api:create_app

A factory, not a module-level app: importing this module changes nothing, and the deployed app
(``functions.api.main.app``) never sees the override; the demo builds an app of its own.

``DEMO_SCENARIO`` picks what the processor's metrics say (the tables are the same seeded fleet):

- ``healthy`` (default): readings in, a few quarantined, no failure;
- ``quarantine-flood``: 60 % of the readings quarantined, nearly all ``unknown_device`` (devices added
  by live tuning and never registered, as measured on a stack);
- ``archive-outage``: the archive refuses writes, one batch of 100 readings handed back on every retry
  (48,721 hand-backs in the hour, 100 readings held back);
- ``api-failing``: ``/stats`` answers what API Gateway answers when the query function fails (502 and
  its ``{"message": "Internal server error"}``); the other routes work;
- ``api-hanging``: ``/stats`` never answers (held for 120 s), as a gateway whose query function is
  stuck behind a batch retried every second;
- ``fresh``: a stack a few minutes old (3 windows per device);
- ``simulator-fleet``: the 20 devices ``make up`` registers (the simulator's fleet, seed 42: sites and
  towns on four continents, some with long names), with the healthy metrics.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from datetime import datetime

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from functions.api import main
from functions.api.deps import get_stores
from testkit.fakes import InMemoryDeviceRegistry, MemoryTotals
from testkit.seed import seeded_stores

SCENARIOS: dict[str, MemoryTotals] = {
    # The seeded tables hold 21,600 aggregated readings in the last hour (6 devices x 1 Hz).
    "healthy": MemoryTotals({"RecordsIn": 21_818}, by_dimension={"RecordsRejected": {"schema_invalid": 112,
                                                                                     "malformed_json": 106}}),
    "quarantine-flood": MemoryTotals(
        {"RecordsIn": 54_000},
        by_dimension={"RecordsRejected": {"unknown_device": 32_290, "schema_invalid": 61,
                                          "malformed_json": 49}}),
    "archive-outage": MemoryTotals(
        {"RecordsIn": 70_539, "RecordsRetried": 48_721, "ArchiveWriteFailures": 487},
        by_dimension={"RecordsRejected": {"schema_invalid": 112, "malformed_json": 106}},
        peaks={"RecordsRetried": 100}),
    "api-failing": MemoryTotals({"RecordsIn": 21_818}),
    "api-hanging": MemoryTotals({"RecordsIn": 21_818}),
    "fresh": MemoryTotals({"RecordsIn": 1080}),
    "simulator-fleet": MemoryTotals({"RecordsIn": 72_300}),
}


def create_app(now: datetime | None = None) -> FastAPI:
    scenario = os.environ.get("DEMO_SCENARIO", "healthy")
    if scenario not in SCENARIOS:
        raise ValueError(f"DEMO_SCENARIO={scenario!r}; one of {', '.join(SCENARIOS)}")
    app = main.create_app()
    if scenario == "simulator-fleet":
        from simulator.fleet import generate_fleet

        seeded = seeded_stores(now, devices=20)
        # The same device ids, described as `simulator register` describes them.
        seeded = dataclasses.replace(seeded, devices=InMemoryDeviceRegistry(
            [d.to_registry_item() for d in generate_fleet(20, 42)]))
    else:
        seeded = seeded_stores(now, minutes=3 if scenario == "fresh" else 60)
    stores = dataclasses.replace(seeded, metrics=SCENARIOS[scenario])
    app.dependency_overrides[get_stores] = lambda: stores
    if scenario in ("api-failing", "api-hanging"):
        @app.middleware("http")
        async def stats_gateway_fails(request: Request, call_next: object) -> Response:
            if request.url.path.endswith("/stats"):
                if scenario == "api-hanging":
                    await asyncio.sleep(120)
                return JSONResponse({"message": "Internal server error"}, status_code=502)
            return await call_next(request)  # type: ignore[operator, no-any-return]
    return app
