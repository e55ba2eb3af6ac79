"""Benchmark: the processor with each detector backend, side by side, in one run.

The same simulator readings go, batch by batch, through ``process_batch`` twice: once with the embedded
backend (the forest scored in-process) and once with the SageMaker backend, whose real boto3
``sagemaker-runtime`` client (``functions.adapters.clients``, as the Lambda builds it) calls the model
server of ``serving/`` started on 127.0.0.1, the same process ``iotpipe up --detector sagemaker`` runs.
Storage is in memory (``testkit.fakes``) so the difference is the detector; batches alternate between
the backends so machine noise hits both. It also measures the server's own time per call (what SageMaker
Serverless bills) and the request bytes per reading, the figures ``iotpipe cost --detector sagemaker``
uses, and checks that both backends archived the same verdicts.

    .venv/bin/python bench/detector_backends.py [--devices 500] [--batch 2000] [--batches 20]

Readable lines first; the last line is one JSON object. What it does not measure: the network between a
Lambda and a SageMaker endpoint in a region, and the endpoint's cold start (the server here is warm, on
the loopback interface).
"""

from __future__ import annotations

import gzip
import os
import statistics
import sys
import time
from typing import Annotated, Any

import numpy as np
import orjson
import typer

from functions.adapters.alerts import Alerter
from functions.core.readings import DeviceInfo
from functions.detector.anomaly_detector import SageMakerDetector, build_embedded
from functions.detector.calibrated import CalibratedDetector
from functions.processor.enrich import DeviceCache
from functions.processor.ingestion_processor import ProcessorPorts, process_batch
from iotpipe.console import run_app
from iotpipe.local.model_server import ModelServer
from iotpipe.settings import REGION_DEFAULT
from serving.app import parse_features
from testkit.events import make_records
from testkit.fakes import (
    InMemoryAggregateStore,
    InMemoryAnomalyStore,
    InMemoryArchive,
    InMemoryCooldownStore,
    InMemoryDeviceRegistry,
    InMemoryMetrics,
    InMemoryPublisher,
)

NOW_S = 1_795_000_000.0
app = typer.Typer(add_completion=False, help=__doc__.splitlines()[0])


