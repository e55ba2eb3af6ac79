"""Ctrl-C of a command that `make` runs in a terminal ends `make` with status 0, as `make up` must.

Ctrl-C signals the terminal's foreground process group; `iotpipe up` takes that group for itself
(``iotpipe.local.supervisor.own_terminal_foreground``) so that make is not interrupted along with it.
Here a Makefile target runs the same context manager in a real pseudo-terminal, and the test types Ctrl-C.
(`make up` itself deploys a stack first: the README's commands are run against a stack by
test_readme_commands.py; this checks the terminal plumbing, which needs no stack.)
"""

from __future__ import annotations

import os
import pty
import select
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

WAITER = (
    "import sys, time\n"
    "from iotpipe.local.supervisor import own_terminal_foreground\n"
    "with own_terminal_foreground():\n"
    "    try:\n"
    "        print('ready', flush=True)\n"
    "        time.sleep(60)\n"
    "    except KeyboardInterrupt:\n"
    "        print('stopped cleanly', flush=True)\n"
    "sys.exit(0)\n"
)


def _read_until(fd: int, text: bytes, timeout_s: float) -> bytes:
    out, deadline = b"", time.monotonic() + timeout_s
    while text not in out and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    return out


@pytest.mark.parametrize("take_terminal", [True, False])
def test_ctrl_c_of_a_make_target_exits_0(tmp_path: Path, take_terminal: bool) -> None:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make not installed")
    script = tmp_path / "waiter.py"
    script.write_text(WAITER if take_terminal else WAITER.replace("own_terminal_foreground()",
                                                                  "__import__('contextlib').nullcontext()"))
    (tmp_path / "Makefile").write_text(f"up:\n\t{sys.executable} {script}\n")
    # GIVEN `make up` running in a terminal (a pty: make and its child in the terminal's foreground)
    pid, fd = pty.fork()
    if pid == 0:  # the child: a session of its own on the pty, like a shell's foreground job
        # An interactive shell starts a foreground job with SIGINT at its default; a runner that started
        # this test in the background may have left it ignored (inherited through exec), which would
        # make the Ctrl-C below reach nobody.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.chdir(tmp_path)
        os.environ["PYTHONPATH"] = str(ROOT)
        os.execv(make, [make, "-s", "up"])  # noqa: S606 - make, found on PATH above, no shell needed
    try:
        assert b"ready" in _read_until(fd, b"ready", 30)
        # WHEN the user types Ctrl-C
        os.write(fd, b"\x03")
        output = _read_until(fd, b"stopped cleanly", 15)
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    if take_terminal:
        assert b"stopped cleanly" in output
        # THEN the command stopped cleanly and make exits 0, without "Interrupt" or "Error"
        assert os.waitstatus_to_exitcode(status) == 0, output
        assert b"Interrupt" not in output
    else:
        # (without it, make itself is interrupted: what `make up` did before, status 130 / SIGINT)
        assert os.waitstatus_to_exitcode(status) != 0
