"""SQL over the S3 archive: run a query (or a named one) in the stack's Athena workgroup.

The stack's outputs name the workgroup and the Glue database (``QueryWorkGroupName``,
``ArchiveDatabaseName``); a stack deployed without them (``ArchiveSql=disabled``, LocalStack community)
has no Athena, and says so. Named queries are the template's ``AWS::Athena::NamedQuery`` resources: read
from the workgroup where they were deployed (AWS), else from the template (ministack's CloudFormation has
no provider for that type, ``ArchiveSql=catalog``). A parameter is written ``{{name}}`` in the query text
and substituted as a quoted SQL string literal (the query casts it where it needs a number).

On ministack, Athena runs on DuckDB, and its ``DataScannedInBytes`` is the size of the result rows, not
the bytes read; ``archive_footprint`` gives the files and bytes under a table's partitions, which is what
Athena reads of gzip JSON lines (a gzip object is not splittable: every byte of every object in the
partitions a query touches is scanned). docs/querying.md has the details.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from iotpipe.ops import sql_guard
from iotpipe.ops.template import TEMPLATE, load_template

PLACEHOLDER = re.compile(r"\{\{([a-z_][a-z0-9_]*)\}\}")
DAY_FORMAT = re.compile(r"\d{4}-\d{2}-\d{2}")
FINAL_STATES = ("SUCCEEDED", "FAILED", "CANCELLED")
# Athena answers a SELECT with its column names as the first row of the first page.
_INT_TYPES = {"tinyint", "smallint", "integer", "int", "bigint"}
_FLOAT_TYPES = {"double", "float", "real", "decimal"}


class QueryError(RuntimeError):
    """The query could not run or failed: the message is for the person who wrote it."""


class NoAthena(QueryError):
    """The current target has no SQL over the archive."""


@dataclass(frozen=True)
class QueryTarget:
    stack: str
    workgroup: str
    database: str


@dataclass(frozen=True)
class NamedQuery:
    name: str
    description: str
    sql: str
    source: str  # "workgroup" or "template"

    @property
    def parameters(self) -> list[str]:
        return placeholders(self.sql)


@dataclass
class QueryResult:
    execution_id: str
    columns: list[str]
    types: list[str]
    rows: list[list[Any]]
    bytes_scanned: int
    engine_ms: int
    output_location: str
    sql: str = ""
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "execution_id": self.execution_id, "columns": self.columns, "types": self.types,
            "rows": [dict(zip(self.columns, row, strict=True)) for row in self.rows],
            "bytes_scanned": self.bytes_scanned, "engine_ms": self.engine_ms,
            "output_location": self.output_location, "notes": self.notes,
        }


# ------------------------------------------------------------------------------ named queries
def placeholders(sql: str) -> list[str]:
    """The ``{{name}}`` parameters of a query text, in order of first appearance."""
    seen: list[str] = []
    for name in PLACEHOLDER.findall(sql):
        if name not in seen:
            seen.append(name)
    return seen


def sql_literal(value: str) -> str:
    """A SQL string literal (single quotes doubled): parameters are data, never SQL."""
    return "'" + value.replace("'", "''") + "'"


def render(sql: str, params: Mapping[str, str]) -> str:
    """``sql`` with every ``{{name}}`` replaced by ``params[name]`` as a string literal."""
    wanted = placeholders(sql)
    missing = [n for n in wanted if n not in params]
    unknown = sorted(set(params) - set(wanted))
    if missing or unknown:
        parts = []
        if missing:
            parts.append("missing " + ", ".join(f"--param {n}=..." for n in missing))
        if unknown:
            parts.append("unknown parameter(s) " + ", ".join(unknown))
        raise QueryError("; ".join(parts) + f" (this query takes: {', '.join(wanted) or 'no parameters'})")
    check_days(params)
    return PLACEHOLDER.sub(lambda m: sql_literal(params[m.group(1)]), sql)


def check_days(params: Mapping[str, str]) -> None:
    """Day parameters (``day``, ``*_day``) must be real calendar days, YYYY-MM-DD, ``from_day`` not after
    ``to_day``: an impossible day would otherwise match no partition and answer 0 rows without a word."""
    days: dict[str, dt.date] = {}
    for name, value in params.items():
        if name != "day" and not name.endswith("_day"):
            continue
        try:
            if not DAY_FORMAT.fullmatch(value):
                raise ValueError
            days[name] = dt.date.fromisoformat(value)
        except ValueError:
            raise QueryError(f"{name}={value!r} is not a day: give a calendar day as YYYY-MM-DD "
                             f"(UTC), e.g. {name}={dt.datetime.now(dt.UTC).date().isoformat()}") from None
    if "from_day" in days and "to_day" in days and days["from_day"] > days["to_day"]:
        raise QueryError(f"from_day {params['from_day']} is after to_day {params['to_day']}")


def parse_params(pairs: Sequence[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise QueryError(f"--param wants KEY=VALUE, got {pair!r}")
        params[key] = value
    return params


def with_day_defaults(wanted: Sequence[str], params: Mapping[str, str], today: str) -> dict[str, str]:
    """``params`` plus ``from_day`` / ``to_day`` = ``today`` (UTC, YYYY-MM-DD) where the query takes them
    and they were not given: ``iotpipe query --named anomalies-per-site-per-day`` asks about today."""
    filled = dict(params)
    for name in ("from_day", "to_day"):
        if name in wanted and name not in filled:
            filled[name] = today
    return filled


def template_named_queries(template: Mapping[str, Any] | None = None) -> dict[str, NamedQuery]:
    """The template's AWS::Athena::NamedQuery resources by name."""
    doc = template if template is not None else load_template(TEMPLATE)
    found: dict[str, NamedQuery] = {}
    for resource in (doc.get("Resources") or {}).values():
        if resource.get("Type") != "AWS::Athena::NamedQuery":
            continue
        props = resource["Properties"]
        found[props["Name"]] = NamedQuery(props["Name"], props.get("Description", ""), props["QueryString"],
                                          "template")
    return found


