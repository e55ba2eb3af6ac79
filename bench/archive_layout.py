"""Benchmark: what a query over an hour of the archive reads, as JSON-lines objects and as compacted Parquet.

Generates an hour of simulator readings (``--devices`` × 1 Hz × ``--seconds``), archives them exactly as
the processor does (``processed_line`` + deterministic gzip, one object per batch) in two batch sizes side
by side: the cost model's AWS batches (``--aws-batch`` readings, ~21.6 s of a 1,000-device stream) and
the embedded emulator's (``--emulator-batch``, one PutRecords call per invocation, as measured), then
compacts the hour with the compactor's own code (``functions.compactor.parquet.compact_files``).

For each named query of the template (its SQL as deployed, over the generated hour) it prints:
- **JSON**: the bytes Athena scans = every byte of the partition's objects (gzip is not splittable and
  JSON not columnar, so a query reads whole objects whatever columns it names);
- **Parquet**: the bytes of the column chunks of the columns the query names (Athena reads those and the
  footer), and for queries filtering one device, only the row groups whose device_id statistics can
  hold it (Athena's Parquet predicate pushdown);
- the engine time of the query over each layout on DuckDB, best of ``--repeat`` (the engine ministack
  runs Athena queries on), and that both answered the same rows.

    .venv/bin/python bench/archive_layout.py [--devices 1000] [--seconds 3600] [--plot out/archive_layout.png]

Readable lines first; the last line is one JSON object.
"""

from __future__ import annotations

import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from functions.compactor.columns import PROCESSED_COLUMNS, duckdb_columns  # noqa: E402
from functions.compactor.parquet import compact_files  # noqa: E402
from functions.core.jsonl_gzip import gzip_lines  # noqa: E402
from functions.core.readings import DeviceInfo, Reading  # noqa: E402
from functions.core.timestamps import parse_ms  # noqa: E402
from functions.detector.interface import Verdict  # noqa: E402
from functions.processor.archive_keys import processed_line  # noqa: E402
from iotpipe.console import STDERR, run_app  # noqa: E402
from iotpipe.ops import athena_query as aq  # noqa: E402

START_S = 1_795_000_000  # an hour boundary is not needed: one partition holds whatever we generate
DAY = "2026-11-18"
COLUMN_NAMES = [name for name, _, _ in PROCESSED_COLUMNS]


def _readings(devices: int, seconds: int, seed: int) -> list[bytes]:
    """The processed lines of ``devices`` simulator devices over ``seconds`` (anomalies as injected)."""
    from simulator.config import SimulatorConfig
    from simulator.fleet import generate_fleet
    from simulator.stream import generate_readings

    config = SimulatorConfig(devices=devices, rate_hz=1.0, seed=seed, anomaly_rate=0.01, malformed_rate=0.0,
                             count=devices * seconds)
    fleet = generate_fleet(devices, seed)
    info = {d.device_id: DeviceInfo(d.device_id, site=d.site, location=d.location) for d in fleet}
    lines: list[bytes] = []
    for seq, produced in enumerate(generate_readings(config, fleet, START_S * 1000)):
        doc = orjson.loads(produced.payload)
        channels = {k: float(doc[k]) for k in ("temperature", "humidity", "pressure") if k in doc}
        epoch_ms = parse_ms(doc["timestamp"])
        reading = Reading(doc["device_id"], epoch_ms, channels, "shardId-000000000000",
                          f"{49650000000000000000000000000000000000000000000000 + seq}",
                          info.get(doc["device_id"]), ground_truth=doc.get("ground_truth"))
        label = doc.get("ground_truth") or "normal"
        anomalous = label != "normal"
        verdict = Verdict(score=0.9 if anomalous else 0.3, is_anomaly=anomalous,
                          severity="high" if anomalous else "none", severity_rank=3 if anomalous else 0,
                          top_feature="temperature", reason="", threshold=0.6, model_version="bench")
        lines.append(processed_line(reading, "aggregated", verdict))
    return lines


