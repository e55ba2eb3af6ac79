"""Local ports: is one free to listen on, who holds it, and URLs of restored stacks pointed at the live one.

``port_free`` binds the way the servers ``iotpipe up`` starts do (ministack, uvicorn and the simulator's
control server all set ``SO_REUSEADDR``), so a port whose only connections linger in TIME_WAIT after a
crash or a quick restart counts as free, as it is for them. ``port_holder`` names the process listening
on a port, read from ``/proc`` (Linux; elsewhere it says it cannot tell), so a refusal can say who to stop.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

_LISTEN = "0A"  # the TCP state column of /proc/net/tcp{,6}
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "0.0.0.0")  # noqa: S104 - compared, never bound


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if a server may listen on ``host:port`` now (TIME_WAIT leftovers do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _listening_inodes(port: int, proc: Path) -> set[str]:
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == _LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def port_holder(port: int, proc: Path = Path("/proc")) -> str:
    """``pid N: command line`` of the processes listening on ``port``, or why that cannot be told."""
    inodes = _listening_inodes(port, proc)
    if not inodes:
        return "no listening process found (a connection, or another network namespace, holds it)"
    wanted = {f"socket:[{inode}]" for inode in inodes}
    holders: list[str] = []
    for pid_dir in proc.iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            fds = list((pid_dir / "fd").iterdir())
            if any(os.readlink(fd) in wanted for fd in fds):
                cmdline = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                holders.append(f"pid {pid_dir.name}: {cmdline.strip()[:160]}")
        except OSError:  # gone meanwhile, or another user's process
            continue
    return "; ".join(holders) or "a process this user may not inspect (`ss -ltnp` as root names it)"


def live_url(value: str, endpoint: str | None) -> str:
    """``value`` with a local URL's port replaced by the live endpoint's.

    An emulator restored from a state snapshot keeps the URLs it wrote when it ran on another port (queue
    URLs in the stack outputs, for instance); whoever prints or returns them must give the live one.
    Anything that is not a URL on this machine is returned unchanged.
    """
    if not endpoint or not value.startswith(("http://", "https://")):
        return value
    live, url = urlsplit(endpoint), urlsplit(value)
    host = url.hostname or ""
    if not (host in _LOCAL_HOSTS or host.endswith(".localhost") or host.endswith(".localstack.cloud")):
        return value
    if live.port is None or url.port == live.port:
        return value
    return urlunsplit(url._replace(netloc=f"{host}:{live.port}"))


def answers(url: str) -> bool:
    """Something accepts connections at the URL's host and port (any service: LocalStack, AWS, ...)."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "localhost",
                                       parts.port or (443 if parts.scheme == "https" else 80)), timeout=2):
            return True
    except OSError:
        return False
