"""SQL over the S3 archive on a deployed stack: readings through the pipeline, then Athena over them.

On the embedded emulator this is real: ministack's Athena runs the queries on DuckDB over the archive
objects the processor wrote, through the Glue tables the template declared. The answers are checked
against the produced records, the aggregates table and the archive objects themselves. LocalStack 4.14
community has neither Glue nor Athena: the stack deploys without them (ArchiveSql=disabled) and these
tests skip with that reason, after checking the stack really has no SQL outputs there.
"""

# The queries are built from this module's own values, each quoted with aq.sql_literal.
# ruff: noqa: S608
from __future__ import annotations

import json
import os
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from boto3.dynamodb.conditions import Key

from iotpipe.ops import athena_query as aq
from tests.integration.archive_objects import archived_lines
from tests.integration.polling import wait_for
from tests.integration.targets import TARGET, facts

pytestmark = pytest.mark.integration


def _iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class Produced:
    """What this module put on the stream, and what every reading should have become."""

    sites: dict[str, list[str]]  # site -> device ids
    readings: dict[str, list[dict[str, Any]]]  # device id -> readings in event-time order
    rejected: dict[str, str] = field(default_factory=dict)  # sequence number -> expected reason
    gap_device: str = ""
    gap_s: float = 0.0
    days: tuple[str, str] = ("", "")

    def site_of(self, device_id: str) -> str:
        return next(site for site, devices in self.sites.items() if device_id in devices)


@pytest.fixture(scope="module")
def sql(deployed_stack: dict[str, str]) -> aq.QueryTarget:
    if not facts().archive_sql:
        # Not vacuous: the stack must really lack them, else this target's fact is out of date.
        assert "QueryWorkGroupName" not in deployed_stack
        pytest.skip(f"{TARGET}: no Athena and no Glue (LocalStack 4.14 community); the stack is deployed "
                    "with ArchiveSql=disabled, so there is no SQL over the archive to test")
    return aq.resolve_target(deployed_stack["StackName"], deployed_stack)


@pytest.fixture(scope="module")
def athena(sql: aq.QueryTarget) -> Any:
    return boto3.client("athena")


def _register(table: str, device_id: str, site: str) -> None:
    boto3.client("dynamodb").put_item(TableName=table, Item={
        "device_id": {"S": device_id}, "name": {"S": "sql sensor"}, "site": {"S": site},
        "location": {"S": "Lyon, FR"}, "latitude": {"N": "45.76"}, "longitude": {"N": "4.83"},
        "model": {"S": "TH-100"}, "timezone": {"S": "Europe/Paris"},
        "registered_at": {"S": _iso(datetime.now(UTC))},
    })


@pytest.fixture(scope="module")
def produced(deployed_stack: dict[str, str], sql: aq.QueryTarget) -> Produced:
    # GIVEN two sites of registered devices, readings labelled as the simulator labels them, a device
    # with a five-minute silence, and records the processor must quarantine for known reasons
    tag = uuid.uuid4().hex[:8]
    sites = {f"sql-a-{tag}": [f"sql-a1-{tag}", f"sql-a2-{tag}"], f"sql-b-{tag}": [f"sql-b1-{tag}"]}
    for site, devices in sites.items():
        for device_id in devices:
            _register(deployed_stack["DevicesTableName"], device_id, site)
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(minutes=7)
    labels = {sites[f"sql-a-{tag}"][0]: {2: "spike", 7: "spike"}, sites[f"sql-a-{tag}"][1]: {4: "drift"}}
    gap_device = sites[f"sql-b-{tag}"][0]
    readings: dict[str, list[dict[str, Any]]] = {}
    for n, device_id in enumerate(d for devices in sites.values() for d in devices):
        rows = []
        for i in range(10):
            offset = timedelta(seconds=i + (300 if device_id == gap_device and i >= 5 else 0))
            rows.append({"device_id": device_id, "timestamp": _iso(start + offset),
                         "temperature": round(18.0 + n + i * 0.25, 2), "humidity": 40.0 + i,
                         "pressure": 1010.0,
                         "ground_truth": labels.get(device_id, {}).get(i, "normal")})
        readings[device_id] = rows
    records = [{"Data": json.dumps(r).encode(), "PartitionKey": r["device_id"]}
               for rows in readings.values() for r in rows]
    bad = [(b'{"device_id": "x", "temperature": ', "malformed_json"),
           (b"[1, 2", "malformed_json"),
           (json.dumps({"device_id": f"sql-ghost-{tag}", "timestamp": _iso(start), "temperature": 20.0,
                        "humidity": 40.0, "pressure": 1010.0}).encode(), "unknown_device"),
           (json.dumps({"device_id": gap_device, "timestamp": _iso(start), "temperature": 20.0,
                        "humidity": 150.0, "pressure": 1010.0}).encode(), "out_of_range"),
           (json.dumps({"device_id": gap_device, "timestamp": _iso(start)}).encode(), "schema_invalid")]
    records += [{"Data": data, "PartitionKey": f"sql-bad-{tag}"} for data, _ in bad]

    # WHEN they are put on the stream
    resp = boto3.client("kinesis").put_records(StreamName=deployed_stack["StreamName"], Records=records)
    assert resp["FailedRecordCount"] == 0
    rejected = {r["SequenceNumber"]: reason
                for r, (_, reason) in zip(resp["Records"][-len(bad):], bad, strict=True)}
    days = ((now - timedelta(days=1)).strftime("%Y-%m-%d"), (now + timedelta(days=1)).strftime("%Y-%m-%d"))
    # the silence: reading 4 at +4 s, reading 5 at +305 s
    return Produced(sites, readings, rejected, gap_device, 301.0, days)


