"""``iotpipe``: run the pipeline on the embedded emulator, deploy it, and look at it.

    iotpipe up [--devices N] [--rate HZ] [--shards N] [--parallelization N] [--port P] [--fresh]
               [--detector embedded|sagemaker]                   emulator + deploy + seed + simulator + API
                                                                 (sagemaker: + the local model server)
    iotpipe down                                                 stop what `up` started (by its pid)
    iotpipe deploy [--target embedded|localstack|aws] [...]      scripts/deploy.sh
    iotpipe status [--json] [--stack NAME]                       outputs and pipeline counts
    iotpipe rebuild [--json] [--stack NAME]                      aggregates + anomalies from the archive
    iotpipe query "SELECT ..." | --named NAME [--param K=V] [--json]  SQL over the archive (Athena)
    iotpipe archive compact [--hour YYYY-MM-DDTHH ... | --all] [--force] [--json]  Parquet per hour
    iotpipe model evaluate                                       leave-one-family-out (SKAB, TEP, simulator)
    iotpipe model evaluate --dataset skab|tep|simulator [...]    one data set (see docs/model-card.md)
    iotpipe model evaluate --select-on DIR... --report-on DIR... choose on some folders, report once on others
    iotpipe model train --source simulator|csv [--csv FILE]       the fleet forest (model/train.py)
    iotpipe model calibrate --device ID (--csv FILE | --from-archive) per-device PCA T2+Q onto the device item
    iotpipe model calibrate --pending                            every requesting device, N readings archived
    iotpipe model operating-point [--write]                     re-derive model/artifacts/pca-tq-v2.json
    iotpipe model replay-eval FILE|DIR...                        SKAB through the deployed pipeline vs offline
    iotpipe cost --devices N --rate R [--json]                   monthly AWS cost model
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from iotpipe.console import STDERR, progress, progress_callback, run_app
from iotpipe.local.emulator import PIDFILE, RUN_DIR, Emulator, EmulatorError, healthy
from iotpipe.local.model_server import ModelServer, ModelServerError
from iotpipe.local.ports import port_free, port_holder
from iotpipe.ops.stack import ROOT, deploy, stack_outputs

CHILDREN = RUN_DIR / "children.json"  # pids of the simulator and local API that `up` started
# Present while an emulator started by `up` runs; left behind when it died (or `up` was killed), which
# tells the next `up` to rebuild from the archive what the last state snapshot may not hold.
UNCLEAN = RUN_DIR / "emulator.unclean"
EXIT_EMULATOR_DIED = 3


class _Terminal:
    # Set when writing progress fails with EIO: the terminal `up` runs in was closed. `up` then stops what
    # it started (with the terminal's foreground taken, no SIGHUP reaches it: own_terminal_foreground).
    gone = False


def _say(message: str) -> None:
    # A closed terminal must not stop `up` from stopping what it started: writing to it fails.
    try:
        print(f"[iotpipe] {message}", file=sys.stderr, flush=True)
    except OSError as exc:
        if exc.errno == errno.EIO:
            _Terminal.gone = True


def _busy_ports(args: UpOptions) -> list[str]:
    """One line per port `up` was asked to use that another process holds (the run is refused: a port
    silently replaced would leave every URL the user was told, or scripted, dead)."""
    wanted = (("emulator", args.port, "EMULATOR_PORT=N make up, or --port N"),
              ("local API", args.api_port, "API_PORT=N make up, or --api-port N"),
              ("simulator control", args.control_port, "SIM_CONTROL_PORT=N make up, or --control-port N"))
    return [f"port {port} ({name}) is in use by {port_holder(port)}; stop it, or choose another: {how}"
            for name, port, how in wanted if not port_free(port)]


# ------------------------------------------------------------------------------------------ up
def scale_params(shards: int, parallelization: int) -> list[str]:
    """deploy.sh arguments for the stream's shard count and the mapping's ParallelizationFactor."""
    if not 1 <= shards <= 64 or not 1 <= parallelization <= 10:
        raise SystemExit(f"--shards must be 1..64, --parallelization 1..10 (got {shards}, {parallelization})")
    return ["--param", f"ShardCount={shards}", "--param", f"ParallelizationFactor={parallelization}"]


@dataclass(frozen=True)
class UpOptions:
    stack: str
    port: int
    devices: int
    rate: float
    seed: int
    shards: int
    parallelization: int
    anomaly_rate: float
    malformed_rate: float
    control_port: int
    api_port: int
    interval: float  # seconds between progress lines
    duration: float  # stop after this many seconds (0: run)
    fresh: bool
    snapshot: float
    verbose: bool
    detector: str = "embedded"  # "sagemaker": the processor scores through the local model server


def detector_params(server: ModelServer | None) -> list[str]:
    """deploy.sh arguments for the detector backend, always explicit: a stack deployed before with the
    other backend keeps its parameter values otherwise (CloudFormation reuses them on update)."""
    if server is not None:
        return server.deploy_params()
    params = ["DetectorBackend=embedded", "SageMakerEndpointName=", "SageMakerRuntimeUrl="]
    return [arg for p in params for arg in ("--param", p)]


def cmd_up(args: UpOptions) -> int:
    existing = Emulator.from_pidfile()
    if existing and healthy(existing.endpoint):
        _say(f"an emulator started by 'iotpipe up' is still running (pid {existing.pid}); "
             "run 'iotpipe down' first")
        return 1
    state_dir = RUN_DIR / "emulator"
    if args.fresh and state_dir.exists():
        shutil.rmtree(state_dir)
    busy = _busy_ports(args)
    if busy:
        for line in busy:
            _say(line)
        return 1
    port = args.port
    started: list[subprocess.Popen[bytes]] = []
    emulator = Emulator(port=port, state_dir=state_dir, persist=True, snapshot_s=args.snapshot)
    server = (ModelServer(log_path=RUN_DIR / "model-server.log") if args.detector == "sagemaker" else None)
    recovering = UNCLEAN.exists() and not args.fresh
    if args.fresh:
        UNCLEAN.unlink(missing_ok=True)

    def stop_all() -> None:
        for proc in reversed(started):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in reversed(started):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if server is not None:
            server.stop()
        died = emulator.died() is not None
        emulator.stop()
        if not died:  # a clean stop saved the whole state
            UNCLEAN.unlink(missing_ok=True)
        PIDFILE.unlink(missing_ok=True)
        CHILDREN.unlink(missing_ok=True)

    # `kill`, `timeout` and a closed terminal stop everything too, not only Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    try:
        _say(f"[1/5] starting the embedded emulator (ministack) on 127.0.0.1:{port} ...")
        if recovering:
            _say("      the last emulator did not stop cleanly: restoring its last state snapshot; the "
                 "archive is kept and what the snapshot lacks is rebuilt from it after the deploy")
        emulator.start()
        if recovering:
            from iotpipe.ops.status import read_crash_window

            window = read_crash_window(state_dir)
            _say(f"      crash window: {window['text'] if window else 'unknown (no recovery report)'}")
        emulator.write_pidfile()
        UNCLEAN.write_text(str(emulator.pid))
        os.environ.update(emulator.client_env())
        _say(f"      emulator ready: {emulator.endpoint} (pid {emulator.pid}, state {state_dir})")

        if server is not None:
            RUN_DIR.mkdir(parents=True, exist_ok=True)
            server.start()
            _say(f"      model server (SageMaker contract, serving/): {server.url} (pid {server.pid}); the "
                 f"processor's sagemaker-runtime client calls it as endpoint '{server.endpoint_name}'")
        _say(f"[2/5] deploying stack '{args.stack}' with scripts/deploy.sh ...")
        # Shards and parallelism are template parameters (a re-run with other values updates the stream).
        # The deploy (build, package, create or update) takes a minute or two: a spinner says it is alive
        # (not with --verbose, whose deploy output would run through it).
        spinner = (contextlib.nullcontext() if args.verbose else
                   STDERR.status(f"deploying '{args.stack}' (scripts/deploy.sh) ...", spinner="dots"))
        with spinner:
            deploy(args.stack, target="embedded", quiet=not args.verbose,
                   extra_args=scale_params(args.shards, args.parallelization) + detector_params(server))
        outputs = stack_outputs(args.stack)
        _say(f"      stack {outputs['StackStatus']}: stream {outputs['StreamName']}")

        sim_env = _simulator_env(args, outputs)
        _say(f"[3/5] registering {args.devices} simulated devices ...")
        subprocess.run([sys.executable, "-m", "simulator", "register"], env=sim_env, check=True)
        if recovering:
            _rebuild_after_crash(args.stack)

        _say(f"[4/5] simulator: {args.devices} devices x {args.rate} Hz -> Kinesis "
             f"(tune live: curl -X POST 127.0.0.1:{args.control_port}/config -d '{{\"rate_hz\": 2}}')")
        sim_log = open(RUN_DIR / "simulator.log", "ab")  # noqa: SIM115 - owned by the child
        started.append(subprocess.Popen([sys.executable, "-m", "simulator", "run"], env=sim_env,
                                        stdout=sim_log, stderr=subprocess.STDOUT))

        api, local_api = _start_local_api(args, outputs)
        if api is not None:
            started.append(api)
        # `iotpipe down` from another terminal stops these by their pids.
        CHILDREN.write_text(json.dumps([p.pid for p in started] + ([server.pid] if server else [])))
        _say_api(outputs, local_api)
        return _watch(args, started, emulator, server)
    except (EmulatorError, ModelServerError, RuntimeError, subprocess.CalledProcessError) as exc:
        _say(f"failed: {exc}")
        _say("(emulator state is kept between runs; 'iotpipe up --fresh' starts from an empty one)")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        _say("stopping simulator, API, model server and emulator ..." if server else
             "stopping simulator, API and emulator ...")
        stop_all()
        _say("stopped")


def _simulator_env(args: UpOptions, outputs: dict[str, str]) -> dict[str, str]:
    return {
        **os.environ,
        "SIM_DEVICES": str(args.devices),
        "SIM_RATE_HZ": str(args.rate),
        "SIM_SEED": str(args.seed),
        "SIM_SINK": "kinesis",
        "SIM_STREAM_NAME": outputs["StreamName"],
        "SIM_DEVICES_TABLE": outputs["DevicesTableName"],
        "SIM_CONTROL_PORT": str(args.control_port),
        "SIM_ANOMALY_RATE": str(args.anomaly_rate),
        "SIM_MALFORMED_RATE": str(args.malformed_rate),
    }


def _rebuild_after_crash(stack: str) -> None:
    """What the last state snapshot lacks, re-derived from the archive (exactly once)."""
    from iotpipe.ops.rebuild import rebuild_stack

    _say("      rebuilding aggregates and anomalies from the archive (exactly once) ...")
    with progress(transient=True) as bar:
        report = rebuild_stack(stack, say=lambda m: _say(f"      {m}"),
                               on_progress=progress_callback(bar, "rebuilding windows"))
    _say(f"      rebuilt: {report.readings_applied} readings into {report.windows_written} windows "
         f"({report.already_present} were in the snapshot), {report.anomalies_stored} anomalies, "
         f"in {report.duration_s:.1f} s")


def _start_local_api(args: UpOptions, outputs: dict[str, str]) -> tuple[subprocess.Popen[bytes] | None, str]:
    """The query API served by uvicorn on 127.0.0.1 beside the emulator's API Gateway: (process, URL)."""
    if not (ROOT / "functions" / "api" / "main.py").exists():
        return None, ""
    api_env = {
        **os.environ,
        "DEVICES_TABLE": outputs["DevicesTableName"],
        "AGGREGATES_TABLE": outputs["AggregatesTableName"],
        "ANOMALIES_TABLE": outputs["AnomaliesTableName"],
        "STACK_NAME": args.stack,
        "API_KEY": outputs.get("ApiKey", ""),
    }
    api_port = args.api_port  # checked free before anything started (_busy_ports)
    api_log = open(RUN_DIR / "api.log", "ab")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "functions.api.main:app", "--host", "127.0.0.1",
         "--port", str(api_port)], env=api_env, stdout=api_log, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{api_port}"


