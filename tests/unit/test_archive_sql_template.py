"""SQL over the archive in the template: the Glue tables match what the processor archives, where.

The partition projection is checked against ``archive_key`` (the one place the key layout is made), the
columns against the lines ``processed_line`` / ``quarantine_line`` write and the quarantined schema, the
named queries against ``iotpipe.ops.athena_query``'s parameter syntax.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from functions.compactor.columns import PROCESSED_COLUMNS
from functions.compactor.compaction import COMPACTED_PREFIX, MANIFEST_NAME, PART_NAME
from functions.core.archive_layout import PROCESSED_PREFIX, QUARANTINE_PREFIX, archive_key, hour_prefix
from functions.core.readings import DeviceInfo, Reading
from functions.detector.interface import Verdict
from functions.processor.archive_keys import processed_line
from iotpipe.ops import athena_query as aq
from iotpipe.ops.template import load_template

ROOT = Path(__file__).resolve().parents[2]
TABLES = {"ProcessedTable": PROCESSED_PREFIX, "QuarantineTable": QUARANTINE_PREFIX}
NAMED_QUERIES = {"anomalies-per-site-per-day", "device-readings", "quarantine-reasons-over-time",
                 "device-gaps"}
# Java DateTimeFormatter letters used by Athena's date projection -> strftime
_JAVA_TO_STRFTIME = {"yyyy": "%Y", "MM": "%m", "dd": "%d", "HH": "%H"}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(ROOT / "cloudformation" / "template.yaml")


def _table(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    return template["Resources"][logical_id]["Properties"]["TableInput"]


def _columns(template: dict[str, Any], logical_id: str) -> dict[str, str]:
    return {c["Name"]: c["Type"] for c in _table(template, logical_id)["StorageDescriptor"]["Columns"]}


def _java_date(fmt: str, when: datetime) -> str:
    out = fmt
    for java, c in _JAVA_TO_STRFTIME.items():
        out = out.replace(java, c)
    assert not re.search(r"[A-Za-z]", out.replace("%Y", "").replace("%m", "").replace("%d", "")), fmt
    return when.strftime(out)


def _projected_prefix(table: dict[str, Any], when: datetime) -> str:
    """The folder Athena's partition projection reads for the partition holding ``when``."""
    params = table["Parameters"]
    assert params["projection.enabled"] == "true"
    assert params["projection.dt.type"] == "date"
    assert params["projection.hour.type"] == "integer"
    assert params["projection.hour.range"] == "0,23"
    hour = str(when.hour).zfill(int(params["projection.hour.digits"]))
    location = params["storage.location.template"]["Sub"]
    return (location.replace("${!dt}", _java_date(params["projection.dt.format"], when))
            .replace("${!hour}", hour))


@pytest.mark.parametrize("logical_id", sorted(TABLES))
@pytest.mark.parametrize("when", [datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
                                  datetime(2026, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)])
def test_partition_projection_reads_the_folders_archive_key_writes(
        template: dict[str, Any], logical_id: str, when: datetime) -> None:
    # GIVEN the key the processor archives a batch arriving at `when` under
    ms = int(when.timestamp() * 1000)
    key = archive_key(TABLES[logical_id], "shardId-000000000000", "1", "2", ms)
    # WHEN the table's projection renders the partition for that time
    table = _table(template, logical_id)
    prefix = _projected_prefix(table, when)
    # THEN the object lies directly in that folder, and the table's location holds them all
    assert prefix == "s3://${ArchiveBucket}/" + key.rsplit("/", 1)[0] + "/"
    assert table["StorageDescriptor"]["Location"]["Sub"] == f"s3://${{ArchiveBucket}}/{TABLES[logical_id]}/"
    assert [k["Name"] for k in table["PartitionKeys"]] == ["dt", "hour"]  # the key's folder names


def test_the_projected_range_covers_the_archive_retention(template: dict[str, Any]) -> None:
    for logical_id in TABLES:
        params = _table(template, logical_id)["Parameters"]
        assert params["projection.dt.range"] == {"Sub": "NOW-${ArchiveExpirationDays}DAYS,NOW"}
        assert params["projection.dt.interval.unit"] == "DAYS"


def test_processed_columns_are_the_fields_of_an_archived_line(template: dict[str, Any]) -> None:
    # GIVEN a processed line with every optional field (verdict, ground_truth, index)
    reading = Reading("dev-1", 1_764_000_000_000, {"temperature": 1.0, "humidity": 2.0, "pressure": 3.0},
                      "shardId-000000000000", "42", DeviceInfo("dev-1", site="s", location="l"),
                      ground_truth="spike", index=3)
    verdict = Verdict(score=2.5, is_anomaly=True, severity="high", severity_rank=3, top_feature="t",
                      reason="r", threshold=1.0, model_version="m")
    line = json.loads(processed_line(reading, "aggregated", verdict))
    columns = _columns(template, "ProcessedTable")
    # THEN the table has exactly its fields, typed as the JSON carries them
    assert set(columns) == set(line)
    assert columns["epoch_ms"] == "bigint"
    assert columns["channels"] == "map<string,double>"
    assert columns["index"] == "int"
    verdict_types = (columns["anomaly"], columns["anomaly_score"], columns["severity"])
    assert verdict_types == ("boolean", "double", "string")


