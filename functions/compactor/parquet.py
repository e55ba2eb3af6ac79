"""Gzip JSON-lines archive objects -> one sorted, de-duplicated, ZSTD-compressed Parquet file (DuckDB).

Why DuckDB: the Python wheel links its JSON and Parquet readers and writers statically (nothing to
download at run time), it reads gzip JSON lines against an explicit schema, de-duplicates and sorts in
SQL with spilling to disk, and fits a Lambda (21 MB zipped, 61 MB unzipped; pyarrow is 55 MB zipped).

What the file holds, row for row: each archived reading once. A reading is named by
``(shard_id, sequence_number, index)`` (``index`` only inside packed records). It appears in more than
one object when a batch was redelivered with different boundaries (another first/last sequence number,
hence another key); then the copy that carries the detector's verdict wins, then status ``aggregated``,
then the first object by key, so the choice does not depend on listing order. Rows are sorted by
``site, device_id, epoch_ms`` (then the reading's name): Parquet's row-group statistics then let a query
on one device or site skip most of the file, and the same inputs always give the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from functions.compactor.columns import duckdb_columns

ROW_GROUP_ROWS = 122_880  # DuckDB's default; ~2-3 MB of this data per row group


@dataclass(frozen=True)
class ParquetStats:
    rows_in: int  # lines read from the sources
    rows_out: int  # rows written (rows_in minus the redelivered copies dropped)


def _sql_list(paths: Sequence[Path]) -> str:
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"


def compact_files(sources: Sequence[Path], target: Path, *, memory_limit_mb: int,
                  temp_dir: Path) -> ParquetStats:
    """Write ``sources`` (local .jsonl.gz files) as one Parquet file at ``target``."""
    import duckdb  # deferred: only the compactor's bundle carries it

    con = duckdb.connect(config={
        "threads": 2,
        "memory_limit": f"{memory_limit_mb}MB",
        "temp_directory": str(temp_dir),
        # Nothing may be fetched at run time; JSON and Parquet are built in.
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
    })
    try:
        # The SQL is built from local temporary paths this function chose (quoted), never from input.
        view = ("CREATE TEMP VIEW src AS SELECT * FROM read_json("  # noqa: S608
                f"{_sql_list(sources)}, format = 'newline_delimited', compression = 'gzip', "
                f"columns = {duckdb_columns()}, filename = 'source_file')")
        con.execute(view)
        row = con.execute("SELECT count(*) FROM src").fetchone()
        rows_in = int(row[0]) if row else 0
        # source_file sorts like the S3 keys: the files are named by their keys' last component, unique
        # within one hour's prefix.
        copy = ("COPY (SELECT * EXCLUDE (source_file) FROM src "  # noqa: S608
                "QUALIFY row_number() OVER (PARTITION BY shard_id, sequence_number, coalesce(\"index\", -1) "
                "ORDER BY anomaly IS NULL, status <> 'aggregated', source_file) = 1 "
                "ORDER BY site, device_id, epoch_ms, shard_id, sequence_number, \"index\" NULLS FIRST"
                f") TO {_sql_list([target])[1:-1]} "
                f"(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {ROW_GROUP_ROWS})")
        con.execute(copy)
        row = con.execute(f"SELECT count(*) FROM read_parquet({_sql_list([target])[1:-1]})").fetchone()  # noqa: S608
        rows_out = int(row[0]) if row else 0
    finally:
        con.close()
    return ParquetStats(rows_in=rows_in, rows_out=rows_out)