def _query(athena: Any, sql: aq.QueryTarget, text: str) -> aq.QueryResult:
    return aq.run_query(athena, text, sql, poll_s=0.2, timeout_s=120)


def _named(athena: Any, sql: aq.QueryTarget, name: str, **params: str) -> aq.QueryResult:
    query = aq.named_query(athena, sql.workgroup, name)
    return _query(athena, sql, aq.render(query.sql, params))


def _in_list(values: list[str]) -> str:
    return ", ".join(aq.sql_literal(v) for v in values)


@pytest.fixture(scope="module")
def archived(athena: Any, sql: aq.QueryTarget, produced: Produced) -> Produced:
    """Waits until every produced reading and rejection is in the archive, as SQL sees it."""
    devices = _in_list(list(produced.readings))
    want = {d: len(rows) for d, rows in produced.readings.items()}

    def processed() -> bool:
        rows = _query(athena, sql, f"SELECT device_id, count(*) AS n FROM processed "
                                   f"WHERE device_id IN ({devices}) GROUP BY device_id").rows
        return {r[0]: r[1] for r in rows} == want

    def quarantined() -> bool:
        rows = _query(athena, sql, f"SELECT count(*) AS n FROM quarantine "
                                   f"WHERE sequence_number IN ({_in_list(list(produced.rejected))})").rows
        return rows == [[len(produced.rejected)]]

    assert wait_for(processed, timeout_s=180, interval_s=2), "produced readings not all archived"
    assert wait_for(quarantined, timeout_s=120, interval_s=2), "rejected records not all archived"
    return produced


def test_sql_counts_and_sums_match_the_aggregates_table_and_the_produced_readings(
        athena: Any, sql: aq.QueryTarget, archived: Produced, deployed_stack: dict[str, str]) -> None:
    # WHEN the archive is asked for each device's count and temperature sum
    result = _query(athena, sql, f"""
        SELECT device_id, site, count(*) AS n, sum(channels['temperature']) AS temperature_sum
        FROM processed
        WHERE dt BETWEEN '{archived.days[0]}' AND '{archived.days[1]}'
          AND device_id IN ({_in_list(list(archived.readings))}) AND status = 'aggregated'
        GROUP BY device_id, site ORDER BY device_id""")
    by_device = {row[0]: row for row in result.rows}
    ddb = boto3.resource("dynamodb").Table(deployed_stack["AggregatesTableName"])
    # THEN each answer is what was produced and what the aggregates table holds for that device
    assert set(by_device) == set(archived.readings)
    for device_id, rows in archived.readings.items():
        _, site, n, temperature_sum = by_device[device_id]
        assert site == archived.site_of(device_id)
        assert n == len(rows)
        assert temperature_sum == pytest.approx(sum(r["temperature"] for r in rows))
        windows = ddb.query(KeyConditionExpression=Key("device_id").eq(device_id),
                            ConsistentRead=True)["Items"]
        assert sum(int(w["count"]) for w in windows) == n
        assert float(sum(Decimal(w["channels"]["temperature"]["sum"]) for w in windows)) == \
            pytest.approx(temperature_sum)


