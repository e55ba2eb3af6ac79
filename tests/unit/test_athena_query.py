"""iotpipe.ops.athena_query: parameters, result pages, errors and the table, against a fake Athena client."""

from __future__ import annotations

from typing import Any

import pytest

from iotpipe.ops import athena_query as aq

TARGET = aq.QueryTarget("s", "s-archive", "s_archive")


class FakeAthena:
    """The few Athena calls run_query makes; states are returned in order, then the last one stays."""

    def __init__(self, states: list[str], pages: list[dict[str, Any]] | None = None,
                 reason: str = "", scanned: int = 1234) -> None:
        self.states, self.pages, self.reason, self.scanned = states, pages or [], reason, scanned
        self.started: list[dict[str, Any]] = []

    def start_query_execution(self, **kwargs: Any) -> dict[str, str]:
        self.started.append(kwargs)
        return {"QueryExecutionId": "q-1"}

    def get_query_execution(self, QueryExecutionId: str) -> dict[str, Any]:
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return {"QueryExecution": {
            "Status": {"State": state, "StateChangeReason": self.reason},
            "Statistics": {"DataScannedInBytes": self.scanned, "EngineExecutionTimeInMillis": 7},
            "ResultConfiguration": {"OutputLocation": "s3://b/athena-results/q-1.csv"}}}

    def get_query_results(self, QueryExecutionId: str, MaxResults: int,
                          NextToken: str | None = None) -> dict[str, Any]:
        return self.pages[int(NextToken or 0)]


def _page(rows: list[list[str | None]], token: str | None = None, header: bool = False) -> dict[str, Any]:
    info = [{"Name": "site", "Type": "varchar"}, {"Name": "n", "Type": "bigint"},
            {"Name": "t", "Type": "double"}]
    data = ([{"Data": [{"VarCharValue": c["Name"]} for c in info]}] if header else []) + [
        {"Data": [{} if v is None else {"VarCharValue": v} for v in row]} for row in rows]
    page: dict[str, Any] = {"ResultSet": {"Rows": data, "ResultSetMetadata": {"ColumnInfo": info}}}
    if token:
        page["NextToken"] = token
    return page


def test_parameters_are_quoted_literals_never_sql() -> None:
    sql = "SELECT * FROM processed WHERE device_id = {{device_id}} AND dt = {{day}} OR x = {{device_id}}"
    rendered = aq.render(sql, {"device_id": "d' OR '1'='1", "day": "2026-12-01"})
    assert rendered == ("SELECT * FROM processed WHERE device_id = 'd'' OR ''1''=''1' AND dt = '2026-12-01' "
                        "OR x = 'd'' OR ''1''=''1'")


def test_a_missing_or_unknown_parameter_is_named() -> None:
    with pytest.raises(aq.QueryError, match=r"missing --param day=\.\.\..*unknown parameter\(s\) dya"):
        aq.render("SELECT {{device_id}}, {{day}}", {"device_id": "d", "dya": "x"})
    with pytest.raises(aq.QueryError, match="KEY=VALUE"):
        aq.parse_params(["novalue"])


@pytest.mark.parametrize(("params", "error"), [
    ({"from_day": "2026-13-45", "to_day": "2026-12-01"}, r"from_day='2026-13-45' is not a day: .*YYYY-MM-DD"),
    ({"from_day": "2026-02-29", "to_day": "2026-03-01"}, r"from_day='2026-02-29' is not a day"),
    ({"from_day": "2026-12-01", "to_day": "20261201"}, r"to_day='20261201' is not a day"),
    ({"from_day": "2026-12-02", "to_day": "2026-12-01"}, r"from_day 2026-12-02 is after to_day 2026-12-01"),
])
def test_an_impossible_day_is_refused_not_answered_with_no_rows(params: dict[str, str], error: str) -> None:
    # GIVEN a named query over a day range, WHEN a day is not a calendar day (or the range is reversed)
    # THEN it is refused with the reason, instead of running and matching no partition
    with pytest.raises(aq.QueryError, match=error):
        aq.render("SELECT 1 WHERE dt BETWEEN {{from_day}} AND {{to_day}}", params)
    assert "'2028-02-29'" in aq.render("SELECT {{day}}", {"day": "2028-02-29"})


def test_rows_of_every_page_are_typed_and_the_header_dropped() -> None:
    # GIVEN a query that succeeds after a while, with two result pages (the first starting with the header)
    athena = FakeAthena(["QUEUED", "RUNNING", "SUCCEEDED"],
                        [_page([["a", "3", "1.5"]], token="1", header=True), _page([["b", None, "2"]])])
    seen: list[str] = []
    # WHEN it runs
    result = aq.run_query(athena, "SELECT 1", TARGET, on_state=lambda s, _: seen.append(s), poll_s=0)
    # THEN it ran in the stack's workgroup and database, progress saw every state, rows are typed
    assert athena.started == [{"QueryString": "SELECT 1", "WorkGroup": "s-archive",
                               "QueryExecutionContext": {"Database": "s_archive"}}]
    assert seen == ["QUEUED", "RUNNING", "SUCCEEDED"]
    assert result.columns == ["site", "n", "t"]
    assert result.rows == [["a", 3, 1.5], ["b", None, 2.0]]
    assert result.bytes_scanned == 1234
    assert result.to_json()["rows"][1] == {"site": "b", "n": None, "t": 2.0}


def test_a_failed_query_says_why() -> None:
    athena = FakeAthena(["RUNNING", "FAILED"], reason="line 1:1: mismatched input 'SELEC'")
    with pytest.raises(aq.QueryError, match="query failed: line 1:1: mismatched input 'SELEC'"):
        aq.run_query(athena, "SELEC 1", TARGET, poll_s=0)


def test_a_stack_without_the_sql_outputs_has_no_athena() -> None:
    with pytest.raises(aq.NoAthena, match="ArchiveSql=disabled"):
        aq.resolve_target("ls", {"StreamName": "x"})
    assert aq.resolve_target("s", {"QueryWorkGroupName": "w", "ArchiveDatabaseName": "d"}) == \
        aq.QueryTarget("s", "w", "d")


def test_the_table_aligns_numbers_right() -> None:
    text = aq.render_table(["site", "n"], [["a", 3], ["bb", 12]])
    assert text.splitlines() == ["site   n", "----  --", "a      3", "bb    12"]


def test_the_day_range_defaults_to_today_only_where_the_query_takes_it() -> None:
    assert aq.with_day_defaults(["from_day", "to_day"], {"to_day": "2026-12-02"}, "2026-12-01") == {
        "from_day": "2026-12-01", "to_day": "2026-12-02"}
    assert aq.with_day_defaults(["device_id"], {}, "2026-12-01") == {}


class FakeS3:
    def get_paginator(self, name: str) -> FakeS3:
        assert name == "list_objects_v2"
        return self

    def paginate(self, Bucket: str, Prefix: str) -> list[dict[str, Any]]:
        return [{"Contents": [{"Key": f"{Prefix}a", "Size": 100}, {"Key": f"{Prefix}b", "Size": 50}]},
                {"Contents": [{"Key": f"{Prefix}c", "Size": 1}]}, {}]


def test_the_archive_footprint_counts_every_page() -> None:
    held = aq.archive_footprint(FakeS3(), "bucket", "processed/dt=2026-12-01/")
    assert (held.objects, held.bytes) == (3, 151)
    assert held.mean_object_bytes == pytest.approx(151 / 3)