def _say_api(outputs: dict[str, str], local_api: str) -> None:
    _say("[5/5] API")
    _say(f"      through the emulator's API Gateway: {outputs['ApiUrl']}")
    if local_api:
        _say(f"      served locally by uvicorn:          {local_api}")
    _say(f"      x-api-key: {outputs.get('ApiKey', '')}")
    _say(f"      live view: {outputs['ApiUrl']}/dashboard   docs: {outputs['ApiUrl']}/docs")
    _say("running; Ctrl-C stops everything this command started")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def own_terminal_foreground() -> Iterator[None]:
    """Make this process group the terminal's foreground while inside, when run by another program.

    Ctrl-C signals the terminal's whole foreground process group: under `make up`, make gets SIGINT
    too and exits with "Interrupt" (130) whatever `up` then does, though `up` stops cleanly. In a group
    of its own that owns the terminal, `up` (and the children it starts) get Ctrl-C and make does not:
    `up` stops everything, exits 0, and make with it. The terminal is handed back on the way out. Not a
    terminal, or already a group leader (started by a shell): nothing to do.
    """
    try:
        fd = sys.stdin.fileno()
        take = os.isatty(fd) and os.getpgrp() != os.getpid() and os.tcgetpgrp(fd) == os.getpgrp()
    except (OSError, ValueError):
        take = False
    if not take:
        yield
        return
    previous = os.getpgrp()
    # A background group that sets the terminal's foreground gets SIGTTOU: ignored for the hand-back.
    old_ttou = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        os.setpgid(0, 0)
        os.tcsetpgrp(fd, os.getpgrp())
    except OSError:
        pass
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.tcsetpgrp(fd, previous)
        signal.signal(signal.SIGTTOU, old_ttou)


