"""Benchmark: ``seen_offsets_ms`` as a number set (before) and as packed varints (now), side by side.

    .venv/bin/python bench/offset_encoding.py [--devices 200] [--rate 1] [--rounds 4] [--threads 16]

Builds whole-window aggregate items the real way (the processor's pure logic over a minute of a simulated
fleet, on the in-memory fakes), then writes them to one fresh ministack table as the processor does (a
conditional PutItem each, on ``--threads`` threads), alternating rounds of the two encodings of the same
items, so both see the same emulator and the same machine load. Prints, per encoding, the item's billed
bytes (DynamoDB's size rules), the PutItem rate per round and the ratio; the last line is JSON.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any

import typer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.e2e.measure import ddb_size  # noqa: E402
from iotpipe.console import run_app  # noqa: E402

app = typer.Typer(add_completion=False, help=__doc__.splitlines()[0])
WINDOW_START_S = 1_795_000_020  # a minute boundary
NOW_S = WINDOW_START_S + 90


def window_items(devices: int, rate_hz: float, seed: int) -> list[dict[str, Any]]:
    """Aggregate items (plain values) of one whole minute of ``devices`` devices at ``rate_hz``."""
    from functions.processor.ingestion_processor import ProcessorConfig, process_batch
    from testkit.events import SEQ_BASE, make_records, reading_doc
    from testkit.processor import fake_ports

    rng = random.Random(seed)
    ids = [f"dev-{i:05d}" for i in range(devices)]
    ports = fake_ports(ids)
    step_ms = int(1000 / rate_hz)
    docs = [reading_doc(d, WINDOW_START_S * 1000 + t + rng.randint(0, step_ms // 4),
                        temperature=round(rng.gauss(21, 2), 3), humidity=round(rng.uniform(30, 60), 3),
                        pressure=round(rng.gauss(1013, 3), 3))
            for t in range(0, 60_000 - step_ms // 4, step_ms) for d in ids]
    # Four batches of 15 s of stream, as the mapping hands them over: each window written four times.
    quarter = len(docs) // 4
    for i in range(4):
        process_batch(make_records(docs[i * quarter:(i + 1) * quarter], arrival_s=NOW_S,
                                   first_seq=SEQ_BASE + i * quarter), ports, ProcessorConfig(), now_s=NOW_S)
    return list(ports.aggregates.items.values())


def number_set_attrs(item: dict[str, Any]) -> dict[str, Any]:
    """The item as the adapter wrote it before: ``seen_offsets_ms`` a number set."""
    from functions.adapters import codec

    return {name: codec.to_attribute(set(value) if name == "seen_offsets_ms" else value)
            for name, value in item.items()}


@app.command()
def offset_encoding(
    devices: int = 200,
    rate: Annotated[float, typer.Option(help="Hz per device")] = 1.0,
    rounds: Annotated[int, typer.Option(help="rounds per encoding, alternating")] = 4,
    threads: Annotated[int, typer.Option(help="writer threads (the processor's WRITE_CONCURRENCY)")] = 16,
    seed: int = 5,
) -> int:
    import boto3

    from functions.adapters.aggregates import item_to_dynamo
    from iotpipe.local.emulator import Emulator, free_port

    items = window_items(devices, rate, seed)
    encodings = {"number set (before)": [number_set_attrs(i) for i in items],
                 "packed varints (now)": [item_to_dynamo(i) for i in items]}
    sizes = {name: statistics.mean(sum(len(k) + ddb_size(v) for k, v in a.items()) for a in attrs)
             for name, attrs in encodings.items()}
    emulator = Emulator(port=free_port(), state_dir=Path(tempfile.mkdtemp(prefix="iotpipe-offsets-"))).start()
    rates: dict[str, list[float]] = {name: [] for name in encodings}
    try:
        env = emulator.client_env()
        ddb = boto3.client("dynamodb", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_REGION"],
                           aws_access_key_id="test", aws_secret_access_key="test")
        for n in range(len(encodings)):
            ddb.create_table(TableName=f"agg-{n}", BillingMode="PAY_PER_REQUEST",
                             KeySchema=[{"AttributeName": "device_id", "KeyType": "HASH"},
                                        {"AttributeName": "window_start", "KeyType": "RANGE"}],
                             AttributeDefinitions=[{"AttributeName": "device_id", "AttributeType": "S"},
                                                   {"AttributeName": "window_start", "AttributeType": "N"}])
        for r in range(rounds):
            for n, (name, attrs) in enumerate(encodings.items()):
                def put(a: dict[str, Any], table: str = f"agg-{n}", shift: int = r) -> None:
                    # each round writes new keys (window_start shifted), conditionally, as a first write
                    key = {"window_start": {"N": str(WINDOW_START_S + 60 * shift)}}
                    ddb.put_item(TableName=table, Item={**a, **key},
                                 ConditionExpression="attribute_not_exists(device_id)")
                t0 = time.perf_counter()
                with ThreadPoolExecutor(threads) as pool:
                    list(pool.map(put, attrs))
                rates[name].append(len(attrs) / (time.perf_counter() - t0))
                print(f"round {r + 1}/{rounds} {name:22s} {rates[name][-1]:7.0f} PutItem/s", file=sys.stderr)
    finally:
        emulator.stop()
    before, now = (statistics.median(v) for v in rates.values())
    (b_size, n_size) = sizes.values()
    print(f"whole-window item ({devices} devices x {rate:g} Hz): {b_size:.0f} B -> {n_size:.0f} B "
          f"({n_size / b_size:.2f}); conditional PutItem on ministack, median of {rounds} rounds on "
          f"{threads} threads: {before:.0f}/s -> {now:.0f}/s (ratio {now / before:.2f})")
    print(json.dumps({"devices": devices, "rate_hz": rate, "threads": threads, "rounds": rounds,
                      "item_bytes": {k: round(v, 1) for k, v in sizes.items()},
                      "putitem_per_s": {k: [round(x) for x in v] for k, v in rates.items()},
                      "putitem_rate_ratio_now_to_before": round(now / before, 3),
                      "item_bytes_ratio_now_to_before": round(n_size / b_size, 3)}))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_app(app, argv, prog_name="bench/offset_encoding.py")


if __name__ == "__main__":
    raise SystemExit(main())