def test_the_compacted_table_has_the_processed_columns_in_the_compactors_order(
        template: dict[str, Any]) -> None:
    # GIVEN the columns the compactor writes into every Parquet file (functions/compactor/columns.py)
    expected = [(name, glue) for name, glue, _ in PROCESSED_COLUMNS]
    for logical_id in ("ProcessedTable", "CompactedTable"):
        columns = _table(template, logical_id)["StorageDescriptor"]["Columns"]
        declared = [(c["Name"], c["Type"]) for c in columns]
        # THEN both tables declare exactly them, in the same order (Parquet is read by name, but a
        # reordered or retyped column here would be a schema drift between the two views of one archive)
        assert declared == expected, logical_id


def test_the_compacted_table_reads_the_compactors_parquet_hour_folders(template: dict[str, Any]) -> None:
    table = _table(template, "CompactedTable")
    when = datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)
    key = hour_prefix(COMPACTED_PREFIX, "2026-12-31", "23") + PART_NAME
    assert _projected_prefix(table, when) == "s3://${ArchiveBucket}/" + key.rsplit("/", 1)[0] + "/"
    assert table["Parameters"]["classification"] == "parquet"
    assert table["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"].endswith("ParquetHiveSerDe")
    assert MANIFEST_NAME.startswith("_")  # Athena (and ministack) skip files whose names start with _ or .


def test_quarantine_columns_are_the_quarantined_schema(template: dict[str, Any]) -> None:
    schema = json.loads((ROOT / "functions" / "schemas" / "quarantined.schema.json").read_text())
    columns = _columns(template, "QuarantineTable")
    assert set(columns) == set(schema["properties"])
    for name, spec in schema["properties"].items():
        assert columns[name] == {"string": "string", "integer": "int"}[spec["type"]], name


def test_json_serde_and_gzip_as_the_processor_writes(template: dict[str, Any]) -> None:
    for logical_id in TABLES:
        table = _table(template, logical_id)
        assert table["TableType"] == "EXTERNAL_TABLE"
        assert table["Parameters"]["classification"] == "json"
        serde = table["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"]
        assert serde == "org.openx.data.jsonserde.JsonSerDe"


def test_workgroup_encrypts_results_in_the_stack_bucket_and_caps_the_scan(template: dict[str, Any]) -> None:
    config = template["Resources"]["QueryWorkGroup"]["Properties"]["WorkGroupConfiguration"]
    assert config["EnforceWorkGroupConfiguration"] is True
    assert config["BytesScannedCutoffPerQuery"] == {"Ref": "AthenaBytesScannedCutoff"}
    result = config["ResultConfiguration"]
    assert result["OutputLocation"] == {"Sub": "s3://${ArchiveBucket}/athena-results/"}
    assert result["EncryptionConfiguration"]["EncryptionOption"] == "SSE_KMS"
    rules = template["Resources"]["ArchiveBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert any(r.get("Prefix") == "athena-results/" and r["ExpirationInDays"] <= 30 for r in rules)


def test_every_sql_resource_is_behind_the_archive_sql_switch(template: dict[str, Any]) -> None:
    kinds = ("AWS::Glue::", "AWS::Athena::")
    sql = {k: v for k, v in template["Resources"].items() if v["Type"].startswith(kinds)}
    assert set(sql) >= {"ArchiveDatabase", "ProcessedTable", "QuarantineTable", "QueryWorkGroup"}
    for logical_id, resource in sql.items():
        expected = "UseNamedQueries" if resource["Type"] == "AWS::Athena::NamedQuery" else "UseArchiveSql"
        if logical_id == "CompactedTable":  # also needs the compactor that writes its files
            expected = "UseCompactedTable"
            both = template["Conditions"][expected]["And"]
            assert both == [{"Condition": "UseArchiveSql"}, {"Condition": "UseCompaction"}]
        assert resource.get("Condition") == expected, logical_id
    assert template["Resources"]["ArchiveQueryPolicy"]["Condition"] == "UseArchiveSql"
    for output in ("ArchiveDatabaseName", "QueryWorkGroupName", "ArchiveQueryPolicyArn"):
        assert template["Outputs"][output]["Condition"] == "UseArchiveSql"


def test_named_queries_are_the_four_and_each_prunes_by_day(template: dict[str, Any]) -> None:
    queries = aq.template_named_queries(template)
    assert set(queries) == NAMED_QUERIES
    for query in queries.values():
        assert "dt BETWEEN {{from_day}} AND {{to_day}}" in query.sql, query.name
        # a calendar day for every parameter (day parameters are checked as days; the others take any text)
        rendered = aq.render(query.sql, dict.fromkeys(query.parameters, "2026-12-06"))
        assert "{{" not in rendered


def test_the_query_policy_is_scoped_to_this_stack(template: dict[str, Any]) -> None:
    statements = template["Resources"]["ArchiveQueryPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    for statement in statements:
        assert statement["Effect"] == "Allow"
        assert statement["Resource"] != "*"
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert all("*" not in a for a in actions)
    reads = next(s for s in statements if s["Sid"] == "ReadTheArchive")
    assert reads["Action"] == "s3:GetObject"  # read only, and only the three archive prefixes
    assert {r["Sub"] for r in reads["Resource"]} == {"${ArchiveBucket.Arn}/processed/*",
                                                     "${ArchiveBucket.Arn}/compacted/*",
                                                     "${ArchiveBucket.Arn}/quarantine/*"}