def _readings(devices: int, n: int, seed: int) -> tuple[list[bytes], list[Any]]:
    from simulator.config import SimulatorConfig
    from simulator.fleet import generate_fleet
    from simulator.stream import generate_readings

    config = SimulatorConfig(devices=devices, rate_hz=1.0, seed=seed, anomaly_rate=0.01, malformed_rate=0.0,
                             count=n)
    fleet = generate_fleet(devices, seed)
    start_ms = int(NOW_S * 1000) - (n // devices + 5) * 1000
    return [p.payload for p in generate_readings(config, fleet, start_ms)], fleet


def _ports(fleet: list[Any], detector: Any) -> ProcessorPorts:
    infos = [DeviceInfo(device_id=d.device_id, site=d.site, location=d.location,
                        baseline=dict(d.baseline)) for d in fleet]
    registry = InMemoryDeviceRegistry(infos)
    return ProcessorPorts(devices=DeviceCache(registry, ttl_s=3600, clock=lambda: 0.0),
                          aggregates=InMemoryAggregateStore(), archive=InMemoryArchive(),
                          metrics=InMemoryMetrics(), detector=detector, anomaly_store=InMemoryAnomalyStore(),
                          alerter=Alerter(InMemoryCooldownStore(), InMemoryPublisher(), 300),
                          detector_state=registry)


def _verdicts(archive: InMemoryArchive) -> dict[tuple[str, int], tuple[Any, Any, Any]]:
    out = {}
    for key, body in archive.objects.items():
        if key.startswith("processed/"):
            for line in gzip.decompress(body).splitlines():
                d = orjson.loads(line)
                verdict = (d.get("anomaly"), d.get("anomaly_score"), d.get("severity"))
                out[(d["device_id"], d["epoch_ms"])] = verdict
    return out


def _http_call_ms(url: str, width: int) -> float:
    """Median wall time of a one-row POST /invocations over loopback: the per-call cost of the server
    (HTTP parsing and framing in uvicorn/Starlette) plus the client's, an upper bound of what is billed."""
    import urllib.request

    body = orjson.dumps({"features": [[0.0] * width]})
    times = []
    for _ in range(50):
        request = urllib.request.Request(f"{url}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
        t0 = time.perf_counter()
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def _server_cost(batch: int) -> tuple[float, float, float]:
    """(ms per call, us per reading, request bytes per reading) of the server's own work, in-process."""
    embedded = build_embedded()
    width = len(embedded.model.spec.feature_names)
    # The parts of POST /invocations that are the model's work (the routes call these): parse, score, encode
    rng = np.random.default_rng(5)
    timings = {}
    sizes = {}
    for n in (10, batch):
        body = orjson.dumps({"features": rng.normal(size=(n, width)).tolist(),
                             "feature_names": embedded.model.spec.feature_names})
        sizes[n] = len(orjson.dumps({"features": rng.normal(size=(n, width)).tolist()}))
        best = float("inf")
        for _ in range(30):
            t0 = time.perf_counter()
            feats = parse_features(body, list(embedded.model.spec.feature_names))
            orjson.dumps({"scores": embedded.score_features(feats).tolist()})
            best = min(best, time.perf_counter() - t0)
        timings[n] = best
    per_reading_s = (timings[batch] - timings[10]) / (batch - 10)
    call_s = max(0.0, timings[10] - 10 * per_reading_s)
    return call_s * 1000, per_reading_s * 1e6, sizes[batch] / batch


@app.command()
def main(
    devices: Annotated[int, typer.Option(help="devices in the fleet")] = 500,
    batch: Annotated[int, typer.Option(help="readings per processor batch")] = 2000,
    batches: Annotated[int, typer.Option(help="batches per backend")] = 20,
    seed: int = 26,
) -> int:
    payloads, fleet = _readings(devices, batch * batches, seed)
    server = ModelServer(endpoint_name="bench-detector").start()
    os.environ.update({"AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": server.url, "AWS_ACCESS_KEY_ID": "bench",
                       "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": REGION_DEFAULT})
    os.environ.pop("AWS_ENDPOINT_URL", None)
    try:
        backends = {
            "embedded": _ports(fleet, CalibratedDetector(build_embedded())),
            # "fail": a call that did not reach the server would stop the run instead of being hidden by the
            # embedded fallback
            "sagemaker": _ports(fleet, CalibratedDetector(
                SageMakerDetector("bench-detector", 10.0, "fail", build_embedded()))),
        }
        latencies: dict[str, list[float]] = {name: [] for name in backends}
        # One warm-up batch each (the client's first call builds its connection), not timed.
        for ports in backends.values():
            process_batch(make_records(payloads[:10], arrival_s=NOW_S), ports, now_s=NOW_S)
        for i in range(batches):
            records = make_records(payloads[i * batch:(i + 1) * batch], first_seq=10**20 + i * batch,
                                   arrival_s=NOW_S)
            for name, ports in backends.items():
                t0 = time.perf_counter()
                outcome = process_batch(records, ports, now_s=NOW_S)
                latencies[name].append(time.perf_counter() - t0)
                whole = outcome.aggregated + outcome.duplicates + outcome.redelivered == len(records)
                if not whole or outcome.detector_backend_failures:
                    raise SystemExit(f"{name}: batch {i} not processed whole: {outcome.summary()}")
        call_ms = _http_call_ms(server.url, len(build_embedded().model.spec.feature_names))
        archives = [ports.archive for ports in backends.values()]
        same = _verdicts(archives[0]) == _verdicts(archives[1])  # type: ignore[arg-type]
    finally:
        server.stop()
    _, us_per_reading, bytes_per_reading = _server_cost(batch)

    figures: dict[str, Any] = {"devices": devices, "batch_readings": batch, "batches": batches,
                               "verdicts_identical": same}
    print(f"processor, {batches} batches of {batch} readings over {devices} devices "
          f"(in-memory storage; SageMaker = real boto3 client -> serving/ on 127.0.0.1)")
    print(f"{'backend':<10} {'p50 ms/batch':>13} {'p95 ms/batch':>13} {'readings/s':>11}")
    for name, values in latencies.items():
        ms = sorted(v * 1000 for v in values)
        p50, p95 = statistics.median(ms), ms[min(len(ms) - 1, int(0.95 * len(ms)))]
        rate = batch * len(values) / sum(values)
        print(f"{name:<10} {p50:>13.1f} {p95:>13.1f} {rate:>11,.0f}")
        figures[f"{name}_batch_ms_p50"] = round(p50, 2)
        figures[f"{name}_batch_ms_p95"] = round(p95, 2)
        figures[f"{name}_readings_per_s"] = round(rate)
    figures["sagemaker_to_embedded_readings_per_s_ratio"] = round(
        figures["sagemaker_readings_per_s"] / figures["embedded_readings_per_s"], 3)
    print(f"same verdicts from both backends: {same}")
    print(f"server's work per call (what SageMaker Serverless bills): {call_ms:.2f} ms per call (a one-row "
          f"request over loopback, client included) + {us_per_reading:.2f} us/reading (parse, score, "
          f"encode); request {bytes_per_reading:.0f} B/reading of JSON features")
    figures.update({"server_ms_per_call": round(call_ms, 3),
                    "server_us_per_reading": round(us_per_reading, 3),
                    "request_bytes_per_reading": round(bytes_per_reading, 1)})
    print(orjson.dumps(figures).decode())
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(run_app(app, sys.argv[1:], prog_name="bench/detector_backends.py"))
