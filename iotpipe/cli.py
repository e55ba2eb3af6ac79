"""``iotpipe``: run the pipeline on the embedded emulator, deploy it, and look at it.

    iotpipe up [--devices N] [--rate HZ] [--shards N] [--parallelization N] [--port P] [--fresh]
                                                                 emulator + deploy + seed + simulator + API
    iotpipe down                                                 stop what `up` started (by its pid)
    iotpipe deploy [--target embedded|localstack|aws] [...]      scripts/deploy.sh
    iotpipe status [--json] [--stack NAME]                       outputs and pipeline counts
    iotpipe rebuild [--json] [--stack NAME]                      aggregates + anomalies from the archive
    iotpipe model evaluate --dataset skab|simulator [...]        model evaluation (see docs/model-card.md)
    iotpipe cost --devices N --rate R [--json]                   monthly AWS cost model
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

from iotpipe.emulator import PIDFILE, RUN_DIR, Emulator, EmulatorError, free_port, healthy
from iotpipe.stack import ROOT, deploy, stack_outputs

DEFAULT_STACK = os.environ.get("STACK_NAME", "iotpipe")
CHILDREN = RUN_DIR / "children.json"  # pids of the simulator and local API that `up` started
# Present while an emulator started by `up` runs; left behind when it died (or `up` was killed), which
# tells the next `up` to rebuild from the archive what the last state snapshot may not hold.
UNCLEAN = RUN_DIR / "emulator.unclean"
EXIT_EMULATOR_DIED = 3


def _say(message: str) -> None:
    print(f"[iotpipe] {message}", file=sys.stderr, flush=True)


def _port_free(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# ------------------------------------------------------------------------------------------ up
def scale_params(shards: int, parallelization: int) -> list[str]:
    """deploy.sh arguments for the stream's shard count and the mapping's ParallelizationFactor."""
    if not 1 <= shards <= 64 or not 1 <= parallelization <= 10:
        raise SystemExit(f"--shards must be 1..64, --parallelization 1..10 (got {shards}, {parallelization})")
    return ["--param", f"ShardCount={shards}", "--param", f"ParallelizationFactor={parallelization}"]


def cmd_up(args: argparse.Namespace) -> int:
    existing = Emulator.from_pidfile()
    if existing and healthy(existing.endpoint):
        _say(f"an emulator started by 'iotpipe up' is still running (pid {existing.pid}); "
             "run 'iotpipe down' first")
        return 1
    state_dir = RUN_DIR / "emulator"
    if args.fresh and state_dir.exists():
        shutil.rmtree(state_dir)
    port = args.port if _port_free(args.port) else free_port()
    started: list[subprocess.Popen[bytes]] = []
    emulator = Emulator(port=port, state_dir=state_dir, persist=True, snapshot_s=args.snapshot)
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
        emulator.write_pidfile()
        UNCLEAN.write_text(str(emulator.pid))
        os.environ.update(emulator.client_env())
        _say(f"      emulator ready: {emulator.endpoint} (pid {emulator.pid}, state {state_dir})")

        _say(f"[2/5] deploying stack '{args.stack}' with scripts/deploy.sh ...")
        # Shards and parallelism are template parameters (a re-run with other values updates the stream).
        deploy(args.stack, target="embedded", quiet=not args.verbose,
               extra_args=scale_params(args.shards, args.parallelization))
        outputs = stack_outputs(args.stack)
        _say(f"      stack {outputs['StackStatus']}: stream {outputs['StreamName']}")

        sim_env = {
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
        _say(f"[3/5] registering {args.devices} simulated devices ...")
        subprocess.run([sys.executable, "-m", "simulator", "register"], env=sim_env, check=True)
        if recovering:
            from iotpipe.rebuild import rebuild_stack

            _say("      rebuilding aggregates and anomalies from the archive (exactly once) ...")
            report = rebuild_stack(args.stack, say=lambda m: _say(f"      {m}"))
            _say(f"      rebuilt: {report.readings_applied} readings into {report.windows_written} windows "
                 f"({report.already_present} were in the snapshot), {report.anomalies_stored} anomalies, "
                 f"in {report.duration_s:.1f} s")

        _say(f"[4/5] simulator: {args.devices} devices x {args.rate} Hz -> Kinesis "
             f"(tune live: curl -X POST 127.0.0.1:{args.control_port}/config -d '{{\"rate_hz\": 2}}')")
        sim_log = open(RUN_DIR / "simulator.log", "ab")  # noqa: SIM115 - owned by the child
        started.append(subprocess.Popen([sys.executable, "-m", "simulator", "run"], env=sim_env,
                                        stdout=sim_log, stderr=subprocess.STDOUT))

        api_env = {
            **os.environ,
            "DEVICES_TABLE": outputs["DevicesTableName"],
            "AGGREGATES_TABLE": outputs["AggregatesTableName"],
            "ANOMALIES_TABLE": outputs["AnomaliesTableName"],
            "STACK_NAME": args.stack,
            "API_KEY": outputs.get("ApiKey", ""),
        }
        local_api = ""
        if (ROOT / "functions" / "api" / "main.py").exists():
            api_port = args.api_port if _port_free(args.api_port) else free_port()
            api_log = open(RUN_DIR / "api.log", "ab")  # noqa: SIM115 - owned by the child
            started.append(subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "functions.api.main:app", "--host", "127.0.0.1",
                 "--port", str(api_port)], env=api_env, stdout=api_log, stderr=subprocess.STDOUT))
            local_api = f"http://127.0.0.1:{api_port}"
        # `iotpipe down` from another terminal stops these by their pids.
        CHILDREN.write_text(json.dumps([p.pid for p in started]))
        _say("[5/5] API")
        _say(f"      through the emulator's API Gateway: {outputs['ApiUrl']}")
        if local_api:
            _say(f"      served locally by uvicorn:          {local_api}")
        _say(f"      x-api-key: {outputs.get('ApiKey', '')}")
        _say(f"      live view: {outputs['ApiUrl']}/dashboard   docs: {outputs['ApiUrl']}/docs")
        _say("running; Ctrl-C stops everything this command started")
        return _watch(args, started, emulator)
    except (EmulatorError, RuntimeError, subprocess.CalledProcessError) as exc:
        _say(f"failed: {exc}")
        _say("(emulator state is kept between runs; 'iotpipe up --fresh' starts from an empty one)")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        _say("stopping simulator, API and emulator ...")
        stop_all()
        _say("stopped")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


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


def _watch(args: argparse.Namespace, started: list[subprocess.Popen[bytes]], emulator: Emulator) -> int:
    """Progress lines, and supervision: a dead emulator or child stops everything, with the reason."""
    from iotpipe.status import collect

    names = {id(p): n for p, n in zip(started, ("simulator", "local API"), strict=False)}
    deadline = time.monotonic() + args.duration if args.duration else None
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
            s = collect(args.stack, window_hours=1)
        except Exception as exc:  # status is best effort while the emulator is busy
            failures += 1
            alive = "" if failures < 3 or healthy(emulator.endpoint, timeout=5) else (
                f" (the emulator, pid {emulator.pid}, is running but has not answered its health check: "
                f"hung or overloaded; see {emulator.state_dir / 'emulator.log'})")
            _say(f"status unavailable: {exc}{alive}")
            continue
        failures = 0
        sim = _simulator_stats(args.control_port)
        sent = sim.get("produced", "?")
        _say(f"sent {sent} | in {s.readings_in} ({s.throughput_per_s:.1f}/s) | aggregated {s.aggregated} "
             f"in {s.windows} windows | duplicates {s.duplicates} | quarantined {s.quarantined} | "
             f"anomalies {s.anomalies}")
    return 0


def _simulator_stats(port: int) -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=1) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError):
        return {}


# ------------------------------------------------------------------------------------------ down
def cmd_down(args: argparse.Namespace) -> int:
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
def cmd_deploy(args: argparse.Namespace) -> int:
    cmd = ["bash", str(ROOT / "scripts" / "deploy.sh"), "--target", args.target, "--stack", args.stack]
    if args.yes:
        cmd.append("--yes")
    if args.dry_run:
        cmd.append("--dry-run")
    for param in args.param or []:
        cmd += ["--param", param]
    if args.target == "embedded" and not os.environ.get("AWS_ENDPOINT_URL"):
        emulator = Emulator.from_pidfile()
        if emulator and healthy(emulator.endpoint):
            os.environ.update(emulator.client_env())
    if args.target != "aws" and not args.dry_run and os.environ.get("AWS_ENDPOINT_URL"):
        # A stack lost with the emulator's state leaves its retained archive bucket (iotpipe.recovery).
        from iotpipe.recovery import adopt_retained
        from iotpipe.stack import _client

        adopt_retained(args.stack, _client, os.environ.get("AWS_REGION", "us-east-1"), say=_say)
    return subprocess.run(cmd, check=False).returncode


# ------------------------------------------------------------------------------------------ status
def _use_running_emulator() -> None:
    if not os.environ.get("AWS_ENDPOINT_URL"):
        emulator = Emulator.from_pidfile()
        if emulator and healthy(emulator.endpoint):
            os.environ.update(emulator.client_env())


def cmd_rebuild(args: argparse.Namespace) -> int:
    from iotpipe.rebuild import main as rebuild_main

    _use_running_emulator()
    return rebuild_main(args.stack, as_json=args.json)


def cmd_status(args: argparse.Namespace) -> int:
    from iotpipe.status import collect, render

    _use_running_emulator()
    try:
        status = collect(args.stack)
    except Exception as exc:
        error = {"error": str(exc), "stack": args.stack}
        print(json.dumps(error) if args.json else f"status unavailable: {exc}")
        return 1
    if args.json:
        print(json.dumps(status.to_json(), sort_keys=True))
    else:
        print(render(status))
    return 0


# ------------------------------------------------------------------------------------------ model
def cmd_model(args: argparse.Namespace, rest: list[str]) -> int:
    if args.model_command != "evaluate":
        print("usage: iotpipe model evaluate --dataset skab|simulator [...]", file=sys.stderr)
        return 2
    from model.evaluate import main as evaluate_main

    return int(evaluate_main(rest))


def cmd_cost(rest: list[str]) -> int:
    from iotpipe.cost import main as cost_main

    return int(cost_main(rest))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="iotpipe", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the whole pipeline on the embedded emulator")
    up.add_argument("--stack", default=DEFAULT_STACK)
    up.add_argument("--port", type=int, default=int(os.environ.get("EMULATOR_PORT", "4566")))
    up.add_argument("--devices", type=int, default=int(os.environ.get("SIM_DEVICES", "20")))
    up.add_argument("--rate", type=float, default=float(os.environ.get("SIM_RATE_HZ", "1")))
    up.add_argument("--seed", type=int, default=int(os.environ.get("SIM_SEED", "42")))
    up.add_argument("--shards", type=int, default=int(os.environ.get("SHARD_COUNT", "1")),
                    help="Kinesis shards (template parameter ShardCount)")
    up.add_argument("--parallelization", type=int, default=int(os.environ.get("PARALLELIZATION_FACTOR", "1")),
                    help="concurrent batches per shard (ParallelizationFactor; the emulators run 1)")
    up.add_argument("--anomaly-rate", type=float, default=float(os.environ.get("SIM_ANOMALY_RATE", "0.01")))
    up.add_argument("--malformed-rate", type=float,
                    default=float(os.environ.get("SIM_MALFORMED_RATE", "0.01")))
    up.add_argument("--control-port", type=int, default=int(os.environ.get("SIM_CONTROL_PORT", "8765")))
    up.add_argument("--api-port", type=int, default=int(os.environ.get("API_PORT", "8000")))
    up.add_argument("--interval", type=float, default=5.0, help="seconds between progress lines")
    up.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: run)")
    up.add_argument("--fresh", action="store_true", help="discard the emulator's saved state first")
    up.add_argument("--snapshot", type=float, default=float(os.environ.get("EMULATOR_SNAPSHOT_S", "30")),
                    help="seconds between emulator state snapshots (0: only on a clean stop)")
    up.add_argument("--verbose", action="store_true", help="show the deploy script's output")

    sub.add_parser("down", help="stop what 'iotpipe up' started")

    dep = sub.add_parser("deploy", help="build, package and deploy the template")
    dep.add_argument("--target", choices=["embedded", "localstack", "aws"], default="embedded")
    dep.add_argument("--stack", default=DEFAULT_STACK)
    dep.add_argument("--yes", action="store_true")
    dep.add_argument("--dry-run", action="store_true")
    dep.add_argument("--param", action="append", metavar="KEY=VALUE")

    st = sub.add_parser("status", help="stack outputs and pipeline counts")
    st.add_argument("--stack", default=DEFAULT_STACK)
    st.add_argument("--json", action="store_true", help="one JSON object (for scripts)")

    rb = sub.add_parser("rebuild", help="re-derive aggregates and anomalies from the archive (exactly once)")
    rb.add_argument("--stack", default=DEFAULT_STACK)
    rb.add_argument("--json", action="store_true", help="one JSON object (for scripts)")

    model = sub.add_parser("model", help="model commands", add_help=False)
    model.add_argument("model_command", nargs="?", default="")

    sub.add_parser("cost", help="monthly AWS cost model", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # model/cost parse their own options.
    if argv[:2] == ["model", "evaluate"]:
        return cmd_model(argparse.Namespace(model_command="evaluate"), argv[2:])
    if argv[:1] == ["cost"]:
        return cmd_cost(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "model":
        return cmd_model(args, [])
    handlers = {"up": cmd_up, "down": cmd_down, "deploy": cmd_deploy, "status": cmd_status,
                "rebuild": cmd_rebuild}
    return handlers[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
