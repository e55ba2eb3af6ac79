"""``python -m simulator {run,register,replay}``: flags over ``SIM_*`` environment variables.

Every flag has an environment variable (shown in ``--help``); a flag given on the command line wins.
Progress goes to stderr every ``--progress-interval`` seconds; stdout is kept for the stdout sink.
"""

from __future__ import annotations

import inspect
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from simulator.config import (
    ANOMALY_KINDS,
    ENV_PREFIX,
    MALFORMED_KINDS,
    SINKS,
    ConfigError,
    SimulatorConfig,
    parse_value,
)
from simulator.control import GrowHook, LiveConfig, RegistrationError
from simulator.credentials import DEFAULT_SECRET_FILE
from simulator.runner import RunStats, pump, run
from simulator.sinks import make_sink

# (flag, config field, help); the env var is SIM_<FIELD>.
RUN_OPTIONS: tuple[tuple[str, str, str], ...] = (
    ("--devices", "devices", "number of devices (default 100)"),
    ("--rate-hz", "rate_hz", "readings per second per device, fractional allowed (default 1)"),
    ("--seed", "seed", "random seed: same seed, same fleet and readings (default 42)"),
    ("--anomaly-rate", "anomaly_rate", "fraction of good readings inside anomaly episodes (default 0.01)"),
    ("--anomaly-mix", "anomaly_mix", "weights, e.g. spike=2,drift=1 (default: all kinds equally)"),
    ("--malformed-rate", "malformed_rate", "fraction of records made malformed (default 0)"),
    ("--malformed-mix", "malformed_mix", "weights, e.g. invalid_json=1,duplicate=3 (default: equal)"),
    ("--duration", "duration_s", "stop after this many seconds"),
    ("--count", "count", "stop after this many records"),
    ("--jitter", "jitter", "timing jitter as a fraction of the period (default 0.1)"),
    ("--extra-channels", "extra_channels", "comma-separated extra channels: co2, light"),
    ("--start-time", "start_time", "simulated clock origin (ISO 8601 or epoch ms; default now)"),
    ("--timestamp-format", "timestamp_format", "iso (default) or epoch_ms"),
    ("--sink", "sink", f"one of {', '.join(SINKS)} (default stdout)"),
    ("--stream-name", "stream_name", "Kinesis stream (default iotpipe-readings; also STREAM_NAME)"),
    ("--ingest-url", "ingest_url", "API Gateway .../ingest URL for the http sink"),
    ("--device-secret-file", "device_secret_file",
     "fleet secret the devices' /ingest credentials derive from (default .iotpipe/device-fleet.secret;"
     " SIM_DEVICE_SECRET overrides)"),
    ("--mqtt-key-dir", "mqtt_key_dir",
     "mqtt sink: device identities from `iotpipe devices provision` (default .iotpipe/devices/iotpipe)"),
    ("--endpoint-url", "endpoint_url", "AWS endpoint (emulator); also AWS_ENDPOINT_URL"),
    ("--region", "region", "AWS region (default us-east-1; also AWS_REGION)"),
    ("--shard-count", "shard_count", "shards, for rate limits (default: ask Kinesis)"),
    ("--pack", "pack", "kinesis sink: good readings packed per Kinesis record (default 25; 1 = unpacked)"),
    ("--compress", "compress", "kinesis sink: gzip packed records, true or false (default true)"),
    ("--output", "output_path", "file for the file sink (JSON lines)"),
    ("--labels", "labels_path", "write ground-truth labels here (.csv or .jsonl)"),
    ("--control-port", "control_port", "serve the control endpoint on 127.0.0.1:PORT (0 = any)"),
    ("--control-host", "control_host", "address of the control endpoint (default 127.0.0.1)"),
    ("--progress-interval", "progress_interval_s", "seconds between progress lines (default 2)"),
    ("--devices-table", "devices_table", "devices table for register (default iotpipe-devices)"),
)
_ANOMALY = frozenset(ANOMALY_KINDS)
_MALFORMED = frozenset(MALFORMED_KINDS)
BOOL_OPTIONS: tuple[tuple[str, str, str], ...] = (
    ("--burst", "burst", "unpaced: send as fast as the sink accepts"),
    ("--no-ground-truth", "include_ground_truth", "omit the ground_truth field from readings"),
)


