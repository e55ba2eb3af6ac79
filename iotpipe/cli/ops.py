"""``iotpipe status``, ``rebuild``, ``query`` and ``archive compact``: a deployed stack, read and operated
(iotpipe/ops/)."""

from __future__ import annotations

import contextlib
import json
import time
from typing import Annotated

import typer

from iotpipe import aws
from iotpipe.cli.app import JsonOption, StackOption, app, archive_app, failed
from iotpipe.console import STDERR, say
from iotpipe.local.emulator import use_running_emulator
from iotpipe.ops.stack import stack_outputs
from iotpipe.settings import tool_settings


@app.command(help="stack outputs and pipeline counts")
def status(stack: StackOption = "iotpipe", json_out: JsonOption = False) -> int:
    return cmd_status(stack, json_out)


@app.command(help="re-derive aggregates and anomalies from the archive (exactly once)")
def rebuild(stack: StackOption = "iotpipe", json_out: JsonOption = False) -> int:
    return cmd_rebuild(stack, json_out)


@app.command(help="SQL over the S3 archive (Athena on the current target)")
def query(
    sql: Annotated[str | None, typer.Argument(
        help="one read-only SELECT over the tables processed, processed_compacted, quarantine")] = None,
    named: Annotated[str | None, typer.Option("--named", help="a named query of the template")] = None,
    param: Annotated[list[str] | None, typer.Option(metavar="KEY=VALUE",
                                                    help="a named query's parameter")] = None,
    list_named: Annotated[bool, typer.Option("--list", help="the named queries, their parameters")] = False,
    stack: StackOption = "iotpipe",
    json_out: JsonOption = False,
) -> int:
    return cmd_query(stack, sql, named, param or [], json_out, list_named)


@archive_app.command(name="compact", help="rewrite archive hours as Parquet (the stack's compactor)")
def compact_command(
    hour: Annotated[list[str] | None, typer.Option("--hour", metavar="YYYY-MM-DDTHH",
                                                   help="an hour to compact (repeatable)")] = None,
    all_hours: Annotated[bool, typer.Option(
        "--all", help="every settled hour with processed objects (not the hours still open)")] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="rebuild even where the manifest matches; with --all, the open hours too")] = False,
    stack: StackOption = "iotpipe",
    json_out: JsonOption = False,
) -> int:
    return cmd_compact(stack, hour or [], all_hours, force, json_out)


def cmd_rebuild(stack: str, as_json: bool) -> int:
    from iotpipe.ops.rebuild import main as rebuild_main

    use_running_emulator(say)
    return rebuild_main(stack, as_json=as_json)


def cmd_status(stack: str, as_json: bool) -> int:
    from iotpipe.ops.status import collect, read_crash_window, render

    emulator = use_running_emulator(say)
    try:
        status = collect(stack)
        if emulator is not None:
            status.crash_window = read_crash_window(emulator.state_dir)
    except Exception as exc:
        error = {"error": str(exc), "stack": stack}
        print(json.dumps(error) if as_json else f"status unavailable: {exc}")
        return 1
    if as_json:
        print(json.dumps(status.to_json(), sort_keys=True))
    else:
        print(render(status))
    return 0