def _exit_text(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exited with status {code}"


def _snapshot_age(emulator: Emulator) -> str:
    try:
        marker = json.loads((emulator.state_dir / "state" / "iotpipe-snapshot.json").read_text())
    except (OSError, ValueError):
        return "none taken"
    return f"{time.time() - float(marker['at']):.0f} s old"


def _watch(args: UpOptions, started: list[subprocess.Popen[bytes]], emulator: Emulator,
           server: ModelServer | None = None) -> int:
    """Progress lines, and supervision: a dead emulator or child stops everything, with the reason."""
    import datetime as dt

    from iotpipe.ops.status import RateMeter, collect, status_line

    names = {id(p): n for p, n in zip(started, ("simulator", "local API"), strict=False)}
    if server is not None and server.process is not None:
        started = [*started, server.process]
        names[id(server.process)] = "model server"
    deadline = time.monotonic() + args.duration if args.duration else None
    since = dt.datetime.now(dt.UTC)
    rate = RateMeter(time.monotonic())
    failures = 0  # consecutive status failures
    while deadline is None or time.monotonic() < deadline:
        time.sleep(args.interval)
        code = emulator.died()
        if code is not None:
            _say(f"the emulator (ministack, pid {emulator.pid}) {_exit_text(code)}: the pipeline is down. "
                 f"Its last state snapshot ({_snapshot_age(emulator)}) and the S3 archive are kept in "
                 f"{emulator.state_dir} "
                 f"(log: {emulator.state_dir / 'emulator.log'}). Stopping the simulator and the API.")
            _say("run 'make up' again: it restores the snapshot, adopts the archive and rebuilds from it "
                 "what the snapshot lacks (no --fresh needed)")
            return EXIT_EMULATOR_DIED
        for proc in started:
            if proc.poll() is not None:
                name = names.get(id(proc), "child")
                _say(f"the {name} (pid {proc.pid}) {_exit_text(proc.returncode)}; see {RUN_DIR}/*.log. "
                     "Stopping everything this command started.")
                return 1
        try:
            s = collect(args.stack, window_hours=1, since=since)
        except Exception as exc:  # status is best effort while the emulator is busy
            failures += 1
            alive = "" if failures < 3 or healthy(emulator.endpoint, timeout=5) else (
                f" (the emulator, pid {emulator.pid}, is running but has not answered its health check: "
                f"hung or overloaded; see {emulator.state_dir / 'emulator.log'})")
            _say(f"status unavailable: {exc}{alive}")
            continue
        failures = 0
        sim = _simulator_stats(args.control_port)
        _say(status_line(s, sim.get("produced", "?"), rate.add(time.monotonic(), s.readings_in_since)))
        if _Terminal.gone:
            return 1  # the terminal closed: stop everything (the finally of cmd_up)
    return 0


def _simulator_stats(port: int) -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=1) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError):
        return {}


