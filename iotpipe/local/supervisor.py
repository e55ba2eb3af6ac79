"""The process supervisor of ``iotpipe up``: the emulator, the stack, the simulator and the local API.

``up`` starts the embedded emulator (restoring its last snapshot, and rebuilding from the archive what
the snapshot lacks after an unclean stop), deploys the stack, registers and runs the simulator, serves
the query API with uvicorn, then prints progress lines and watches every process it started: one that
dies stops everything, with the reason. Ctrl-C, SIGTERM, SIGHUP and a closed terminal stop it all too.
``down`` (another terminal) stops what ``up`` started, by the pids it recorded.
"""

from __future__ import annotations

import contextlib
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

from iotpipe.console import STDERR, progress, progress_callback, say, terminal_gone
from iotpipe.local.emulator import PIDFILE, RUN_DIR, Emulator, EmulatorError, healthy
from iotpipe.local.model_server import ModelServer, ModelServerError
from iotpipe.local.ports import port_free, port_holder
from iotpipe.ops.stack import deploy, stack_outputs
from iotpipe.settings import ROOT, child_env, use_endpoint

CHILDREN = RUN_DIR / "children.json"  # pids of the simulator and local API that `up` started
# Present while an emulator started by `up` runs; left behind when it died (or `up` was killed), which
# tells the next `up` to rebuild from the archive what the last state snapshot may not hold.
UNCLEAN = RUN_DIR / "emulator.unclean"
EXIT_EMULATOR_DIED = 3


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
    sink: str = "kinesis"  # "mqtt": each simulated device publishes over mTLS MQTT as its own IoT thing


def detector_params(server: ModelServer | None) -> list[str]:
    """deploy.sh arguments for the detector backend, always explicit: a stack deployed before with the
    other backend keeps its parameter values otherwise (CloudFormation reuses them on update)."""
    if server is not None:
        return server.deploy_params()
    params = ["DetectorBackend=embedded", "SageMakerEndpointName=", "SageMakerRuntimeUrl="]
    return [arg for p in params for arg in ("--param", p)]


def up(args: UpOptions) -> int:
    existing = Emulator.from_pidfile()
    if existing and healthy(existing.endpoint):
        say(f"an emulator started by 'iotpipe up' is still running (pid {existing.pid}); "
             "run 'iotpipe down' first")
        return 1
    state_dir = RUN_DIR / "emulator"
    if args.fresh and state_dir.exists():
        shutil.rmtree(state_dir)
    busy = _busy_ports(args)
    if busy:
        for line in busy:
            say(line)
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
        say(f"[1/5] starting the embedded emulator (ministack) on 127.0.0.1:{port} ...")
        if recovering:
            say("      the last emulator did not stop cleanly: restoring its last state snapshot; the "
                 "archive is kept and what the snapshot lacks is rebuilt from it after the deploy")
        emulator.start()
        if recovering:
            from iotpipe.ops.status import read_crash_window

            window = read_crash_window(state_dir)
            say(f"      crash window: {window['text'] if window else 'unknown (no recovery report)'}")
        emulator.write_pidfile()
        UNCLEAN.write_text(str(emulator.pid))
        use_endpoint(emulator.client_env())
        say(f"      emulator ready: {emulator.endpoint} (pid {emulator.pid}, state {state_dir})")

        if server is not None:
            RUN_DIR.mkdir(parents=True, exist_ok=True)
            server.start()
            say(f"      model server (SageMaker contract, serving/): {server.url} (pid {server.pid}); the "
                 f"processor's sagemaker-runtime client calls it as endpoint '{server.endpoint_name}'")
        say(f"[2/5] deploying stack '{args.stack}' with scripts/deploy.sh ...")
        # Shards and parallelism are template parameters (a re-run with other values updates the stream).
        # The deploy (build, package, create or update) takes a minute or two: a spinner says it is alive
        # (not with --verbose, whose deploy output would run through it).
        spinner = (contextlib.nullcontext() if args.verbose else
                   STDERR.status(f"deploying '{args.stack}' (scripts/deploy.sh) ...", spinner="dots"))
        with spinner:
            deploy(args.stack, target="embedded", quiet=not args.verbose,
                   extra_args=scale_params(args.shards, args.parallelization) + detector_params(server))
        outputs = stack_outputs(args.stack)
        say(f"      stack {outputs['StackStatus']}: stream {outputs['StreamName']}")

        sim_env = _simulator_env(args, outputs)
        say(f"[3/5] registering {args.devices} simulated devices ...")
        subprocess.run([sys.executable, "-m", "simulator", "register"], env=sim_env, check=True)
        if args.sink == "mqtt":
            _provision_devices(args, outputs)
        if recovering:
            _rebuild_after_crash(args.stack)

        target = "MQTT (IoT Core, mTLS)" if args.sink == "mqtt" else "Kinesis"
        say(f"[4/5] simulator: {args.devices} devices x {args.rate} Hz -> {target} "
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
        say(f"failed: {exc}")
        say("(emulator state is kept between runs; 'iotpipe up --fresh' starts from an empty one)")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        say("stopping simulator, API, model server and emulator ..." if server else
             "stopping simulator, API and emulator ...")
        stop_all()
        say("stopped")


def _provision_devices(args: UpOptions, outputs: dict[str, str]) -> None:
    """An IoT thing and certificate for each simulated device that has none yet (iotpipe devices)."""
    from iotpipe.devices import provision
    from iotpipe.devices.registry import IotRegistry
    from simulator.fleet import device_id_for

    things = [device_id_for(i) for i in range(args.devices)]
    kept, created = provision.ensure(IotRegistry(), provision.default_key_dir(args.stack), things,
                                     outputs["IotDevicePolicyName"], outputs["IotReadingsTopicPrefix"])
    say(f"      MQTT identities: {created} provisioned, {kept} kept "
        f"({provision.default_key_dir(args.stack)})")


def _simulator_env(args: UpOptions, outputs: dict[str, str]) -> dict[str, str]:
    from iotpipe.devices.provision import default_key_dir

    return child_env({
        "SIM_DEVICES": str(args.devices),
        "SIM_RATE_HZ": str(args.rate),
        "SIM_SEED": str(args.seed),
        "SIM_SINK": args.sink,
        "SIM_MQTT_KEY_DIR": str(default_key_dir(args.stack)),
        "SIM_STREAM_NAME": outputs["StreamName"],
        "SIM_DEVICES_TABLE": outputs["DevicesTableName"],
        "SIM_CONTROL_PORT": str(args.control_port),
        "SIM_ANOMALY_RATE": str(args.anomaly_rate),
        "SIM_MALFORMED_RATE": str(args.malformed_rate),
    })


def _rebuild_after_crash(stack: str) -> None:
    """What the last state snapshot lacks, re-derived from the archive (exactly once)."""
    from iotpipe.ops.rebuild import rebuild_stack

    say("      rebuilding aggregates and anomalies from the archive (exactly once) ...")
    with progress(transient=True) as bar:
        report = rebuild_stack(stack, say=lambda m: say(f"      {m}"),
                               on_progress=progress_callback(bar, "rebuilding windows"))
    say(f"      rebuilt: {report.readings_applied} readings into {report.windows_written} windows "
         f"({report.already_present} were in the snapshot), {report.anomalies_stored} anomalies, "
         f"in {report.duration_s:.1f} s")


def _start_local_api(args: UpOptions, outputs: dict[str, str]) -> tuple[subprocess.Popen[bytes] | None, str]:
    """The query API served by uvicorn on 127.0.0.1 beside the emulator's API Gateway: (process, URL)."""
    if not (ROOT / "functions" / "api" / "main.py").exists():
        return None, ""
    api_env = child_env({
        "DEVICES_TABLE": outputs["DevicesTableName"],
        "AGGREGATES_TABLE": outputs["AggregatesTableName"],
        "ANOMALIES_TABLE": outputs["AnomaliesTableName"],
        "STACK_NAME": args.stack,
        "API_KEY": outputs.get("ApiKey", ""),
    })
    api_port = args.api_port  # checked free before anything started (_busy_ports)
    api_log = open(RUN_DIR / "api.log", "ab")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "functions.api.main:app", "--host", "127.0.0.1",
         "--port", str(api_port)], env=api_env, stdout=api_log, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{api_port}"