def _env_name(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


def _config_parameters() -> list[inspect.Parameter]:
    """The RUN_OPTIONS and BOOL_OPTIONS as typer options. Unset (None, False) leaves the environment's
    value (SimulatorConfig.from_env) in force: the defaults are written once, in SimulatorConfig."""
    params = [
        inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, default=None,
            annotation=Annotated[str | None, typer.Option(
                flag, help=f"{help_text} [{_env_name(name)}]", show_default=False)],
        )
        for flag, name, help_text in RUN_OPTIONS
    ]
    params += [
        inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, default=False,
            annotation=Annotated[bool, typer.Option(flag, help=f"{help_text} [{_env_name(name)}]")],
        )
        for flag, name, help_text in BOOL_OPTIONS
    ]
    return params


CONFIG_OPTION_NAMES = frozenset(name for _, name, _ in (*RUN_OPTIONS, *BOOL_OPTIONS))


def config_from_options(options: Mapping[str, Any]) -> SimulatorConfig:
    """The configuration: the environment's, with every option given on the command line applied over it."""
    overrides: dict[str, Any] = {}
    for _, name, _ in RUN_OPTIONS:
        raw = options.get(name)
        if raw is not None:
            overrides[name] = parse_value(name, raw)
    if options.get("burst"):
        overrides["burst"] = True
    if options.get("include_ground_truth"):  # the --no-ground-truth flag
        overrides["include_ground_truth"] = False
    return SimulatorConfig.from_env(**overrides)


def with_config_options(command: Callable[..., int]) -> Callable[..., int]:
    """``command(config, **own options)`` as a typer command that also takes every configuration flag.

    The flags come from one table (RUN_OPTIONS) rather than a hand-written parameter list per command:
    run, register and replay take the same 29, each with its SIM_* variable; typer reads the signature.
    """
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "config"]

    def wrapper(**options: Any) -> int:
        try:
            config = config_from_options({k: options.pop(k) for k in CONFIG_OPTION_NAMES})
        except (ConfigError, ValueError) as exc:
            raise typer.BadParameter(str(exc)) from exc
        return command(config, **options)

    params = own + _config_parameters()
    wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    wrapper.__name__, wrapper.__doc__ = command.__name__, command.__doc__
    return wrapper


