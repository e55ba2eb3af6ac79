"""Benchmark: Kinesis bytes per reading of the record encodings a producer may send (docs/data-model.md).

The simulator's readings (``--devices`` devices at 1 Hz, its default anomaly mix, ``ground_truth``
labels unless ``--no-ground-truth``) go through the simulator's own ``KinesisSink`` (a fake client keeps
the entries) at each ``--packs`` size, plain and gzip-compressed at each ``--levels`` level. Packs are full
(``pack`` readings of one pack group) by default; ``--flush-s 0.25`` flushes as the runner does, which
closes a pack early when its group has fewer readings per flush than the pack size. Pack 1 compressed is
the gzip of each lone reading (``gzip.compress``, mtime 0), which the sink does not send (see the table).
Per encoding: Kinesis data bytes per reading, the ratio to plain JSON of the same pack, PUT payload units
(25 KB each, per record) per million readings, readings that fit one Lambda invoke (6 MB: base64 of each
record plus the event envelope per record, iotpipe/cost/limits.py), and the CPU time of gzip compression
(producer) and decompression (``functions.processor.gzipped.inflate``, the processor's) per reading.

    .venv/bin/python bench/record_encoding.py [--devices 1000] [--seconds 60] [--packs 1,10,25,50,100,200]
        [--levels 1,6,9] [--save bench/results/record-encoding.json]

Readable lines first; the last line is one JSON object.
"""

from __future__ import annotations

import gc
import gzip
import math
import platform
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from functions.processor.gzipped import inflate
from iotpipe.console import run_app
from iotpipe.cost.limits import EVENT_ENVELOPE_BYTES, LAMBDA_PAYLOAD_BYTES
from simulator.clock import FakeClock
from simulator.config import SimulatorConfig
from simulator.fleet import generate_fleet
from simulator.sinks import KinesisSink
from simulator.stream import generate_readings

PUT_PAYLOAD_UNIT = 25 * 1024  # Kinesis on-demand/provisioned PUT payload unit
START_MS = 1_795_000_000_000
CAP = 1_048_576  # the processor's MAX_PACKED_BYTES default


