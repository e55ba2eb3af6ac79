"""The archive compactor on a deployed stack: readings through the pipeline, compacted, read back.

Runs the deployed ``compactor`` function (DuckDB in its own bundle) through ``iotpipe archive compact``,
then checks the Parquet file it wrote against the JSON-lines objects it was built from, reading for
reading, and that a second run writes nothing. Where the target has Athena (the embedded emulator:
ministack's DuckDB engine reads the Glue table's Parquet files) the ``processed_compacted`` table must
answer what ``processed`` answers, named queries included. LocalStack 4.14 community has no Glue or
Athena: there the compactor still runs and its output is checked by reading the objects, and the SQL
part says why it does not run.
"""

# The queries are built from this module's own values, each quoted with aq.sql_literal.
# ruff: noqa: S608
from __future__ import annotations

import json
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import duckdb
import pytest

from iotpipe.ops import athena_query as aq
from tests.integration.archive_objects import archived_lines
from tests.integration.polling import wait_for
from tests.integration.targets import TARGET, facts

pytestmark = pytest.mark.integration


def _iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _processed_lines(bucket: str, devices: set[str]) -> dict[str, list[dict[str, Any]]]:
    """hour ("YYYY-MM-DDTHH") -> this module's processed lines, read from the JSON objects."""
    out: dict[str, list[dict[str, Any]]] = {}
    for line in archived_lines(boto3.client("s3"), bucket, "processed/"):
        if line.doc["device_id"] in devices:
            out.setdefault(f"{line.dt}T{line.hour}", []).append(line.doc)
    return out


def _parquet_rows(bucket: str, hour: str, devices: set[str]) -> list[dict[str, Any]]:
    dt, hh = hour.split("T")
    body = boto3.client("s3").get_object(Bucket=bucket, Key=f"compacted/dt={dt}/hour={hh}/part-00000.parquet")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "part.parquet"
        path.write_bytes(body["Body"].read())
        rel = duckdb.sql(f"SELECT * FROM read_parquet('{path}')")
        names = [d[0] for d in rel.description]
        return [dict(zip(names, row, strict=True)) for row in rel.fetchall() if row[0] in devices]


def _key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["device_id"], row["epoch_ms"], row["sequence_number"], row.get("index"), row["status"],
            row.get("anomaly"), round(row["channels"]["temperature"], 6), row.get("ground_truth"))


@pytest.fixture(scope="module")
def archived(deployed_stack: dict[str, str]) -> tuple[set[str], dict[str, list[dict[str, Any]]]]:
    # GIVEN registered devices whose readings (one packed record among them) went through the pipeline
    tag = uuid.uuid4().hex[:8]
    devices = {f"cmp-{i}-{tag}" for i in range(3)}
    ddb = boto3.client("dynamodb")
    for i, device_id in enumerate(sorted(devices)):
        ddb.put_item(TableName=deployed_stack["DevicesTableName"], Item={
            "device_id": {"S": device_id}, "name": {"S": "compaction sensor"},
            "site": {"S": f"cmp-site-{i % 2}"},
            "location": {"S": "Lyon, FR"}, "model": {"S": "TH-100"}, "timezone": {"S": "Europe/Paris"},
            "registered_at": {"S": _iso(datetime.now(UTC))}})
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)
    records = []
    for n, device_id in enumerate(sorted(devices)):
        for i in range(12):
            reading = {"device_id": device_id, "timestamp": _iso(start + timedelta(seconds=i)),
                       "temperature": round(19.0 + n + i * 0.5, 2), "humidity": 45.0, "pressure": 1012.0,
                       "ground_truth": "spike" if i == 6 else "normal"}
            records.append({"Data": json.dumps(reading).encode(), "PartitionKey": device_id})
    first = sorted(devices)[0]
    packed = [{"device_id": first, "timestamp": _iso(start + timedelta(seconds=30 + i)),
               "temperature": 21.0 + i, "humidity": 45.0, "pressure": 1012.0} for i in range(3)]
    records.append({"Data": json.dumps(packed).encode(), "PartitionKey": first})
    resp = boto3.client("kinesis").put_records(StreamName=deployed_stack["StreamName"], Records=records)
    assert resp["FailedRecordCount"] == 0
    want = 3 * 12 + len(packed)
    bucket = deployed_stack["ArchiveBucketName"]
    lines: dict[str, list[dict[str, Any]]] = {}

    def all_archived() -> bool:
        nonlocal lines
        lines = _processed_lines(bucket, devices)
        return sum(len(v) for v in lines.values()) == want

    assert wait_for(all_archived, timeout_s=180, interval_s=2), "readings not all archived"
    return devices, lines


def _compact(stack: str, hours: list[str] | None, capsys: pytest.CaptureFixture[str],
             force: bool = False) -> dict[str, Any]:
    """``iotpipe archive compact`` on ``hours`` (None: ``--all``, every settled archived hour)."""
    from iotpipe.cli import main

    args = ["archive", "compact", "--stack", stack, "--json"]
    for hour in hours or []:
        args += ["--hour", hour]
    if hours is None:
        args.append("--all")
    if force:
        args.append("--force")
    status = main(args)
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert status == 0, doc
    doc["stderr"] = captured.err
    return doc


