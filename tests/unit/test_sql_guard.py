"""iotpipe query's guard (iotpipe/ops/sql_guard.py): one read-only query over the stack's tables, no file,
network or catalog access, whatever the spelling. The emulator runs Athena on DuckDB with the
emulator's own rights, so each of these once read or wrote host files or reached the network there."""

from __future__ import annotations

import pytest

from iotpipe.ops import athena_query as aq
from iotpipe.ops.sql_guard import UnsafeQuery, check

TABLES = ["processed", "processed_compacted", "quarantine"]
DB = "iotpipe_archive"

HOSTILE = [
    # file and network functions, as tables and anywhere else
    "SELECT content FROM read_text('/etc/hostname')",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_csv_auto('https://example.com/x.csv')",
    "SELECT * FROM read_parquet('s3://other-bucket/*.parquet')",
    "SELECT * FROM read_json_auto('/root/.aws/credentials')",
    "SELECT * FROM read_blob('/etc/shadow')",
    "SELECT * FROM parquet_scan('/tmp/x.parquet')",
    "SELECT * FROM glob('/*')",
    "SELECT * FROM sniff_csv('/etc/passwd')",
    "SELECT * FROM parquet_metadata('/tmp/x.parquet')",
    "SELECT * FROM '/etc/passwd'",
    "SELECT * FROM 'processed'",  # DuckDB reads a file of that name, not the table
    "SELECT * FROM 'https://example.com/x.csv'",
    "FROM '/etc/hosts'",
    "SELECT * FROM processed, LATERAL read_text('/etc/hostname')",
    "SELECT (SELECT content FROM read_text('/etc/hostname')) AS h FROM processed",
    "SELECT device_id FROM processed WHERE device_id IN (SELECT content FROM read_text('/etc/hostname'))",
    "WITH h AS (SELECT * FROM read_text('/etc/hostname')) SELECT * FROM h",
    "SELECT getenv('AWS_SECRET_ACCESS_KEY')",
    "SELECT current_setting('home_directory')",
    "SELECT * FROM query('SELECT 1')",
    # catalog functions and tables
    "SELECT * FROM duckdb_settings()",
    "SELECT * FROM duckdb_secrets()",
    "SELECT * FROM pragma_table_info('processed')",
    "SELECT * FROM information_schema.tables",
    "SELECT * FROM sqlite_master",
    "SELECT * FROM other_db.processed",
    "SELECT * FROM hive.iotpipe_archive.processed",
    # statements that are not a query
    "COPY (SELECT 1 AS x) TO 'out.csv'",
    "COPY processed TO '/tmp/out.parquet' (FORMAT parquet)",
    "ATTACH 'x.db' AS x",
    "INSTALL httpfs",
    "LOAD httpfs",
    "PRAGMA version",
    "SET home_directory = '/'",
    "CREATE TABLE t AS SELECT 1",
    "CREATE SECRET s (TYPE s3, KEY_ID 'a', SECRET 'b')",
    "INSERT INTO processed SELECT * FROM processed",
    "DROP TABLE processed",
    "DESCRIBE processed",
    "SUMMARIZE processed",
    "EXPORT DATABASE '/tmp/x'",
    "SELECT 1 INTO t",
    "SELECT * INTO processed FROM processed",
    # more than one statement, however it is hidden
    "SELECT 1; SELECT 2",
    "SELECT * FROM processed; COPY (SELECT 1) TO 'out.csv'",
    "SELECT 1 /* ; */; COPY (SELECT 1) TO 'x.csv'",
    "-- a comment\nCOPY (SELECT 1 AS x) TO 'out.csv'",
    # not a table of the stack
    "SELECT * FROM devices",
    "",
    "SELEC 1",
]


@pytest.mark.parametrize("sql", HOSTILE)
def test_hostile_sql_is_refused_with_a_reason(sql: str) -> None:
    with pytest.raises(UnsafeQuery) as refused:
        check(sql, TABLES, DB)
    assert str(refused.value)  # says why


SAFE = [
    "SELECT 1",
    "SELECT device_id, count(*) AS n FROM processed GROUP BY device_id",
    "SELECT * FROM iotpipe_archive.processed LIMIT 5",
    "SELECT * FROM awsdatacatalog.iotpipe_archive.quarantine LIMIT 5",
    'SELECT "timestamp", channels[\'temperature\'] AS t FROM "processed" WHERE dt = \'2026-12-01\'',
    "WITH d AS (SELECT device_id FROM processed) SELECT count(*) FROM d",
    "SELECT reason FROM quarantine UNION ALL SELECT status FROM processed_compacted",
    "SELECT x FROM processed CROSS JOIN UNNEST(ARRAY[1, 2]) AS t(x)",
    "SELECT read_only FROM processed",  # a column named like a function is a column
    "SELECT 'read_text(/etc/hostname)' AS s",  # a string is data
    "SELECT 1;",
]


@pytest.mark.parametrize("sql", SAFE)
def test_read_only_queries_over_the_stack_s_tables_pass(sql: str) -> None:
    check(sql, TABLES, DB)


def test_every_named_query_of_the_template_passes_the_guard() -> None:
    target = aq.QueryTarget("s", "w", DB)
    tables = aq.template_tables()
    assert tables == TABLES
    queries = aq.template_named_queries().values()
    assert queries
    for query in queries:
        params = {p: "2026-12-01" if p.endswith("day") else "60" for p in query.parameters}
        text = aq.render(query.sql, params)
        assert aq.guard(text, target) == text


def test_the_cli_error_says_refused_and_why() -> None:
    with pytest.raises(aq.QueryError, match=r"refused: .*COPY"):
        aq.guard("COPY (SELECT 1 AS x) TO 'out.csv'", aq.QueryTarget("s", "w", DB))