def test_named_anomalies_per_site_per_day(
        athena: Any, sql: aq.QueryTarget, archived: Produced, deployed_stack: dict[str, str]) -> None:
    # WHEN the named query runs over the produced days
    result = _named(athena, sql, "anomalies-per-site-per-day", from_day=archived.days[0],
                    to_day=archived.days[1])
    assert result.columns == ["day", "site", "readings", "scored", "anomalies", "labelled_anomalies"]
    totals: dict[str, list[int]] = {}
    for _day, site, readings, scored, anomalies, labelled in result.rows:
        if site in archived.sites:
            total = totals.setdefault(site, [0, 0, 0, 0])
            for i, n in enumerate((readings, scored, anomalies, labelled)):
                total[i] += n
    # THEN its anomalies are the detector's: those stored in the anomalies table for the site's devices
    # (summed over the days asked for: the table's day is the event day, the query's the arrival day)
    ddb = boto3.resource("dynamodb").Table(deployed_stack["AnomaliesTableName"])
    stored_items = {d: [item for item in ddb.query(KeyConditionExpression=Key("device_id").eq(d),
                                                   ConsistentRead=True)["Items"]
                        if "epoch_ms" in item]  # not the alert-cooldown marker (ts_seq "~alert")
                    for d in archived.readings}
    stored = {site: sum(len(stored_items[d]) for d in devices) for site, devices in archived.sites.items()}
    expected = {site: [sum(len(archived.readings[d]) for d in devices),
                       sum(len(archived.readings[d]) for d in devices),  # every reading was scored
                       stored[site],
                       sum(r["ground_truth"] != "normal" for d in devices for r in archived.readings[d])]
                for site, devices in archived.sites.items()}
    assert totals == expected
    assert sum(stored.values()) > 0  # not vacuous: the detector flagged some of them
    assert expected[next(iter(archived.sites))][3] == 3  # the labels still counted: the spikes, the drift
    # AND the flagged lines are the stored anomalies, reading for reading
    flagged = _query(athena, sql, f"""
        SELECT device_id, epoch_ms FROM processed
        WHERE dt BETWEEN '{archived.days[0]}' AND '{archived.days[1]}' AND status = 'aggregated'
          AND anomaly = true AND device_id IN ({_in_list(list(archived.readings))})""").rows
    assert sorted((d, int(e)) for d, e in flagged) == sorted(
        (d, int(item["epoch_ms"])) for d, items in stored_items.items() for item in items)


def test_named_device_readings(athena: Any, sql: aq.QueryTarget, archived: Produced) -> None:
    device_id = next(iter(archived.readings))
    result = _named(athena, sql, "device-readings", device_id=device_id,
                    from_day=archived.days[0], to_day=archived.days[1])
    assert result.columns[:2] == ["timestamp", "epoch_ms"]
    produced = archived.readings[device_id]
    assert [row[2] for row in result.rows] == pytest.approx([r["temperature"] for r in produced])
    assert [row[5] for row in result.rows] == [r["ground_truth"] for r in produced]
    assert [row[1] for row in result.rows] == [
        int(datetime.fromisoformat(r["timestamp"]).timestamp() * 1000) for r in produced]


def test_named_device_gaps(athena: Any, sql: aq.QueryTarget, archived: Produced) -> None:
    result = _named(athena, sql, "device-gaps", device_id=archived.gap_device, from_day=archived.days[0],
                    to_day=archived.days[1], min_gap_s="60")
    assert [row[2] for row in result.rows] == [pytest.approx(archived.gap_s)]
    # AND a device without a silence has none
    steady = next(d for d in archived.readings if d != archived.gap_device)
    none = _named(athena, sql, "device-gaps", device_id=steady, from_day=archived.days[0],
                  to_day=archived.days[1], min_gap_s="60")
    assert none.rows == []


def _archived_quarantine_counts(bucket: str) -> Counter[tuple[str, str, str, str]]:
    """(dt, hour, reason, stage) counted from the quarantine objects themselves."""
    return Counter((line.dt, line.hour, line.doc["reason"], line.doc["stage"])
                   for line in archived_lines(boto3.client("s3"), bucket, "quarantine/"))


