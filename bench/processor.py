"""Benchmark: processor core throughput (decode, validate, enrich from a warm cache, window fold; no I/O).

Runs the same code path as ``process_batch`` up to the storage boundary (``prepare_batch`` + the window
fold of every (device, window) group), in ESM-sized batches, over 100,000 simulator-like readings sent
one per Kinesis record, packed ``--pack`` per record (JSON arrays) and packed and gzip-compressed (the
simulator's default, ``simulator.sinks.encode_pack``), and compares the three, in readings/s, with bare
``orjson.loads`` of each reading's JSON bytes in the same run.

    .venv/bin/python bench/processor.py [--records 100000] [--devices 1000] [--batch 5000] [--pack 25]

Readable lines first; the last line is one JSON object.
"""

from __future__ import annotations

import base64
import gc
import platform
import sys
import time
from collections.abc import Callable
from typing import Annotated, Any

import orjson
import typer

from functions.core.readings import DeviceInfo
from functions.processor import windows
from functions.processor.decode import DecodeRules
from functions.processor.enrich import DeviceCache
from functions.processor.ingestion_processor import gc_paused, prepare_batch
from functions.processor.records import KinesisRecord
from iotpipe.console import run_app

NOW_S = 1_795_000_000.0


def generate_payloads(n: int, n_devices: int, seed: int) -> tuple[list[bytes], list[str]]:
    """``n`` readings from the real simulator: ``n_devices`` devices at 1 Hz, ending at NOW_S.

    Only good readings (no anomaly or malformed injection): the benchmark measures the path every valid
    reading takes. The simulated clock starts so that the newest reading is a few seconds old.
    """
    from simulator.config import SimulatorConfig
    from simulator.fleet import generate_fleet
    from simulator.stream import generate_readings

    config = SimulatorConfig(
        devices=n_devices, rate_hz=1.0, seed=seed, anomaly_rate=0.0, malformed_rate=0.0, count=n
    )
    fleet = generate_fleet(n_devices, seed)
    start_ms = int(NOW_S * 1000) - (n // n_devices + 5) * 1000
    payloads = [p.payload for p in generate_readings(config, fleet, start_ms)]
    return payloads, [d.device_id for d in fleet]


class _WarmRegistry:
    def __init__(self, ids: list[str]) -> None:
        self.devices = {d: DeviceInfo(device_id=d, site="site-1", location="Porto, PT") for d in ids}

    def get_many(self, device_ids: Any) -> dict[str, DeviceInfo]:
        return {d: self.devices[d] for d in device_ids if d in self.devices}


def best_of(repeat: int, *fns: Callable[[], Any]) -> list[float]:
    """Best CPU time of each function over ``repeat`` rounds, the functions alternating within a round.

    CPU time of this process: "records/s on one core". On a shared machine it still varies with cache
    and frequency contention, so the functions take turns: a noisy stretch hits both sides of the ratio.
    """
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            gc.collect()
            start = time.process_time()
            fn()
            best[i] = min(best[i], time.process_time() - start)
    return best


app = typer.Typer(add_completion=False, help=__doc__.splitlines()[0])


@app.command()
def processor(
    records: Annotated[int, typer.Option(help="readings")] = 100_000,
    devices: int = 1000,
    batch: Annotated[int, typer.Option(help="readings per batch (recommended ESM BatchSize)")] = 5000,
    pack: Annotated[int, typer.Option(
        help="readings per packed Kinesis record (the simulator's SIM_PACK)")] = 25,
    repeat: int = 5,
    seed: int = 7,
) -> int:

    payloads, ids = generate_payloads(records, devices, seed)
    arrival_ms = int(NOW_S * 1000)

    def kinesis(datas: list[bytes]) -> list[KinesisRecord]:
        return [
            KinesisRecord(
                "shardId-000000000000", str(10**20 + i), base64.b64encode(d).decode(), arrival_ms, "pk"
            )
            for i, d in enumerate(datas)
        ]

    # The same readings three times: one per Kinesis record, packed ``--pack`` per record (JSON arrays),
    # and packed and gzip-compressed as the simulator sends them. Batches hold the same readings either
    # way (``--batch`` readings), so the fold sees the same groups.
    from simulator.sinks import encode_pack

    single = kinesis(payloads)
    groups = [payloads[i : i + pack] for i in range(0, len(payloads), pack)]
    packed = kinesis([encode_pack(g) for g in groups])
    gzipped = kinesis([encode_pack(g, compress=True) for g in groups])
    per_batch = max(1, batch // pack)
    single_batches = [single[i : i + batch] for i in range(0, len(single), batch)]
    packed_batches = [packed[i : i + per_batch] for i in range(0, len(packed), per_batch)]
    gzip_batches = [gzipped[i : i + per_batch] for i in range(0, len(gzipped), per_batch)]
    rules = DecodeRules()
    cache = DeviceCache(_WarmRegistry(ids), ttl_s=3600, clock=lambda: 0.0)
    cache.resolve(ids)  # warm: enrichment is a dict lookup, as in a warm Lambda container
    now_ms = int(NOW_S * 1000)
    counts: dict[str, dict[str, int]] = {}

    def core_of(name: str, batches: list[list[KinesisRecord]]) -> Callable[[], None]:
        def core() -> None:
            aggregated = rejected = n_windows = 0
            for batch in batches:
                with gc_paused():  # as process_batch does for each batch
                    prepared = prepare_batch(batch, cache, rules, now_ms)
                    rejected += len(prepared.rejections)
                    for group in prepared.groups.values():
                        acc = windows.agg_all(group.readings)
                        windows.result(acc)
                        aggregated += acc.count
                        n_windows += 1
            counts[name] = {"aggregated": aggregated, "rejected": rejected, "windows": n_windows}

        return core

    core_single = core_of("single", single_batches)
    core_packed = core_of("packed", packed_batches)
    core_gzip = core_of("gzip", gzip_batches)

    def bare_orjson() -> None:
        loads = orjson.loads
        for p in payloads:
            loads(p)

    core_single()  # warm-up (compiles regexes, fills the day cache)
    core_packed()
    core_gzip()
    t_single, t_packed, t_gzip, t_json = best_of(repeat, core_single, core_packed, core_gzip, bare_orjson)
    n = len(payloads)
    rps = n / t_single
    packed_rps = n / t_packed
    gzip_rps = n / t_gzip
    json_rps = n / t_json
    print(
        f"python {platform.python_version()} on {platform.machine()}, {n} readings, {devices} devices, "
        f"batches of {batch} readings, best of {repeat} alternating rounds (CPU time)"
    )
    print(
        f"core, 1 reading/record:      {t_single * 1000:8.1f} ms  {rps:12,.0f} readings/s  "
        f"({t_single / n * 1e6:.2f} us/reading, {len(single):,} records)"
    )
    print(
        f"core, {pack} readings/record:    {t_packed * 1000:8.1f} ms  {packed_rps:12,.0f} readings/s  "
        f"({t_packed / n * 1e6:.2f} us/reading, {len(packed):,} records)"
    )
    print(
        f"core, {pack}/record, gzip:      {t_gzip * 1000:8.1f} ms  {gzip_rps:12,.0f} readings/s  "
        f"({t_gzip / n * 1e6:.2f} us/reading, {len(gzipped):,} records)"
    )
    print(
        f"bare orjson (per reading):   {t_json * 1000:8.1f} ms  {json_rps:12,.0f} readings/s  "
        f"({t_json / n * 1e6:.2f} us/reading)"
    )
    c = counts["single"]
    same = counts["packed"] == c == counts["gzip"]
    if not same:
        print(f"WARNING: packed, gzip and single results differ: {counts}")
    print(
        f"ratio core/orjson: {rps / json_rps:.3f} (single), {packed_rps / json_rps:.3f} (packed), "
        f"{gzip_rps / json_rps:.3f} (packed gzip); packed/single {packed_rps / rps:.2f}x, "
        f"gzip/packed {gzip_rps / packed_rps:.2f}x; aggregated {c['aggregated']}, rejected {c['rejected']}, "
        f"windows {c['windows']}"
    )
    target = 100_000
    print(f"target >= {target:,} readings/s (single records): {'met' if rps >= target else 'NOT met'}")
    print(
        orjson.dumps(
            {
                "benchmark": "processor_core",
                "readings": n,
                "devices": devices,
                "batch_readings": batch,
                "pack": pack,
                "readings_per_s": round(rps),
                "packed_readings_per_s": round(packed_rps),
                "packed_speedup": round(packed_rps / rps, 3),
                "records_per_s": round(rps),  # = readings_per_s: one reading per record (kept for readers)
                "us_per_reading": round(t_single / n * 1e6, 3),
                "packed_us_per_reading": round(t_packed / n * 1e6, 3),
                "orjson_decode_readings_per_s": round(json_rps),
                "ratio_to_orjson": round(rps / json_rps, 4),
                "packed_ratio_to_orjson": round(packed_rps / json_rps, 4),
                "gzip_packed_readings_per_s": round(gzip_rps),
                "gzip_packed_us_per_reading": round(t_gzip / n * 1e6, 3),
                "gzip_packed_ratio_to_orjson": round(gzip_rps / json_rps, 4),
                "gzip_over_packed": round(gzip_rps / packed_rps, 3),
                "target_readings_per_s": target,
                "target_met": rps >= target and packed_rps >= target and gzip_rps >= target,
                "aggregated": c["aggregated"],
                "rejected": c["rejected"],
                "windows": c["windows"],
                "python": platform.python_version(),
            }
        ).decode()
    )
    return 0 if same else 1



def main(argv: list[str] | None = None) -> int:
    return run_app(app, argv, prog_name="bench/processor.py")


if __name__ == "__main__":
    sys.exit(main())