class _Keep:
    """A Kinesis client that accepts every entry and keeps it."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        self.entries.extend(Records)
        return {"Records": [{"SequenceNumber": "1", "ShardId": "shardId-0"} for _ in Records]}


def sink_records(
    produced: list[Any], pack: int, compress: bool, level: int, flush_ms: int
) -> list[dict[str, Any]]:
    """The Kinesis entries the simulator's sink puts for these readings, flushed every ``flush_ms`` of
    simulated time (0: only at the end, so every pack fills to ``pack`` readings of its pack group)."""
    client = _Keep()
    sink = KinesisSink("bench", client=client, clock=FakeClock(), shard_count=10_000, pack=pack,
                       compress=compress, gzip_level=level)
    sink.setup()
    tick = None
    for p in produced:
        now = p.send_ms // flush_ms if flush_ms else 0
        if tick is not None and now != tick:
            sink.flush()
        tick = now
        sink.add(p)
    sink.flush()
    assert sink.stats.sent == len(produced), sink.stats
    return client.entries


def cpu(fn: Any, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def measure(datas: list[bytes], readings: int, plain_bytes: int) -> dict[str, Any]:
    sizes = [len(d) for d in datas]
    total = sum(sizes)
    event = sum(math.ceil(n / 3) * 4 + EVENT_ENVELOPE_BYTES for n in sizes)
    return {
        "records": len(datas),
        "bytes_per_reading": round(total / readings, 2),
        "ratio_to_plain": round(plain_bytes / total, 3),
        "put_units_per_million": round(sum(math.ceil(n / PUT_PAYLOAD_UNIT) for n in sizes) / readings * 1e6),
        "readings_per_invoke": int(LAMBDA_PAYLOAD_BYTES / (event / readings)),
    }


app = typer.Typer(add_completion=False, help=__doc__.splitlines()[0])


@app.command()
def record_encoding(
    devices: int = 1000,
    seconds: Annotated[int, typer.Option(help="simulated seconds at 1 Hz per device")] = 60,
    packs: Annotated[str, typer.Option(help="pack sizes (readings per record)")] = "1,10,25,50,100,200",
    levels: Annotated[str, typer.Option(help="gzip levels")] = "1,6,9",
    repeat: int = 3,
    seed: int = 7,
    ground_truth: Annotated[bool, typer.Option(
        help="the simulator's ground_truth label in each reading (real devices send none)")] = True,
    flush_s: Annotated[float, typer.Option(
        help="flush the sink every this many simulated seconds (the runner: 0.25); 0 = full packs")] = 0.0,
    save: Annotated[Path | None, typer.Option(help="also write the JSON line to this file")] = None,
) -> int:
    pack_sizes = [int(p) for p in packs.split(",")]
    level_list = [int(v) for v in levels.split(",")]
    config = SimulatorConfig(devices=devices, rate_hz=1.0, seed=seed, count=devices * seconds,
                             malformed_rate=0.0, jitter=0.1, include_ground_truth=ground_truth)
    produced = list(generate_readings(config, generate_fleet(devices, seed), START_MS))
    n = len(produced)
    flush_ms = int(flush_s * 1000)
    rows: list[dict[str, Any]] = []
    for pack in pack_sizes:
        plain = [bytes(e["Data"]) for e in sink_records(produced, pack, False, 6, flush_ms)]
        plain_bytes = sum(map(len, plain))
        rows.append({"pack": pack, "encoding": "json", "level": 0, **measure(plain, n, plain_bytes),
                     "compress_us_per_reading": 0.0, "inflate_us_per_reading": 0.0})
        for level in level_list:
            if pack == 1:  # the sink sends lone readings plain: gzip each one to show why
                datas = [gzip.compress(d, compresslevel=level, mtime=0) for d in plain]
            else:
                datas = [bytes(e["Data"]) for e in sink_records(produced, pack, True, level, flush_ms)]
            # Compression of exactly what the sink compresses (its JSON arrays), inflation as the processor.
            compressed = [d for d in plain if pack == 1 or d[:1] == b"["]
            t_c = cpu(lambda level=level, compressed=compressed: [
                gzip.compress(d, compresslevel=level, mtime=0) for d in compressed], repeat)
            t_i = cpu(lambda datas=datas: [inflate(d, CAP) for d in datas if d[:2] == b"\x1f\x8b"], repeat)
            assert b"".join(inflate(d, CAP) if d[:2] == b"\x1f\x8b" else d for d in datas) == b"".join(plain)
            rows.append({"pack": pack, "encoding": "gzip", "level": level, **measure(datas, n, plain_bytes),
                         "compress_us_per_reading": round(t_c / n * 1e6, 3),
                         "inflate_us_per_reading": round(t_i / n * 1e6, 3)})
    labels = "with" if ground_truth else "no"
    print(f"python {platform.python_version()} on {platform.machine()}, {n:,} simulator readings "
          f"({devices} devices x {seconds} s at 1 Hz, {labels} ground_truth, anomaly rate "
          f"{config.anomaly_rate}), packs through KinesisSink ("
          f"{f'flushed every {flush_s} s' if flush_s else 'full packs'}), best of {repeat} (CPU)")
    print(f"{'pack':>5} {'encoding':>9} {'B/reading':>10} {'x plain':>8} {'records':>8} "
          f"{'PUT units/M':>12} {'readings/6MB':>13} {'gzip us/r':>10} {'inflate us/r':>13}")
    for r in rows:
        enc = "json" if r["encoding"] == "json" else f"gzip-{r['level']}"
        print(f"{r['pack']:>5} {enc:>9} {r['bytes_per_reading']:>10.1f} {r['ratio_to_plain']:>8.2f} "
              f"{r['records']:>8,} {r['put_units_per_million']:>12,} {r['readings_per_invoke']:>13,} "
              f"{r['compress_us_per_reading']:>10.2f} {r['inflate_us_per_reading']:>13.2f}")
    line = orjson.dumps({
        "benchmark": "record_encoding",
        "readings": n,
        "devices": devices,
        "seconds": seconds,
        "flush_s": flush_s,
        "ground_truth": ground_truth,
        "mean_reading_bytes": round(sum(len(p.payload) for p in produced) / n, 1),
        "event_envelope_bytes": EVENT_ENVELOPE_BYTES,
        "lambda_payload_bytes": LAMBDA_PAYLOAD_BYTES,
        "rows": rows,
        "python": platform.python_version(),
    }).decode()
    print(line)
    if save is not None:
        save.parent.mkdir(parents=True, exist_ok=True)
        save.write_text(line + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_app(app, argv, prog_name="bench/record_encoding.py")


if __name__ == "__main__":
    sys.exit(main())
