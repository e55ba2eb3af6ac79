"""Every README target works alone on a fresh clone: it depends on the environments its commands use.

``make -n -B TARGET`` prints what a fresh clone would run (every prerequisite out of date), without
running it: a target whose tests or commands start the embedded emulator must create .venv-emulator.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EMULATOR_INSTALL = '"ministack=='  # the .venv-emulator install line of the Makefile


def _dry_run(target: str) -> str:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make not installed")
    result = subprocess.run([make, "-n", "-B", target], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, check=True)
    return result.stdout


# The crash, restart and disk tests start a ministack of their own in both integration suites.
@pytest.mark.parametrize("target", ["up", "test", "test-integration", "test-localstack", "bench-e2e"])
def test_targets_that_start_the_emulator_create_its_environment(target: str) -> None:
    commands = _dry_run(target)
    assert EMULATOR_INSTALL in commands, f"`make {target}` on a fresh clone would not create .venv-emulator"
    assert "-e '.[dev]'" in commands, f"`make {target}` on a fresh clone would not create .venv"