def test_named_quarantine_reasons_over_time(
        athena: Any, sql: aq.QueryTarget, archived: Produced, deployed_stack: dict[str, str]) -> None:
    # WHEN the named query counts the quarantine by hour and reason
    result = _named(athena, sql, "quarantine-reasons-over-time", from_day=archived.days[0],
                    to_day=archived.days[1])
    assert result.columns == ["day", "hour", "reason", "stage", "rejected"]
    answered = Counter({(d, h, r, s): n for d, h, r, s, n in result.rows})
    # THEN it equals a count of the archive objects' lines
    assert answered == _archived_quarantine_counts(deployed_stack["ArchiveBucketName"])
    # AND this module's rejections are there with the reasons the processor gave them
    mine = _query(athena, sql, f"SELECT reason, count(*) AS n FROM quarantine WHERE sequence_number IN "
                               f"({_in_list(list(archived.rejected))}) GROUP BY reason").rows
    assert dict(mine) == dict(Counter(archived.rejected.values()))


def test_a_bad_query_fails_with_the_engine_s_reason(athena: Any, sql: aq.QueryTarget) -> None:
    with pytest.raises(aq.QueryError, match=r"query failed: .*SELEC"):
        _query(athena, sql, "SELEC device_id FROM processed")


def test_iotpipe_query_prints_the_named_query_as_json(
        sql: aq.QueryTarget, archived: Produced, capsys: pytest.CaptureFixture[str]) -> None:
    from iotpipe.cli import main

    # WHEN the CLI runs the named query over the produced days, and once with the days left to default
    status = main(["query", "--stack", sql.stack, "--named", "anomalies-per-site-per-day", "--json",
                   "--param", f"from_day={archived.days[0]}", "--param", f"to_day={archived.days[1]}"])
    doc = json.loads(capsys.readouterr().out)
    defaulted = main(["query", "--stack", sql.stack, "--named", "anomalies-per-site-per-day", "--json"])
    today = json.loads(capsys.readouterr().out)
    # THEN both succeed; the first has this module's sites with the produced counts, and the bytes scanned
    assert status == 0
    assert defaulted == 0
    assert "rows" in today
    mine = {r["site"]: r["readings"] for r in doc["rows"] if r["site"] in archived.sites}
    assert sum(mine.values()) == sum(len(rows) for rows in archived.readings.values())
    assert doc["bytes_scanned"] > 0
    # AND a stack that does not exist is a one-line error, not a traceback
    assert main(["query", "--stack", "no-such-stack", "SELECT 1", "--json"]) == 1
    assert "cannot read stack" in json.loads(capsys.readouterr().out)["error"]


def _emulator_cwd() -> Path | None:
    """The working directory of the emulator serving AWS_ENDPOINT_URL (where DuckDB resolves 'out.csv')."""
    port = os.environ.get("AWS_ENDPOINT_URL", "").rsplit(":", 1)[-1]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if f"GATEWAY_PORT={port}".encode() in (entry / "environ").read_bytes().split(b"\0"):
                return Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
    return None


def test_iotpipe_query_refuses_file_functions_and_copy_and_writes_nothing(
        sql: aq.QueryTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from iotpipe.cli import main

    # GIVEN the emulator, whose Athena runs on DuckDB with the emulator's rights, and a host file
    monkeypatch.chdir(tmp_path)
    engine_cwd = _emulator_cwd()
    host_file = tmp_path / "secret.txt"
    host_file.write_text("host-secret-4711\n")
    # WHEN `iotpipe query` is asked to read it (or /etc/hostname) through a file function
    for path in (host_file, "/etc/hostname"):
        status = main(["query", "--stack", sql.stack, f"SELECT content FROM read_text('{path}')", "--json"])
        answer = capsys.readouterr().out
        # THEN it is refused with the reason, and nothing of the file comes back
        assert status == 1
        assert "refused: a function as a table" in json.loads(answer)["error"]
        assert "host-secret-4711" not in answer
    # AND COPY ... TO is refused and creates no file, relative (the engine's or this directory) or absolute
    for target in ("out.csv", str(tmp_path / "abs.csv")):
        status = main(["query", "--stack", sql.stack, f"COPY (SELECT 1 AS x) TO '{target}'", "--json"])
        assert status == 1
        assert "refused: only a read-only query" in json.loads(capsys.readouterr().out)["error"]
    time.sleep(1)  # a write, had one started, would have landed by now
    written = [p for p in (tmp_path / "out.csv", tmp_path / "abs.csv",
                           engine_cwd / "out.csv" if engine_cwd else None) if p is not None and p.exists()]
    assert written == []
    # AND a read-only query over the stack's tables still runs through the same command
    assert main(["query", "--stack", sql.stack, "SELECT count(*) AS n FROM processed", "--json"]) == 0
    assert "rows" in json.loads(capsys.readouterr().out)