class ProgressPrinter:
    """One line to stderr per progress interval; never per record."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr

    def note(self, message: str) -> None:
        print(f"[simulator] {message}", file=self.stream, flush=True)

    def __call__(self, stats: RunStats) -> None:
        anomalies = sum(v for k, v in stats.by_kind.items() if k in _ANOMALY)
        malformed = sum(v for k, v in stats.by_kind.items() if k in _MALFORMED)
        sink = stats.sink
        self.note(
            f"t={stats.elapsed_s:7.1f}s produced={stats.produced} rate={stats.recent_rate:,.1f}/s "
            f"target={stats.target_rate:,.1f}/s ratio={stats.recent_rate / max(stats.target_rate, 1e-9):.3f} "
            f"anomalies={anomalies} malformed={malformed} sent={sink.get('sent', 0)} "
            f"failed={sink.get('failed', 0)} lag={stats.max_lag_s:.2f}s"
            + ("  CANNOT KEEP UP" if stats.lagging else "")
        )


def _summary(printer: ProgressPrinter, stats: RunStats) -> None:
    printer.note(
        f"done: produced={stats.produced} in {stats.elapsed_s:.1f}s, achieved {stats.achieved_rate:,.1f}/s "
        f"of target {stats.target_rate:,.1f}/s (ratio {stats.rate_ratio:.4f})"
        + ("; could not keep up" if stats.lagging else "")
    )
    print(orjson.dumps(stats.as_dict()).decode(), file=printer.stream, flush=True)


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)
    return stop


app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])


@app.command(name="run", help="simulate the fleet and send readings in real time")
@with_config_options
def run_command(config: SimulatorConfig) -> int:
    printer = ProgressPrinter()
    stop = _stop_on_signals()
    sink = make_sink(config)
    printer.note(
        f"{config.devices} devices x {config.rate_hz} Hz = {config.target_rate:,.1f} readings/s "
        f"-> {config.sink}" + (" (burst)" if config.burst else "")
    )
    live = LiveConfig(config, on_grow=grow_hook(config, printer))
    stats = run(config, sink, progress=printer, stop=stop, announce=printer.note, live=live)
    _summary(printer, stats)
    return 0


@app.command(name="register", help="write the fleet to the devices table")
@with_config_options
def register_command(
    config: SimulatorConfig,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the items as JSON lines instead")] = False,
) -> int:
    return _register(config, dry_run, ProgressPrinter())


@app.command(name="replay", help="stream a recorded CSV (e.g. SKAB) as one device")
@with_config_options
def replay_command(
    config: SimulatorConfig,
    replay_file: Annotated[str | None, typer.Option(
        "--file", envvar="SIM_REPLAY_FILE", help="CSV to replay")] = None,
    replay_device_id: Annotated[str, typer.Option(
        "--device-id", envvar="SIM_REPLAY_DEVICE_ID", help="device id of the virtual device")
    ] = "replay-000000",
    replay_mapping: Annotated[str | None, typer.Option(
        "--mapping", envvar="SIM_REPLAY_MAPPING", help="Column=channel[*scale][+offset],... (default: SKAB)")
    ] = None,
    replay_delimiter: Annotated[str, typer.Option(
        "--delimiter", envvar="SIM_REPLAY_DELIMITER", help="CSV delimiter")] = ";",
    replay_speed: Annotated[float, typer.Option(
        "--speed", envvar="SIM_REPLAY_SPEED", help="1 = original pace, 10 = ten times faster, 0 = unpaced")
    ] = 1.0,
    replay_keep_timestamps: Annotated[bool, typer.Option(
        "--keep-timestamps", envvar="SIM_REPLAY_KEEP_TIMESTAMPS",
        help="keep recorded timestamps instead of shifting them to now")] = False,
    replay_anomaly_label: Annotated[str, typer.Option(
        "--anomaly-label", envvar="SIM_REPLAY_ANOMALY_LABEL", help="ground_truth for rows labelled anomalous")
    ] = "drift",
) -> int:
    printer = ProgressPrinter()
    stop = _stop_on_signals()
    sink = make_sink(config)
    options = ReplayOptions(replay_file, replay_device_id, replay_mapping, replay_delimiter, replay_speed,
                            replay_keep_timestamps, replay_anomaly_label)
    stats = _replay(config, options, sink, printer, stop)
    _summary(printer, stats)
    return 0


@dataclass(frozen=True)
class ReplayOptions:
    replay_file: str | None
    replay_device_id: str
    replay_mapping: str | None
    replay_delimiter: str
    replay_speed: float
    replay_keep_timestamps: bool
    replay_anomaly_label: str


def parse_config(argv: Sequence[str]) -> SimulatorConfig:
    """The configuration ``python -m simulator COMMAND [flags]`` would run with, without running it."""
    command = typer.main.get_command(app).commands[argv[0]]  # type: ignore[attr-defined]
    ctx = command.make_context(argv[0], list(argv[1:]))
    return config_from_options(ctx.params)


def main(argv: Sequence[str] | None = None) -> int:
    # typer's run, without iotpipe.console: the simulator image ships the simulator package alone.
    command = typer.main.get_command(app)
    try:
        args = list(sys.argv[1:] if argv is None else argv)
        result = command.main(args=args, prog_name="python -m simulator", standalone_mode=False)
    except typer.TyperException as exc:
        show = getattr(exc, "show", None)
        if show is None:
            raise
        show()
        return int(getattr(exc, "exit_code", 1))
    return int(result or 0)


def _register(config: SimulatorConfig, dry_run: bool, printer: ProgressPrinter) -> int:
    from simulator.fleet import generate_fleet

    fleet = generate_fleet(config.devices, config.seed)
    if dry_run:
        for device in fleet:
            sys.stdout.write(orjson.dumps(device.to_registry_item()).decode() + "\n")
        return 0
    written = register_devices(config, fleet, _dynamodb(config), create_secret=True)
    printer.note(f"registered {written} devices in {config.devices_table}, each with an /ingest credential")
    return 0


# The sinks whose readings reach the pipeline, which checks each device against the devices table.
PIPELINE_SINKS = ("kinesis", "http", "mqtt")


def _dynamodb(config: SimulatorConfig) -> Any:
    import boto3

    return boto3.client("dynamodb", endpoint_url=config.endpoint_url, region_name=config.region)


def register_devices(config: SimulatorConfig, fleet: Sequence[Any], client: Any,
                     create_secret: bool = False) -> int:
    """``fleet`` written to the devices table with each device's /ingest credential hash (``register``)."""
    from simulator.credentials import load_fleet_secret
    from simulator.fleet import register_fleet

    fleet_secret = load_fleet_secret(config.device_secret, config.device_secret_file, create=create_secret)
    return register_fleet(list(fleet), config.devices_table, client, fleet_secret=fleet_secret)


def register_command_line(config: SimulatorConfig) -> str:
    """The shell command that registers ``config``'s whole fleet, as start-up did (same seed and secret)."""
    env = [f"SIM_DEVICES={config.devices}", f"SIM_SEED={config.seed}",
           f"SIM_DEVICES_TABLE={config.devices_table}"]
    if config.endpoint_url:
        env.append(f"AWS_ENDPOINT_URL={config.endpoint_url}")
    if config.device_secret:  # never printed: the run was given it in the environment
        env.append('SIM_DEVICE_SECRET="$SIM_DEVICE_SECRET"')
    elif config.device_secret_file != DEFAULT_SECRET_FILE:
        env.append(f"SIM_DEVICE_SECRET_FILE={config.device_secret_file}")
    return " ".join(env) + " .venv/bin/python -m simulator register"