# ------------------------------------------------------------------------------------------ down
def cmd_down() -> int:
    if CHILDREN.exists():
        for pid in json.loads(CHILDREN.read_text()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGINT)
        CHILDREN.unlink(missing_ok=True)
    emulator = Emulator.from_pidfile()
    if emulator is None:
        _say("nothing to stop (no emulator started by 'iotpipe up')")
        return 0
    _say(f"stopping emulator pid {emulator.pid}")
    emulator.stop()
    PIDFILE.unlink(missing_ok=True)
    return 0


# ------------------------------------------------------------------------------------------ deploy
def cmd_deploy(target: str, stack: str, yes: bool, dry_run: bool, params: list[str]) -> int:
    cmd = ["bash", str(ROOT / "scripts" / "deploy.sh"), "--target", target, "--stack", stack]
    if yes:
        cmd.append("--yes")
    if dry_run:
        cmd.append("--dry-run")
    for param in params:
        cmd += ["--param", param]
    if target == "embedded" and not os.environ.get("AWS_ENDPOINT_URL"):
        emulator = Emulator.from_pidfile()
        if emulator and healthy(emulator.endpoint):
            os.environ.update(emulator.client_env())
    if target != "aws" and not dry_run and os.environ.get("AWS_ENDPOINT_URL"):
        # A stack lost with the emulator's state leaves its retained archive bucket (iotpipe.local.recovery).
        from iotpipe.local.recovery import adopt_retained
        from iotpipe.ops.stack import _client

        adopt_retained(stack, _client, os.environ.get("AWS_REGION", "us-east-1"), say=_say)
    return subprocess.run(cmd, check=False).returncode