def template_tables(template: Mapping[str, Any] | None = None) -> list[str]:
    """The Glue tables the template declares (``AWS::Glue::Table``): all a query may read."""
    doc = template if template is not None else load_template(TEMPLATE)
    return sorted(r["Properties"]["TableInput"]["Name"] for r in (doc.get("Resources") or {}).values()
                  if r.get("Type") == "AWS::Glue::Table")


def guard(sql: str, target: QueryTarget, tables: Sequence[str] | None = None) -> str:
    """``sql`` if it is one read-only query over the stack's tables, else ``QueryError`` saying why."""
    try:
        sql_guard.check(sql, template_tables() if tables is None else tables, target.database)
    except sql_guard.UnsafeQuery as exc:
        raise QueryError(f"refused: {exc}") from exc
    return sql


def workgroup_named_queries(athena: Any, workgroup: str) -> dict[str, NamedQuery]:
    ids: list[str] = []
    token: dict[str, str] = {}
    while True:
        page = athena.list_named_queries(WorkGroup=workgroup, MaxResults=50, **token)
        ids.extend(page.get("NamedQueryIds", []))
        if not page.get("NextToken"):
            break
        token = {"NextToken": page["NextToken"]}
    found: dict[str, NamedQuery] = {}
    for start in range(0, len(ids), 50):
        batch = athena.batch_get_named_query(NamedQueryIds=ids[start:start + 50])
        for q in batch.get("NamedQueries", []):
            found[q["Name"]] = NamedQuery(q["Name"], q.get("Description", ""), q["QueryString"], "workgroup")
    return found


def named_query(athena: Any, workgroup: str, name: str) -> NamedQuery:
    """The named query ``name``: the workgroup's copy if it has one, else the template's."""
    deployed = workgroup_named_queries(athena, workgroup)
    known = {**template_named_queries(), **deployed}
    if name not in known:
        raise QueryError(f"no named query {name!r}; known: {', '.join(sorted(known)) or 'none'}")
    return known[name]


# ------------------------------------------------------------------------------ running
def resolve_target(stack: str, outputs: Mapping[str, str]) -> QueryTarget:
    workgroup, database = outputs.get("QueryWorkGroupName"), outputs.get("ArchiveDatabaseName")
    if not workgroup or not database:
        raise NoAthena(
            f"stack {stack!r} has no SQL over the archive (no QueryWorkGroupName / ArchiveDatabaseName "
            "output): it was deployed with ArchiveSql=disabled, as scripts/deploy.sh does for LocalStack "
            "4.14 community, which has neither Glue nor Athena. Query on the embedded emulator or on AWS.")
    return QueryTarget(stack, workgroup, database)


def _cell(datum: Mapping[str, Any], athena_type: str) -> Any:
    if "VarCharValue" not in datum:
        return None
    text = datum["VarCharValue"]
    base = athena_type.lower().split("(")[0]
    try:
        if base in _INT_TYPES:
            return int(text)
        if base in _FLOAT_TYPES:
            return float(text)
    except ValueError:
        return text
    if base == "boolean":
        return text.lower() == "true"
    return text