def test_the_compactor_writes_each_archived_reading_once_and_a_rerun_writes_nothing(
        deployed_stack: dict[str, str], archived: tuple[set[str], dict[str, list[dict[str, Any]]]],
        capsys: pytest.CaptureFixture[str]) -> None:
    devices, lines = archived
    bucket = deployed_stack["ArchiveBucketName"]
    # WHEN the hours holding them are compacted by the deployed function
    first = _compact(deployed_stack["StackName"], sorted(lines), capsys)
    # THEN each hour's Parquet file holds exactly the readings of that hour's JSON objects
    assert {r["action"] for r in first["results"]} == {"compacted"}
    for hour, docs in lines.items():
        rows = _parquet_rows(bucket, hour, devices)
        assert sorted(map(_key, rows)) == sorted(map(_key, docs)), hour
        assert any(r["index"] is not None for r in rows) or all("index" not in d for d in docs)
    # sorted by site, device, time (what lets a device or site filter skip row groups)
    for hour in lines:
        rows = _parquet_rows(bucket, hour, devices)
        assert [(r["site"], r["device_id"], r["epoch_ms"]) for r in rows] == sorted(
            (r["site"], r["device_id"], r["epoch_ms"]) for r in rows)
    assert first["summary"]["bytes_out"] > 0
    # AND run again, an hour whose inputs did not change is left alone (only another test's late batch
    # in the same hour may make it rebuild, and then with more inputs than before)
    before = {f"{r['dt']}T{r['hour']}": r["inputs"] for r in first["results"]}
    again = _compact(deployed_stack["StackName"], sorted(lines), capsys)
    for r in again["results"]:
        hour = f"{r['dt']}T{r['hour']}"
        assert r["action"] == "unchanged" or r["inputs"] > before[hour], r
    # AND `--all` leaves the hours still being written alone (these readings are minutes old), saying so
    every = _compact(deployed_stack["StackName"], None, capsys)
    assert not {f"{r['dt']}T{r['hour']}" for r in every["results"]} & set(lines), every
    assert "left alone, still open" in every["stderr"]
    assert all(h in every["stderr"] for h in lines)
    # AND a malformed hour is a one-line error
    from iotpipe.cli import main
    bad = ["archive", "compact", "--stack", deployed_stack["StackName"], "--hour", "today", "--json"]
    assert main(bad) == 1
    assert "YYYY-MM-DDTHH" in json.loads(capsys.readouterr().out)["error"]


@pytest.fixture(scope="module")
def sql(deployed_stack: dict[str, str]) -> aq.QueryTarget:
    if not facts().archive_sql:
        assert "QueryWorkGroupName" not in deployed_stack  # the target really has no Glue/Athena outputs
        pytest.skip(f"{TARGET}: no Athena and no Glue (LocalStack 4.14 community): the Parquet files are "
                    "checked by reading them above, the processed_compacted table cannot be queried here")
    return aq.resolve_target(deployed_stack["StackName"], deployed_stack)


def _rows(athena: Any, sql: aq.QueryTarget, text: str) -> list[list[Any]]:
    return aq.run_query(athena, text, sql, poll_s=0.2, timeout_s=120).rows


def test_the_compacted_table_answers_what_the_json_table_answers(
        deployed_stack: dict[str, str], archived: tuple[set[str], dict[str, list[dict[str, Any]]]],
        sql: aq.QueryTarget, capsys: pytest.CaptureFixture[str]) -> None:
    devices, lines = archived
    # (every hour, the open ones too: the named queries below read whole days, other modules' included)
    _compact(deployed_stack["StackName"], None, capsys, force=True)
    athena = boto3.client("athena")
    in_list = ", ".join(aq.sql_literal(d) for d in sorted(devices))
    days = sorted({h[:10] for h in lines})
    query = ("SELECT device_id, site, status, count(*) AS n, sum(channels['temperature']) AS t, "
             "count(ground_truth) AS labelled FROM {table} "
             f"WHERE dt BETWEEN '{days[0]}' AND '{days[-1]}' AND device_id IN ({in_list}) "
             "GROUP BY device_id, site, status ORDER BY device_id, status")
    # WHEN the same question is asked of both tables
    json_rows = _rows(athena, sql, query.format(table="processed"))
    parquet_rows = _rows(athena, sql, query.format(table="processed_compacted"))
    # THEN the answers are the same, and they count every reading this module produced
    assert parquet_rows == json_rows
    assert sum(r[3] for r in parquet_rows) == sum(len(v) for v in lines.values())
    # AND every named query, pointed at the compacted table, answers as it does over the JSON one
    params = {"from_day": days[0], "to_day": days[-1], "device_id": sorted(devices)[0], "min_gap_s": "1"}
    for named in aq.template_named_queries().values():
        if " processed" not in named.sql:
            continue  # the quarantine query: quarantine is not compacted
        text = aq.render(named.sql, {k: v for k, v in params.items() if k in named.parameters})
        compacted = text.replace("FROM processed", "FROM processed_compacted")
        assert compacted != text
        assert _sorted(_rows(athena, sql, compacted)) == _sorted(_rows(athena, sql, text)), named.name


def _sorted(rows: list[list[Any]]) -> list[list[Any]]:
    return sorted(([_instant(cell) for cell in row] for row in rows), key=repr)


def _instant(cell: Any) -> Any:
    """An ISO timestamp string as an instant. ministack's DuckDB engine reads the JSON table with
    read_json_auto, which turns the string column ``timestamp`` into a TIMESTAMP and prints it as
    '2026-12-02 01:16:40'; the Parquet file keeps the string the Glue table declares
    ('2026-12-02T01:16:40.000Z', as Athena would answer for both). Same instant, two renderings."""
    if isinstance(cell, str) and len(cell) >= 19 and cell[4] == "-" and cell[10] in "T ":
        try:
            return datetime.fromisoformat(cell.replace("Z", "+00:00")).replace(tzinfo=None)
        except ValueError:
            return cell
    return cell