# ------------------------------------------------------------------------------------------ status
def _use_running_emulator() -> None:
    """Point the AWS clients at the emulator `iotpipe up` runs, unless AWS_ENDPOINT_URL names another
    endpoint that answers: one left in the shell from an earlier run (an emulator since restarted on
    another port) would make every command, and every URL it prints, point at a dead port."""
    emulator = Emulator.from_pidfile()
    if emulator is None or not healthy(emulator.endpoint):
        return
    current = os.environ.get("AWS_ENDPOINT_URL")
    if current and current.rstrip("/") != emulator.endpoint and not _answers(current):
        _say(f"AWS_ENDPOINT_URL={current} does not answer: using the emulator 'iotpipe up' runs, "
             f"{emulator.endpoint}")
        current = None
    if not current or current.rstrip("/") == emulator.endpoint:
        os.environ.update(emulator.client_env())


def _answers(url: str) -> bool:
    """Something accepts connections at the URL's host and port (any service: LocalStack, AWS, ...)."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "localhost",
                                       parts.port or (443 if parts.scheme == "https" else 80)), timeout=2):
            return True
    except OSError:
        return False


def cmd_rebuild(stack: str, as_json: bool) -> int:
    from iotpipe.ops.rebuild import main as rebuild_main

    _use_running_emulator()
    return rebuild_main(stack, as_json=as_json)


def cmd_status(stack: str, as_json: bool) -> int:
    from iotpipe.ops.status import collect, read_crash_window, render

    _use_running_emulator()
    try:
        status = collect(stack)
        emulator = Emulator.from_pidfile()
        if emulator is not None and os.environ.get("AWS_ENDPOINT_URL") == emulator.endpoint:
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


def _failed(what: str, exc: Exception, stack: str, as_json: bool) -> int:
    """A command's one-line failure: a JSON object on stdout with --json, else a line on stderr; status 1."""
    if as_json:
        print(json.dumps({"error": str(exc), "stack": stack}))
    else:
        _say(f"{what} failed: {exc}")
    return 1


def cmd_query(stack: str, sql: str | None, named: str | None, params: list[str], as_json: bool,
              list_named: bool) -> int:
    """SQL over the archive on the current target; progress on stderr, the table (or JSON) on stdout."""
    from iotpipe.ops import athena_query as aq
    from iotpipe.ops.stack import _client

    _use_running_emulator()
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
        athena = _client("athena")
        if named:
            query = aq.named_query(athena, target.workgroup, named)
            today = time.strftime("%Y-%m-%d", time.gmtime())
            given = aq.parse_params(params)
            filled = aq.with_day_defaults(query.parameters, given, today)
            if filled != given:
                _say(f"from_day / to_day not given: {today} (today, UTC)")
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
        return _failed("query", exc, stack, as_json)
    emulated = bool(os.environ.get("AWS_ENDPOINT_URL"))
    if emulated:
        result.notes.append("emulator: ministack runs Athena on DuckDB and reports the size of the result "
                            "rows as bytes scanned, not the bytes read (docs/querying.md)")
        with contextlib.suppress(Exception):  # best effort: the listing only explains the figure
            s3 = _client("s3")
            for prefix in ("processed/", "compacted/", "quarantine/"):
                held = aq.archive_footprint(s3, outputs["ArchiveBucketName"], prefix)
                result.notes.append(f"the archive holds {held.objects} objects, {aq.human_bytes(held.bytes)} "
                                    f"under {prefix} (all read by a query without a dt filter)")
    if as_json:
        print(json.dumps(result.to_json(), sort_keys=True, default=str))
    else:
        print(aq.render_table(result.columns, result.rows))
        print(f"({len(result.rows)} rows)")
    _say(f"{aq.human_bytes(result.bytes_scanned)} scanned, {result.engine_ms} ms engine time, "
         f"execution {result.execution_id}")
    for note in result.notes:
        _say(note)
    return 0