def run_query(athena: Any, sql: str, target: QueryTarget,
              on_state: Callable[[str, float], None] | None = None,
              poll_s: float = 0.5, timeout_s: float = 600.0) -> QueryResult:
    """Start ``sql`` in the target's workgroup, wait (``on_state(state, elapsed_s)``), fetch every row."""
    from botocore.exceptions import BotoCoreError, ClientError

    started = time.monotonic()
    try:
        execution_id = athena.start_query_execution(
            QueryString=sql, WorkGroup=target.workgroup,
            QueryExecutionContext={"Database": target.database})["QueryExecutionId"]
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") in ("UnknownOperationException", "InternalFailure", "NotImplemented"):
            raise NoAthena(f"this target does not run Athena ({error.get('Code')}: {error.get('Message')})") \
                from exc
        raise QueryError(f"Athena refused the query: {error.get('Code')}: {error.get('Message')}") from exc
    except BotoCoreError as exc:
        raise NoAthena(f"cannot reach Athena on this target: {exc}") from exc
    while True:
        execution = athena.get_query_execution(QueryExecutionId=execution_id)["QueryExecution"]
        state = execution["Status"]["State"]
        elapsed = time.monotonic() - started
        if on_state:
            on_state(state, elapsed)
        if state in FINAL_STATES:
            break
        if elapsed > timeout_s:
            athena.stop_query_execution(QueryExecutionId=execution_id)
            raise QueryError(f"query {execution_id} still {state} after {timeout_s:.0f} s: stopped")
        time.sleep(poll_s)
    stats = execution.get("Statistics", {})
    if state != "SUCCEEDED":
        reason = execution["Status"].get("StateChangeReason") or "no reason given"
        raise QueryError(f"query {state.lower()}: {reason} (execution {execution_id}, "
                         f"{stats.get('DataScannedInBytes', 0)} bytes scanned)")
    columns: list[str] = []
    types: list[str] = []
    rows: list[list[Any]] = []
    token: dict[str, str] = {}
    first = True
    while True:
        page = athena.get_query_results(QueryExecutionId=execution_id, MaxResults=1000, **token)
        result_set = page["ResultSet"]
        if first:
            info = result_set.get("ResultSetMetadata", {}).get("ColumnInfo", [])
            columns = [c["Name"] for c in info]
            types = [c.get("Type", "varchar") for c in info]
        data = result_set.get("Rows", [])
        if first and data and [d.get("VarCharValue") for d in data[0]["Data"]] == columns:
            data = data[1:]  # the header row
        first = False
        rows.extend([_cell(d, t) for d, t in zip(row["Data"], types, strict=False)] for row in data)
        if not page.get("NextToken"):
            break
        token = {"NextToken": page["NextToken"]}
    return QueryResult(
        execution_id=execution_id, columns=columns, types=types, rows=rows,
        bytes_scanned=int(stats.get("DataScannedInBytes", 0)),
        engine_ms=int(stats.get("EngineExecutionTimeInMillis", 0)),
        output_location=execution.get("ResultConfiguration", {}).get("OutputLocation", ""), sql=sql)


# ------------------------------------------------------------------------------ the archive's footprint
@dataclass(frozen=True)
class Footprint:
    prefix: str
    objects: int
    bytes: int

    @property
    def mean_object_bytes(self) -> float:
        return self.bytes / self.objects if self.objects else 0.0


def archive_footprint(s3: Any, bucket: str, prefix: str) -> Footprint:
    """Objects and bytes under ``prefix`` (e.g. ``processed/dt=2026-12-01/``): what Athena reads of it."""
    objects = size = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            objects += 1
            size += int(obj["Size"])
    return Footprint(prefix, objects, size)


# ------------------------------------------------------------------------------ output
def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def render_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], max_width: int = 60) -> str:
    cells = [[_text(v)[:max_width] for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    numeric = [bool(rows) and all(isinstance(r[i], int | float) or r[i] is None for r in rows)
               for i in range(len(columns))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if numeric[i] else v.ljust(w)
                         for i, (v, w) in enumerate(zip(values, widths, strict=True))).rstrip()

    out = [line(list(columns)), "  ".join("-" * w for w in widths)]
    out.extend(line(r) for r in cells)
    return "\n".join(out)


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit} ({n} B)"
        size /= 1024
    return f"{n} B"