def _say_api(outputs: dict[str, str], local_api: str) -> None:
    say("[5/5] API")
    say(f"      through the emulator's API Gateway: {outputs['ApiUrl']}")
    if local_api:
        say(f"      served locally by uvicorn:          {local_api}")
    say(f"      x-api-key: {outputs.get('ApiKey', '')}")
    say(f"      live view: {outputs['ApiUrl']}/dashboard   docs: {outputs['ApiUrl']}/docs")
    say("running; Ctrl-C stops everything this command started")


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
            say(f"the emulator (ministack, pid {emulator.pid}) {_exit_text(code)}: the pipeline is down. "
                 f"Its last state snapshot ({_snapshot_age(emulator)}) and the S3 archive are kept in "
                 f"{emulator.state_dir} "
                 f"(log: {emulator.state_dir / 'emulator.log'}). Stopping the simulator and the API.")
            say("run 'make up' again: it restores the snapshot, adopts the archive and rebuilds from it "
                 "what the snapshot lacks (no --fresh needed)")
            return EXIT_EMULATOR_DIED
        for proc in started:
            if proc.poll() is not None:
                name = names.get(id(proc), "child")
                say(f"the {name} (pid {proc.pid}) {_exit_text(proc.returncode)}; see {RUN_DIR}/*.log. "
                     "Stopping everything this command started.")
                return 1
        try:
            s = collect(args.stack, window_hours=1, since=since)
        except Exception as exc:  # status is best effort while the emulator is busy
            failures += 1
            alive = "" if failures < 3 or healthy(emulator.endpoint, timeout=5) else (
                f" (the emulator, pid {emulator.pid}, is running but has not answered its health check: "
                f"hung or overloaded; see {emulator.state_dir / 'emulator.log'})")
            say(f"status unavailable: {exc}{alive}")
            continue
        failures = 0
        sim = _simulator_stats(args.control_port)
        say(status_line(s, sim.get("produced", "?"), rate.add(time.monotonic(), s.readings_in_since)))
        if terminal_gone():
            return 1  # the terminal closed: stop everything (the finally of up)
    return 0


def _simulator_stats(port: int) -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=1) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError):
        return {}



def down() -> int:
    if CHILDREN.exists():
        for pid in json.loads(CHILDREN.read_text()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGINT)
        CHILDREN.unlink(missing_ok=True)
    emulator = Emulator.from_pidfile()
    if emulator is None:
        say("nothing to stop (no emulator started by 'iotpipe up')")
        return 0
    say(f"stopping emulator pid {emulator.pid}")
    emulator.stop()
    PIDFILE.unlink(missing_ok=True)
    return 0