def cmd_compact(stack: str, hours: list[str], all_hours: bool, force: bool, as_json: bool) -> int:
    """Invoke the stack's compactor (functions/compactor) on hours; a table (or JSON) of what it wrote."""
    from iotpipe.ops import archive_compaction as ac
    from iotpipe.ops.athena_query import human_bytes, render_table
    from iotpipe.ops.stack import _client

    _use_running_emulator()
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
            wanted = ac.archived_hours(_client("s3"), outputs["ArchiveBucketName"])
            _say(f"{len(wanted)} archived hours")
            if not force:
                settle = ac.settle_minutes(_client("lambda"), function)
                wanted, still_open = ac.split_open(wanted, int(time.time() * 1000), settle)
                if still_open:
                    _say(f"left alone, still open (written to, or ended less than {settle} min ago): "
                         f"{', '.join(still_open)}; --force or --hour HOUR compacts them now")
        with STDERR.status(f"compacting with {function} ...", spinner="dots") as spinner:
            def update(done: int, total: int) -> None:
                spinner.update(f"compacted {done}/{total} hours")

            results = ac.compact(_client("lambda"), function, wanted, force, on_progress=update)
    except ac.CompactionError as exc:
        return _failed("compaction", exc, stack, as_json)
    total = ac.summary(results)
    if as_json:
        print(json.dumps({"results": results, "summary": total}, sort_keys=True))
        return 0
    rows = [[f"{r['dt']}T{r['hour']}", r["action"], r["inputs"], r["rows_in"], r["rows_out"],
             human_bytes(int(r["bytes_in"])), human_bytes(int(r["bytes_out"]))]
            for r in results if r["action"] != "empty"]
    print(render_table(["hour", "action", "objects", "lines", "rows", "json gzip", "parquet"], rows))
    ratio = f", {total['ratio']}x smaller" if total["ratio"] else ""
    _say(f"{total['compacted']} compacted, {total['unchanged']} unchanged, {total['empty']} without input; "
         f"{human_bytes(total['bytes_in'])} of JSON -> {human_bytes(total['bytes_out'])} of Parquet{ratio}")
    return 0


# ------------------------------------------------------------------------------------------ commands
app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="run the pipeline on the embedded emulator, deploy it, and look at it",
                  context_settings={"help_option_names": ["-h", "--help"]})
model_app = typer.Typer(add_completion=False, no_args_is_help=True, help="model commands")
app.add_typer(model_app, name="model")
archive_app = typer.Typer(add_completion=False, no_args_is_help=True, help="the S3 archive")
app.add_typer(archive_app, name="archive")

# Options whose default comes from the environment (as `make up` and the compose file pass them).
StackOption = Annotated[str, typer.Option(envvar="STACK_NAME", help="CloudFormation stack name")]
JsonOption = Annotated[bool, typer.Option("--json", help="one JSON object (for scripts)")]
# `cost` and `model evaluate` parse their own options: everything after the command is theirs.
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


class Detector(StrEnum):
    embedded = "embedded"
    sagemaker = "sagemaker"


class Target(StrEnum):
    embedded = "embedded"
    localstack = "localstack"
    aws = "aws"


@app.command(help="run the whole pipeline on the embedded emulator")
def up(
    stack: StackOption = "iotpipe",
    port: Annotated[int, typer.Option(envvar="EMULATOR_PORT")] = 4566,
    devices: Annotated[int, typer.Option(envvar="SIM_DEVICES")] = 20,
    rate: Annotated[float, typer.Option(envvar="SIM_RATE_HZ")] = 1.0,
    seed: Annotated[int, typer.Option(envvar="SIM_SEED")] = 42,
    shards: Annotated[int, typer.Option(envvar="SHARD_COUNT",
                                        help="Kinesis shards (template parameter ShardCount)")] = 1,
    parallelization: Annotated[int, typer.Option(
        envvar="PARALLELIZATION_FACTOR",
        help="concurrent batches per shard (ParallelizationFactor; the emulators run 1)")] = 1,
    anomaly_rate: Annotated[float, typer.Option(envvar="SIM_ANOMALY_RATE")] = 0.01,
    malformed_rate: Annotated[float, typer.Option(envvar="SIM_MALFORMED_RATE")] = 0.01,
    control_port: Annotated[int, typer.Option(envvar="SIM_CONTROL_PORT")] = 8765,
    api_port: Annotated[int, typer.Option(envvar="API_PORT")] = 8000,
    interval: Annotated[float, typer.Option(help="seconds between progress lines")] = 5.0,
    duration: Annotated[float, typer.Option(help="stop after this many seconds (0: run)")] = 0.0,
    fresh: Annotated[bool, typer.Option("--fresh", help="discard the emulator's saved state first")] = False,
    snapshot: Annotated[float, typer.Option(
        envvar="EMULATOR_SNAPSHOT_S",
        help="seconds between emulator state snapshots (0: only on a clean stop)")] = 30.0,
    verbose: Annotated[bool, typer.Option("--verbose", help="show the deploy script's output")] = False,
    detector: Annotated[Detector, typer.Option(
        envvar="DETECTOR_BACKEND",
        help="embedded (in the processor) or sagemaker (through the local model server, serving/)")
    ] = Detector.embedded,
) -> int:
    with own_terminal_foreground():
        return cmd_up(UpOptions(
            stack=stack, port=port, devices=devices, rate=rate, seed=seed, shards=shards,
            parallelization=parallelization, anomaly_rate=anomaly_rate, malformed_rate=malformed_rate,
            control_port=control_port, api_port=api_port, interval=interval, duration=duration, fresh=fresh,
            snapshot=snapshot, verbose=verbose, detector=detector.value,
        ))