def _write_objects(lines: list[bytes], per_object: int, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(0, len(lines), per_object):
        path = folder / f"shardId-000000000000-{i:012d}-{min(i + per_object, len(lines)) - 1:012d}.jsonl.gz"
        path.write_bytes(gzip_lines(lines[i:i + per_object]))
        paths.append(path)
    return paths


def _columns_named(sql: str) -> list[str]:
    """Columns of the processed table a query names (outside string literals), as Athena would read them."""
    code = re.sub(r"'[^']*'", "''", sql)
    return [c for c in COLUMN_NAMES if re.search(rf"(?<![\w.]){re.escape(c)}(?!\w)", code)]


def _parquet_bytes(con: Any, path: Path, columns: list[str], device: str | None) -> int:
    """Compressed bytes of the named columns' chunks (+ footer), in row groups that can hold ``device``."""
    meta = con.execute(
        "SELECT row_group_id, path_in_schema, total_compressed_size, stats_min_value, stats_max_value "
        f"FROM parquet_metadata('{path}')").fetchall()
    keep = set()
    for rg, col, _size, lo, hi in meta:
        if col == "device_id" and (device is None or (lo is not None and lo <= device <= hi)):
            keep.add(rg)
    footer = int.from_bytes(path.read_bytes()[-8:-4], "little")
    return footer + sum(size for rg, col, size, _, _ in meta
                        if rg in keep and col.split(",")[0].strip() in columns)


def _relation(layout: str, files: list[Path]) -> str:
    listed = "[" + ", ".join(f"'{p}'" for p in files) + "]"
    if layout == "parquet":
        source = f"read_parquet({listed})"
    else:
        source = (f"read_json({listed}, format = 'newline_delimited', compression = 'gzip', "
                  f"columns = {duckdb_columns()})")
    return f"SELECT *, '{DAY}' AS dt, '00' AS hour FROM {source}"


def _best(con: Any, sql: str, repeat: int) -> tuple[float, list[Any]]:
    best, rows = float("inf"), []
    for _ in range(repeat):
        t0 = time.perf_counter()
        rows = con.execute(sql).fetchall()
        best = min(best, time.perf_counter() - t0)
    return best * 1000, rows


app = typer.Typer(add_completion=False, help=__doc__.splitlines()[0])


@app.command()
def layout(
    devices: Annotated[int, typer.Option(help="simulated devices at 1 Hz")] = 1000,
    seconds: Annotated[int, typer.Option(help="seconds of stream (3600 = one partition's hour)")] = 3600,
    aws_batch: Annotated[int, typer.Option(help="readings per object on AWS (cost model: ~21,600)")] = 21_600,
    emulator_batch: Annotated[int, typer.Option(help="readings per object on the embedded emulator")] = 26,
    repeat: Annotated[int, typer.Option(help="query timings: best of this many")] = 3,
    seed: Annotated[int, typer.Option()] = 7,
    plot: Annotated[Path | None, typer.Option(help="bar chart of the bytes each query reads")] = Path(
        "out/archive_layout.png"),
) -> int:
    import duckdb

    with tempfile.TemporaryDirectory(prefix="archive-layout-") as tmp:
        work = Path(tmp)
        with STDERR.status(f"simulating {devices} devices x {seconds} s ...", spinner="dots"):
            t0 = time.perf_counter()
            lines = _readings(devices, seconds, seed)
            gen_s = time.perf_counter() - t0
        n = len(lines)
        print(f"{n:,} processed lines from {devices} devices x {seconds} s (generated in {gen_s:.1f} s)")
        layouts: dict[str, list[Path]] = {}
        with STDERR.status("archiving as the processor does ...", spinner="dots"):
            layouts["json_aws"] = _write_objects(lines, aws_batch, work / "aws")
            layouts["json_emulator"] = _write_objects(lines, emulator_batch, work / "emu")
        del lines
        with STDERR.status("compacting with functions.compactor ...", spinner="dots"):
            t0 = time.perf_counter()
            target = work / "part-00000.parquet"
            stats = compact_files(layouts["json_aws"], target, memory_limit_mb=2048, temp_dir=work)
            compact_s = time.perf_counter() - t0
        layouts["parquet"] = [target]
        sizes = {k: sum(p.stat().st_size for p in v) for k, v in layouts.items()}
        print(f"{'layout':<16}{'objects':>9}{'bytes':>16}{'B/reading':>11}")
        for name, files in layouts.items():
            print(f"{name:<16}{len(files):>9,}{sizes[name]:>16,}{sizes[name] / n:>11.1f}")
        print(f"compaction: {stats.rows_in:,} lines -> {stats.rows_out:,} rows in {compact_s:.1f} s, "
              f"{sizes['json_aws'] / sizes['parquet']:.1f}x smaller than the AWS-batch JSON")

        con = duckdb.connect()
        some_device = "dev-000001" if devices > 1 else "dev-000000"
        first = con.execute(f"SELECT min(device_id) FROM read_parquet('{target}')").fetchone()
        some_device = first[0] if first else some_device
        params = {"from_day": DAY, "to_day": DAY, "device_id": some_device, "min_gap_s": "5"}
        queries: list[dict[str, Any]] = []
        print(f"\n{'named query':<30}{'JSON scanned':>14}{'Parquet':>12}{'ratio':>8}"
              f"{'JSON ms':>9}{'Parquet ms':>11}  same rows")
        for named in sorted(aq.template_named_queries().values(), key=lambda q: q.name):
            if "FROM processed" not in named.sql:
                continue  # quarantine-reasons-over-time reads the quarantine, which is not compacted
            sql = aq.render(named.sql, {k: v for k, v in params.items() if k in named.parameters})
            columns = _columns_named(sql)
            device = some_device if "device_id" in named.parameters else None
            parquet_bytes = _parquet_bytes(con, target, columns, device)
            timings, answers = {}, {}
            for name in ("json_aws", "parquet"):
                relation = _relation(name.split("_")[0], layouts[name])
                con.execute(f"CREATE OR REPLACE TEMP VIEW processed AS {relation}")
                timings[name], answers[name] = _best(con, sql, repeat)
            same = sorted(map(repr, answers["json_aws"])) == sorted(map(repr, answers["parquet"]))
            row = {"name": named.name, "columns": columns, "json_bytes": sizes["json_aws"],
                   "parquet_bytes": parquet_bytes, "ratio": round(sizes["json_aws"] / parquet_bytes, 1),
                   "json_ms": round(timings["json_aws"], 1), "parquet_ms": round(timings["parquet"], 1),
                   "same_rows": same, "rows": len(answers["parquet"])}
            queries.append(row)
            print(f"{named.name:<30}{sizes['json_aws']:>14,}{parquet_bytes:>12,}{row['ratio']:>7.1f}x"
                  f"{row['json_ms']:>9.0f}{row['parquet_ms']:>11.0f}  {same}")
        if plot:
            _plot(plot, queries, f"{devices} devices x {seconds} s")
            print(f"\nplot: {plot}")
    result = {"readings": n, "devices": devices, "seconds": seconds,
              "objects": {k: len(v) for k, v in layouts.items()}, "bytes": sizes,
              "bytes_per_reading": {k: round(v / n, 2) for k, v in sizes.items()},
              "compaction_s": round(compact_s, 1), "rows_out": stats.rows_out, "queries": queries}
    print(orjson.dumps(result).decode())
    return 0 if all(q["same_rows"] for q in queries) else 1


def _plot(path: Path, queries: list[dict[str, Any]], what: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    names = [q["name"] for q in queries]
    x = range(len(names))
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar([i - 0.2 for i in x], [q["json_bytes"] / 2**20 for q in queries], 0.4, label="gzip JSON lines")
    ax.bar([i + 0.2 for i in x], [q["parquet_bytes"] / 2**20 for q in queries], 0.4,
           label="compacted Parquet")
    ax.set_xticks(list(x), names, rotation=10)
    ax.set_ylabel("MiB Athena scans (log)")
    ax.set_yscale("log")
    ax.set_title(f"Bytes scanned per named query, one partition ({what})")
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    return run_app(app, argv, prog_name="bench/archive_layout.py")


if __name__ == "__main__":
    raise SystemExit(main())
