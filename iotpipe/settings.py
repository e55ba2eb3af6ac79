"""The developer tools' settings (``iotpipe``, bench/, model/): where AWS is and where ``up`` keeps its files.

Each setting is declared once below with its environment variable and default; the tools read them
through ``tool_settings()`` instead of ``os.environ``. The region default is the functions' own
(functions/settings.py), so it is written once for the whole project.

Read when asked, not cached per process: the tools point their own environment at the emulator they
start or find (``use_endpoint``) so that the clients they build and every child they start (deploy.sh,
the simulator, the local API) talk to the same endpoint, and a cached copy would then be stale. Reading
five variables costs microseconds. The Lambda functions read theirs once (functions/settings.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from functions.settings import default as function_default

ROOT = Path(__file__).resolve().parent.parent
REGION_DEFAULT: str = function_default("region")


@dataclass(frozen=True)
class ToolSettings:
    # Where AWS is: endpoint_url is None on AWS, the emulator's URL locally.
    region: str = REGION_DEFAULT  # AWS_REGION, else AWS_DEFAULT_REGION
    endpoint_url: str | None = None  # AWS_ENDPOINT_URL
    # What `iotpipe up` keeps (pidfiles, logs, emulator state); IOTPIPE_RUN_DIR moves it (bench/soak.py).
    run_dir: Path = ROOT / ".iotpipe"
    emulator_bin: Path | None = None  # EMULATOR_BIN: a ministack executable other than .venv-emulator's
    emulator_log_level: str = "WARNING"  # EMULATOR_LOG_LEVEL: the emulator process's log level
    # IOTPIPE_MQTT_ENDPOINT: host:port of the emulator's mTLS MQTT listener (None: ask IoT, AWS)
    mqtt_endpoint: str | None = None


def tool_settings(environ: Mapping[str, str] | None = None) -> ToolSettings:
    """The settings from ``environ`` (default: this process's environment); empty means unset."""
    env = os.environ if environ is None else environ

    def first(*names: str) -> str | None:
        return next((env[n] for n in names if env.get(n)), None)

    defaults = ToolSettings()
    bin_path = first("EMULATOR_BIN")
    return ToolSettings(
        region=first("AWS_REGION", "AWS_DEFAULT_REGION") or defaults.region,
        endpoint_url=first("AWS_ENDPOINT_URL"),
        run_dir=Path(first("IOTPIPE_RUN_DIR") or defaults.run_dir),
        emulator_bin=Path(bin_path) if bin_path else None,
        emulator_log_level=first("EMULATOR_LOG_LEVEL") or defaults.emulator_log_level,
        mqtt_endpoint=first("IOTPIPE_MQTT_ENDPOINT"),
    )


def use_endpoint(env: Mapping[str, str]) -> None:
    """Point this process at an endpoint (``Emulator.client_env()``): the clients it builds from now on
    and every child it starts after read it. The one place the tools change their own environment."""
    os.environ.update(env)


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child process: this one's (endpoint, credentials, PATH) plus ``extra``."""
    return {**os.environ, **(extra or {})}