def grow_hook(config: SimulatorConfig, printer: ProgressPrinter, client: Any = None) -> GrowHook | None:
    """Live tuning's ``on_grow`` for a run that sends to the pipeline: devices added by POST /config are
    registered (with credentials) before they send, the way ``register`` registered the first ones."""
    if config.sink not in PIPELINE_SINKS:
        return None
    # Devices up to this count were registered at start-up (or by an earlier grow): never re-put, so a
    # device shrunk away and added again keeps its item (a calibration stored on it, for instance).
    registered = config.devices

    def on_grow(old: SimulatorConfig, new: SimulatorConfig) -> None:
        nonlocal registered, client
        from simulator.fleet import generate_device

        first = max(old.devices, registered)
        if first >= new.devices:
            return
        if new.sink == "mqtt":
            _require_mqtt_identities(new, first)
        try:
            client = client or _dynamodb(new)
            fleet = [generate_device(i, new.seed) for i in range(first, new.devices)]
            written = register_devices(new, fleet, client)
        except Exception as exc:  # the table, the network, the fleet secret: the change must not apply
            raise RegistrationError(
                f"devices {first}..{new.devices - 1} could not be registered in {new.devices_table} "
                f"({type(exc).__name__}: {exc}); nothing changed: register them with the command below, "
                "then POST again", register_command_line(new)) from exc
        registered = new.devices
        printer.note(f"registered {written} new devices ({first}..{new.devices - 1}) in {new.devices_table}, "
                     "each with an /ingest credential")

    return on_grow


def _require_mqtt_identities(config: SimulatorConfig, first: int) -> None:
    """Devices ``first`` .. of ``config`` each need a certificate before they can publish; the simulator
    does not create identities (that is the registry's job: ``iotpipe devices provision``), so a grow
    without them is refused with the command that provisions them, instead of devices that only fail."""
    from simulator.fleet import device_id_for
    from simulator.mqtt_sink import IDENTITY_FILE

    key_dir = Path(config.mqtt_key_dir)
    missing = [device_id_for(i) for i in range(first, config.devices)
               if not (key_dir / device_id_for(i) / IDENTITY_FILE).exists()]
    if missing:
        raise RegistrationError(
            f"{len(missing)} new devices ({missing[0]}..) have no MQTT identity in {key_dir}; nothing "
            "changed: provision them with the command below, then POST again",
            f".venv/bin/iotpipe devices provision --stack {key_dir.name} --key-dir {key_dir} "
            f"--count {config.devices}")


def _replay(
    config: SimulatorConfig,
    args: ReplayOptions,
    sink: Any,
    printer: ProgressPrinter,
    stop: threading.Event,
) -> RunStats:
    import time

    from simulator.replay import parse_mapping, replay_readings

    if not args.replay_file:
        raise SystemExit("replay needs --file or SIM_REPLAY_FILE")
    now_ms = int(time.time() * 1000)
    items = list(
        replay_readings(
            args.replay_file,
            device_id=args.replay_device_id,
            mapping=parse_mapping(args.replay_mapping) if args.replay_mapping else None,
            start_ms=None if args.replay_keep_timestamps else now_ms,
            delimiter=args.replay_delimiter,
            anomaly_label=args.replay_anomaly_label,
            timestamp_format=config.timestamp_format,
            include_ground_truth=config.include_ground_truth,
        )
    )
    if config.count is not None:
        items = items[: config.count]
    if not items:
        raise SystemExit(f"{args.replay_file}: no rows")
    speed = args.replay_speed
    span_s = max((items[-1].send_ms - items[0].send_ms) / 1000.0, 1e-3)
    # Unpaced replay has no target rate (0 = not applicable).
    target = len(items) / span_s * speed if speed > 0 else 0.0
    printer.note(
        f"replaying {len(items)} rows of {args.replay_file} as {args.replay_device_id} "
        f"at {'max speed' if speed <= 0 else f'{speed}x'}"
    )
    return pump(
        items,
        sink,
        origin_ms=items[0].send_ms,
        target_rate=target,
        speed=speed if speed > 0 else 1.0,
        unpaced=speed <= 0,
        progress=printer,
        progress_interval_s=config.progress_interval_s,
        labels_path=config.labels_path,
        stop=stop,
    )