def cmd_query(stack: str, sql: str | None, named: str | None, params: list[str], as_json: bool,
              list_named: bool) -> int:
    """SQL over the archive on the current target; progress on stderr, the table (or JSON) on stdout."""
    from iotpipe.ops import athena_query as aq

    use_running_emulator(say)
    try:
        if list_named:
            for query in sorted(aq.template_named_queries().values(), key=lambda q: q.name):
                print(f"{query.name}  ({', '.join(query.parameters)})  {query.description}")
            return 0
        if (sql is None) == (named is None):
            raise aq.QueryError('give a query ("SELECT ...") or --named NAME, not both')
        try:
            outputs = stack_outputs(stack)
        except Exception as exc:  # botocore's ClientError / BotoCoreError: no such stack, no credentials
            raise aq.QueryError(f"cannot read stack {stack!r} on this target: {exc}") from exc
        target = aq.resolve_target(stack, outputs)
        athena = aws.client("athena")
        if named:
            query = aq.named_query(athena, target.workgroup, named)
            today = time.strftime("%Y-%m-%d", time.gmtime())
            given = aq.parse_params(params)
            filled = aq.with_day_defaults(query.parameters, given, today)
            if filled != given:
                say(f"from_day / to_day not given: {today} (today, UTC)")
            text = aq.render(query.sql, filled)
        else:
            if params:
                raise aq.QueryError("--param is for --named queries")
            text = str(sql)
        # One read-only query over the stack's tables, named ones too (a workgroup's copy can be edited).
        aq.guard(text, target)
        with STDERR.status(f"query in workgroup {target.workgroup} ...", spinner="dots") as spinner:
            result = aq.run_query(athena, text, target, on_state=lambda state, elapsed: spinner.update(
                f"query in workgroup {target.workgroup}: {state} ({elapsed:.1f} s)"))
    except aq.QueryError as exc:
        return failed("query", exc, stack, as_json)
    emulated = bool(tool_settings().endpoint_url)
    if emulated:
        result.notes.append("emulator: ministack runs Athena on DuckDB and reports the size of the result "
                            "rows as bytes scanned, not the bytes read (docs/querying.md)")
        with contextlib.suppress(Exception):  # best effort: the listing only explains the figure
            s3 = aws.client("s3")
            for prefix in ("processed/", "compacted/", "quarantine/"):
                held = aq.archive_footprint(s3, outputs["ArchiveBucketName"], prefix)
                result.notes.append(f"the archive holds {held.objects} objects, {aq.human_bytes(held.bytes)} "
                                    f"under {prefix} (all read by a query without a dt filter)")
    if as_json:
        print(json.dumps(result.to_json(), sort_keys=True, default=str))
    else:
        print(aq.render_table(result.columns, result.rows))
        print(f"({len(result.rows)} rows)")
    say(f"{aq.human_bytes(result.bytes_scanned)} scanned, {result.engine_ms} ms engine time, "
         f"execution {result.execution_id}")
    for note in result.notes:
        say(note)
    return 0


def cmd_compact(stack: str, hours: list[str], all_hours: bool, force: bool, as_json: bool) -> int:
    """Invoke the stack's compactor (functions/compactor) on hours; a table (or JSON) of what it wrote."""
    from iotpipe.ops import archive_compaction as ac
    from iotpipe.ops.athena_query import human_bytes, render_table

    use_running_emulator(say)
    try:
        if hours and all_hours:
            raise ac.CompactionError("give --hour or --all, not both")
        try:
            outputs = stack_outputs(stack)
        except Exception as exc:
            raise ac.CompactionError(f"cannot read stack {stack!r} on this target: {exc}") from exc
        function = outputs.get("CompactorFunctionName")
        if not function:
            raise ac.CompactionError(
                f"stack {stack!r} has no compactor (deployed with ArchiveCompaction=disabled?)")
        wanted: list[str] | None = hours or None
        if all_hours:
            wanted = ac.archived_hours(aws.client("s3"), outputs["ArchiveBucketName"])
            say(f"{len(wanted)} archived hours")
            if not force:
                settle = ac.settle_minutes(aws.client("lambda"), function)
                wanted, still_open = ac.split_open(wanted, int(time.time() * 1000), settle)
                if still_open:
                    say(f"left alone, still open (written to, or ended less than {settle} min ago): "
                         f"{', '.join(still_open)}; --force or --hour HOUR compacts them now")
        with STDERR.status(f"compacting with {function} ...", spinner="dots") as spinner:
            def update(done: int, total: int) -> None:
                spinner.update(f"compacted {done}/{total} hours")

            results = ac.compact(aws.client("lambda"), function, wanted, force, on_progress=update)
    except ac.CompactionError as exc:
        return failed("compaction", exc, stack, as_json)
    total = ac.summary(results)
    if as_json:
        print(json.dumps({"results": results, "summary": total}, sort_keys=True))
        return 0
    rows = [[f"{r['dt']}T{r['hour']}", r["action"], r["inputs"], r["rows_in"], r["rows_out"],
             human_bytes(int(r["bytes_in"])), human_bytes(int(r["bytes_out"]))]
            for r in results if r["action"] != "empty"]
    print(render_table(["hour", "action", "objects", "lines", "rows", "json gzip", "parquet"], rows))
    ratio = f", {total['ratio']}x smaller" if total["ratio"] else ""
    say(f"{total['compacted']} compacted, {total['unchanged']} unchanged, {total['empty']} without input; "
         f"{human_bytes(total['bytes_in'])} of JSON -> {human_bytes(total['bytes_out'])} of Parquet{ratio}")
    return 0