@app.command(help="stop what 'iotpipe up' started")
def down() -> int:
    return cmd_down()


@app.command(name="deploy", help="build, package and deploy the template")
def deploy_command(
    target: Target = Target.embedded,
    stack: StackOption = "iotpipe",
    yes: Annotated[bool, typer.Option("--yes")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run")] = False,
    param: Annotated[list[str] | None, typer.Option(metavar="KEY=VALUE", help="a template parameter")] = None,
) -> int:
    return cmd_deploy(target.value, stack, yes, dry_run, param or [])


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


@model_app.command(context_settings=PASS_THROUGH, add_help_option=False,
                   help="model evaluation (see docs/model-card.md; its own --help)")
def evaluate(ctx: typer.Context) -> int:
    from model.evaluate import main as evaluate_main

    return int(evaluate_main(list(ctx.args)))


def cmd_calibrate_pending(stack: str, mapping: str | None) -> int:
    """Calibrate every device registered with a calibration request whose first N readings are archived.

    Invokes the stack's calibrator (functions/calibrator, the code its schedule runs) on the pending
    devices; with ``--mapping`` (channel names the deployed function does not know) the same module runs
    here instead."""
    from functions.adapters.devices import DynamoDeviceRegistry
    from iotpipe.ops.stack import _client
    from model import device_calibration as dc
    from simulator.replay import parse_mapping

    _use_running_emulator()
    outputs = stack_outputs(stack)
    registry = DynamoDeviceRegistry(outputs["DevicesTableName"], _client("dynamodb"))
    items, start = [], None
    while True:
        page = registry.scan(500, start)
        items.extend(page.items)
        start = page.last_key
        if start is None:
            break
    wanted = dc.pending(items)
    _say(f"{len(wanted)} device(s) with a calibration request and no calibration")
    function = outputs.get("CalibratorFunctionName")
    if mapping or not function:
        _say("calibrating here: " + ("--mapping given" if mapping else "the stack has no calibrator"))
        result = dc.calibrate_pending(items, _client("s3"), outputs["ArchiveBucketName"], registry,
                                      parse_mapping(mapping) if mapping else dc.SKAB_MAPPING)
    elif wanted:
        _say(f"invoking {function} ...")
        try:
            result = dc.invoke_calibrator(_client("lambda"), function, sorted(wanted)).get("devices", {})
        except dc.CalibratorError as exc:
            print(str(exc), file=sys.stderr)
            return 1
    else:
        result = {}
    print(json.dumps(result, sort_keys=True))
    return 0


def cmd_calibrate(device: str | None, csv_path: Path | None, from_archive: bool, mapping: str | None,
                  rows: int, stack: str, pending: bool = False) -> int:
    """Fit the device's calibration (shipped operating point) and write it to its item on the stack."""
    if pending:
        if device or csv_path or from_archive:
            print("--pending calibrates every requesting device: no --device/--csv/--from-archive",
                  file=sys.stderr)
            return 2
        return cmd_calibrate_pending(stack, mapping)
    if not device:
        print("give --device ID (or --pending)", file=sys.stderr)
        return 2
    from functions.adapters.devices import DynamoDeviceRegistry
    from functions.core.errors import VersionConflict
    from iotpipe.ops.stack import _client
    from model import device_calibration as dc
    from simulator.replay import SKAB_MAPPING, parse_mapping

    if (csv_path is None) == (not from_archive):
        print("give exactly one of --csv FILE or --from-archive", file=sys.stderr)
        return 2
    _use_running_emulator()
    outputs = stack_outputs(stack)
    channel_map = parse_mapping(mapping) if mapping else SKAB_MAPPING
    if csv_path is not None:
        source = f"csv:{csv_path.name}"
        data = dc.csv_rows(csv_path, channel_map)
    else:
        source = "archive"
        _say(f"reading s3://{outputs['ArchiveBucketName']}/processed/ for {device} ...")
        data = dc.archive_rows(_client("s3"), outputs["ArchiveBucketName"], device)
    registry = DynamoDeviceRegistry(outputs["DevicesTableName"], _client("dynamodb"))
    try:
        stored = dc.calibrate_device(device, data, registry, rows, source, channel_map)
    except ValueError as exc:
        print(f"calibration failed: {exc}", file=sys.stderr)
        return 1
    except VersionConflict:
        table = outputs["DevicesTableName"]
        print(f"calibration not stored: no device {device!r} in {table}", file=sys.stderr)
        return 1
    print(json.dumps({"device_id": device, "rows": stored["calibration_rows"], "source": source,
                      "operating_point": stored["operating_point"], "channels": stored["channels"],
                      "t2_limit": stored["t2_limit"], "q_limit": stored["q_limit"]}, sort_keys=True))
    return 0


@model_app.command(context_settings=PASS_THROUGH, add_help_option=False,
                   help="train the fleet forest (iforest-v1.json): simulator or CSV (its own --help)")
def train(ctx: typer.Context) -> int:
    from model.train import main as train_main

    return int(train_main(list(ctx.args)))


@model_app.command(name="calibrate", help="fit a device's PCA T2+Q calibration and store it on its item")
def calibrate_command(
    device: Annotated[str | None, typer.Option("--device", help="the device id (registered)")] = None,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="a recording (SKAB format)")] = None,
    from_archive: Annotated[bool, typer.Option("--from-archive",
                                               help="the device's first readings in the S3 archive")] = False,
    mapping: Annotated[str | None, typer.Option(help="Column=channel[*scale][+offset],... (replay)")] = None,
    rows: Annotated[int, typer.Option(help="calibration readings (the device's first N)")] = 400,
    pending: Annotated[bool, typer.Option(
        "--pending", help="every device registered with calibration_request, N readings archived")] = False,
    stack: StackOption = "iotpipe",
) -> int:
    return cmd_calibrate(device, csv_path, from_archive, mapping, rows, stack, pending)


