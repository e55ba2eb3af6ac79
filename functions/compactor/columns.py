"""The processed archive line's columns, once: the Glue tables' schema and the compactor's read schema.

A processed line (``functions.core.archive_lines.ProcessedLine``) leaves a field out when it has no
value (``anomaly`` where detection did not run, ``index`` outside packed records), so the compactor reads
the JSON with this explicit schema instead of inferring one: an hour in which no line has ``index``
still yields the column (null), and every Parquet file of the table has the same columns in the same
order. ``tests/unit/test_archive_sql_template.py`` checks both Glue tables of the template list exactly
these columns and types.
"""

from __future__ import annotations

# (name, Glue/Hive type, DuckDB type)
PROCESSED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("device_id", "string", "VARCHAR"),
    ("timestamp", "string", "VARCHAR"),
    ("epoch_ms", "bigint", "BIGINT"),
    ("channels", "map<string,double>", "MAP(VARCHAR, DOUBLE)"),
    ("site", "string", "VARCHAR"),
    ("location", "string", "VARCHAR"),
    ("shard_id", "string", "VARCHAR"),
    ("sequence_number", "string", "VARCHAR"),
    ("status", "string", "VARCHAR"),
    ("anomaly", "boolean", "BOOLEAN"),
    ("anomaly_score", "double", "DOUBLE"),
    ("severity", "string", "VARCHAR"),
    ("ground_truth", "string", "VARCHAR"),
    ("index", "int", "INTEGER"),
)


def duckdb_columns() -> str:
    """The ``columns={...}`` struct literal of DuckDB's ``read_json``."""
    return "{" + ", ".join(f"'{name}': '{kind}'" for name, _, kind in PROCESSED_COLUMNS) + "}"
