"""Only one read-only query over the stack's tables reaches Athena from ``iotpipe query``.

On the embedded emulator, Athena runs on DuckDB inside the emulator's process, with that process's
rights: ``SELECT content FROM read_text('/etc/hostname')`` read a host file and ``COPY (SELECT 1) TO
'out.csv'`` wrote one. AWS Athena has no such functions, but its workgroup and the caller's IAM rights
are what limit it there (docs/querying.md); this guard is the same on every target.

The query is parsed with sqlglot (a real SQL parser: comments, quoting and nesting are understood, not
pattern-matched) in Athena's dialect, and again in DuckDB's (what the emulator executes: a text both
parse differently must be safe both ways). Accepted: exactly one statement, a SELECT (``WITH``, set
operations, subqueries, ``VALUES``, ``UNNEST`` included) whose every table is one of the stack's Glue
tables (optionally qualified by its database and the ``awsdatacatalog`` catalog) or a name the query
itself defines (``WITH``). Refused, with the reason: anything else at the top (COPY, ATTACH, INSTALL,
LOAD, PRAGMA, SET, CREATE, INSERT, DESCRIBE, ...), ``SELECT ... INTO``, a function or a quoted string in
place of a table (``read_csv(...)``, ``'file.csv'``, ``'https://...'``), and the file, network, catalog
and environment functions of DuckDB anywhere in the query (``FILE_FUNCTIONS``).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

DIALECTS = ("athena", "duckdb")  # what Athena speaks; what the emulator's Athena executes
CATALOG = "awsdatacatalog"
# DuckDB functions that read or list files, reach the network, read the catalog, settings or the
# environment. Tables are an allow-list already; this catches them anywhere else (a scalar subquery, a
# LATERAL, an argument).
FILE_FUNCTIONS = frozenset({
    "glob", "sniff_csv", "getenv", "current_setting", "query", "query_table", "which_secret",
    "load_aws_credentials", "json_execute_serialized_sql", "checkpoint", "force_checkpoint",
    "parquet_metadata", "parquet_schema", "parquet_file_metadata", "parquet_kv_metadata",
})
FILE_FUNCTION_PREFIXES = ("read_", "duckdb_", "pragma_", "iceberg_", "delta_", "sqlite_", "postgres_",
                          "mysql_", "http_", "excel_")
FILE_FUNCTION_SUFFIXES = ("_scan",)
RELATION_FUNCTIONS = (exp.Unnest,)  # the one function Athena reads rows from (CROSS JOIN UNNEST)


class UnsafeQuery(ValueError):
    """The text is not one read-only query over the stack's tables; the message says what is wrong."""


@dataclass(frozen=True)
class Allowed:
    tables: frozenset[str]  # the stack's Glue tables
    database: str  # the Glue database that holds them (an optional qualifier)


def check(sql: str, tables: Collection[str], database: str) -> None:
    """Raise ``UnsafeQuery`` unless ``sql`` is one read-only query over ``tables`` in both dialects."""
    allowed = Allowed(frozenset(t.lower() for t in tables), database.lower())
    parsed_any = False
    for dialect in DIALECTS:
        try:
            statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
        except SqlglotError as exc:
            if dialect == DIALECTS[0]:  # Athena's own dialect must understand it
                raise UnsafeQuery(f"not a query the Athena SQL parser understands: {_first_line(exc)}") \
                    from exc
            continue  # the emulator's engine would not parse it either: it cannot run there
        parsed_any = True
        _check_tree(sql, statements, allowed)
    if not parsed_any:  # pragma: no cover - the first dialect either parsed or raised
        raise UnsafeQuery("not a query")


def _check_tree(sql: str, statements: list[exp.Expr], allowed: Allowed) -> None:
    if len(statements) != 1:
        raise UnsafeQuery(f"exactly one statement, please: this text holds {len(statements)}")
    root = statements[0]
    if not isinstance(root, exp.Query):
        raise UnsafeQuery(f"only a read-only query (SELECT or WITH ... SELECT) runs here, not "
                          f"{_statement_name(root, sql)}")
    if root.find(exp.Into) is not None:
        raise UnsafeQuery("SELECT ... INTO writes a table: not allowed")
    defined = {cte.alias_or_name.lower() for cte in root.find_all(exp.CTE)}
    for table in root.find_all(exp.Table):
        _check_table(sql, table, allowed, defined)
    for lateral in root.find_all(exp.Lateral):
        if not isinstance(lateral.this, (exp.Subquery, *RELATION_FUNCTIONS)):
            raise UnsafeQuery(f"a function as a table is not allowed: {lateral.this.sql()}")
    for func in root.find_all(exp.Func):
        name = (func.name if isinstance(func, exp.Anonymous) else func.sql_name()).lower()
        if (name in FILE_FUNCTIONS or name.startswith(FILE_FUNCTION_PREFIXES)
                or name.endswith(FILE_FUNCTION_SUFFIXES)):
            raise UnsafeQuery(f"{name}() reads files, the network or the catalog: not allowed")


def _check_table(sql: str, table: exp.Table, allowed: Allowed, defined: set[str]) -> None:
    source = table.this
    if not isinstance(source, exp.Identifier):
        raise UnsafeQuery(f"a function as a table is not allowed: {source.sql()} "
                          f"(query the tables {', '.join(sorted(allowed.tables))})")
    start = source.meta.get("start")
    if isinstance(start, int) and sql[start:start + 1] == "'":  # DuckDB reads FROM 'path' as a file
        raise UnsafeQuery(f"a quoted string is not a table: '{source.name}'")
    name, db, catalog = source.name.lower(), table.db.lower(), table.catalog.lower()
    if catalog and catalog != CATALOG:
        raise UnsafeQuery(f"catalog {table.catalog!r} is not allowed (only {CATALOG})")
    if db and db != allowed.database:
        raise UnsafeQuery(f"database {table.db!r} is not the stack's ({allowed.database})")
    if name in defined and not db:
        return
    if name not in allowed.tables:
        raise UnsafeQuery(f"table {source.name!r} is not one of the stack's tables "
                          f"({', '.join(sorted(allowed.tables))})")


def _statement_name(root: exp.Expr, sql: str) -> str:
    """The statement's first keyword as written (comments skipped), e.g. ``COPY ...``."""
    try:
        tokens = sqlglot.tokenize(sql)
    except SqlglotError:
        tokens = []
    return f"{tokens[0].text.upper()} ..." if tokens else type(root).__name__


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