@model_app.command(name="replay-eval",
                   help="replay SKAB files through the deployed pipeline, score its anomalies vs labels")
def replay_eval_command(
    files: Annotated[list[Path], typer.Argument(help="SKAB CSV files or folders")],
    rows: Annotated[int, typer.Option(help="calibration rows per file")] = 400,
    step_ms: Annotated[int, typer.Option(help="event-time spacing of replayed rows")] = 100,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the archive per phase")] = 600.0,
    stack: StackOption = "iotpipe",
) -> int:
    from iotpipe.ops.replay_eval import replay_eval
    from model.skab import find_files

    paths = [p for f in files for p in (sorted(find_files(f)) if f.is_dir() else [f])]
    _use_running_emulator()
    result = replay_eval(stack, paths, rows=rows, step_ms=step_ms, timeout_s=timeout)
    print(json.dumps(result, sort_keys=True))
    return 0


@model_app.command(name="operating-point",
                   help="choose the per-device detector's operating point (model/artifacts/pca-tq-v2.json)")
def operating_point_command(
    skab_dir: Annotated[Path | None, typer.Option(
        help="SKAB folder (default ../shared/datasets/skab)")] = None,
    tep_dir: Annotated[Path | None, typer.Option(help="TEP folder (default ../shared/datasets/tep)")] = None,
    write: Annotated[bool, typer.Option("--write", help="overwrite model/artifacts/pca-tq-v2.json")] = False,
) -> int:
    from model import generalization as g
    from model import operating_point as op

    artifact = op.choose(g.Sources(skab_dir or g.default_skab_dir(), tep_dir or g.default_tep_dir()))
    print(json.dumps(artifact, sort_keys=True))
    if write:
        op.write(artifact)
        _say(f"wrote {op.ARTIFACT}")
    return 0


@app.command(context_settings=PASS_THROUGH, add_help_option=False,
             help="monthly AWS cost model (its own --help)")
def cost(ctx: typer.Context) -> int:
    from iotpipe.cost import main as cost_main

    return int(cost_main(list(ctx.args)))


def main(argv: list[str] | None = None) -> int:
    return run_app(app, argv, prog_name="iotpipe")


if __name__ == "__main__":
    raise SystemExit(main())
