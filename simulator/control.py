"""Live tuning: a thread-safe holder of the current config and a tiny HTTP endpoint on 127.0.0.1.

GET /config, POST /config with any of {devices, rate_hz, anomaly_rate, malformed_rate, jitter},
GET /stats. The runner polls ``LiveConfig.version`` while it waits and applies changes without
restarting (new devices join, the rate changes at once). When devices are added and the run sends to
the pipeline, ``on_grow`` registers them first, as ``register`` did at start-up; if it cannot, the POST
is refused (503, nothing changed) with the command that registers them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

from simulator.config import ConfigError, SimulatorConfig

TUNABLE: dict[str, type] = {
    "devices": int,
    "rate_hz": float,
    "anomaly_rate": float,
    "malformed_rate": float,
    "jitter": float,
}
MAX_BODY_BYTES = 16 * 1024


class RegistrationError(ConfigError):
    """New devices could not be registered: the change is refused; ``command`` registers them by hand."""

    def __init__(self, message: str, command: str) -> None:
        super().__init__(message)
        self.command = command


# ``on_grow(old, new)``: register devices old .. new-1 of ``new``'s fleet (seed), or raise RegistrationError.
GrowHook = Callable[[SimulatorConfig, SimulatorConfig], None]


class LiveConfig:
    def __init__(self, config: SimulatorConfig, on_grow: GrowHook | None = None) -> None:
        self._lock = threading.Lock()
        self._config = config
        self._on_grow = on_grow
        self.version = 0

    @property
    def config(self) -> SimulatorConfig:
        with self._lock:
            return self._config

    def update(self, changes: dict[str, Any]) -> SimulatorConfig:
        """Validate and apply ``changes``; raises ConfigError and changes nothing when invalid."""
        unknown = set(changes) - set(TUNABLE)
        if unknown:
            raise ConfigError(f"not tunable: {sorted(unknown)}; tunable: {sorted(TUNABLE)}")
        typed: dict[str, Any] = {}
        for key, value in changes.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{key} must be a number")
            if TUNABLE[key] is int and value != int(value):
                raise ConfigError(f"{key} must be an integer")
            typed[key] = TUNABLE[key](value)
        with self._lock:
            updated = self._config.with_updates(**typed)
            if self._on_grow is not None and updated.devices > self._config.devices:
                # Before the change applies: a device that sends before it is registered is quarantined
                # as unknown_device (Kinesis) or refused at the edge (HTTP).
                self._on_grow(self._config, updated)
            self._config = updated
            self.version += 1
            return self._config


def config_view(config: SimulatorConfig) -> dict[str, Any]:
    return {
        "devices": config.devices,
        "rate_hz": config.rate_hz,
        "target_rate_per_s": config.target_rate,
        "anomaly_rate": config.anomaly_rate,
        "malformed_rate": config.malformed_rate,
        "jitter": config.jitter,
        "seed": config.seed,
        "sink": config.sink,
        "burst": config.burst,
    }


class ControlServer:
    """ThreadingHTTPServer in a daemon thread; ``port=0`` picks a free port (see ``.port``)."""

    def __init__(
        self, live: LiveConfig, stats: Callable[[], dict[str, Any]], port: int = 0, host: str = "127.0.0.1"
    ) -> None:
        handler = _handler_class(live, stats)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self.host = host
        self._thread = threading.Thread(target=self._server.serve_forever, name="sim-control", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ControlServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> ControlServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def handle(
    live: LiveConfig, stats: Callable[[], dict[str, Any]], method: str, path: str, body: bytes = b""
) -> tuple[HTTPStatus, dict[str, Any]]:
    """The endpoint's logic without sockets: (status, JSON body) for one request."""
    if method == "GET" and path == "/config":
        return HTTPStatus.OK, config_view(live.config)
    if method == "GET" and path == "/stats":
        return HTTPStatus.OK, stats()
    if method == "POST" and path == "/config":
        try:
            changes = orjson.loads(body or b"{}")
            if not isinstance(changes, dict):
                raise ConfigError("body must be a JSON object")
            updated = live.update(changes)
        except RegistrationError as exc:
            return HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(exc), "command": exc.command}
        except (orjson.JSONDecodeError, ConfigError) as exc:
            return HTTPStatus.BAD_REQUEST, {"error": str(exc)}
        return HTTPStatus.OK, config_view(updated)
    return HTTPStatus.NOT_FOUND, {"error": "not found"}


def _handler_class(live: LiveConfig, stats: Callable[[], dict[str, Any]]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "simulator-control/1"

        def do_GET(self) -> None:
            self._reply(*handle(live, stats, "GET", self.path))

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length > MAX_BODY_BYTES:
                self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "body too large"})
                return
            self._reply(*handle(live, stats, "POST", self.path, self.rfile.read(length)))

        def _reply(self, status: HTTPStatus, body: dict[str, Any]) -> None:
            data = orjson.dumps(body)
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return  # keep stderr for progress lines

    return Handler
