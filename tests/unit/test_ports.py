"""Ports ``iotpipe up`` listens on: free despite TIME_WAIT, who holds a busy one, live URLs after restarts."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from iotpipe.local.ports import live_url, port_free, port_holder


@pytest.mark.enable_socket  # reason: the behaviour under test is the kernel's bind on 127.0.0.1
def test_a_port_left_in_time_wait_is_free_and_a_listening_one_is_not() -> None:
    # GIVEN a server on a port that closed its side of a connection first (the server's port then sits
    # in TIME_WAIT, as after a crash or a quick restart of the emulator), and then stopped listening
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    # WHILE it listens, the port is taken
    assert not port_free(port)
    accepted.close()  # active close: TIME_WAIT on the server's port
    time.sleep(0.05)
    client.close()
    server.close()
    # THEN the port is free for a server that binds with SO_REUSEADDR, as the servers of `up` do
    assert port_free(port)
    # AND the plain bind the old check made would have called it busy (the reason for SO_REUSEADDR)
    with socket.socket() as plain:
        try:
            plain.bind(("127.0.0.1", port))
            plain_ok = True
        except OSError:
            plain_ok = False
    assert not plain_ok, "no TIME_WAIT left behind: the test did not set up what it means to check"


def test_the_holder_of_a_port_is_named_from_proc(tmp_path: Path) -> None:
    # GIVEN a /proc where pid 4242 listens on port 4566 (inode 777) and pid 99 holds another socket
    proc = tmp_path
    (proc / "net").mkdir()
    header = "sl local_address rem_address st tx_queue rx_queue tr tm->when retrnsmt  uid timeout inode\n"
    (proc / "net" / "tcp").write_text(
        header
        + "   0: 0100007F:11D6 00000000:0000 0A 00000000:00000000 00:00000000 00000000  0 0 777 1 0\n"
        + "   1: 0100007F:11D7 0100007F:11D6 01 00000000:00000000 00:00000000 00000000  0 0 778 1 0\n")
    for pid, inode, cmd in (("4242", "777", b"python\0-m\0ministack\0"), ("99", "778", b"curl\0")):
        (proc / pid / "fd").mkdir(parents=True)
        os.symlink(f"socket:[{inode}]", proc / pid / "fd" / "3")
        (proc / pid / "cmdline").write_bytes(cmd)
    # THEN the listener is named with its command line, and a free port says no listener was found
    assert port_holder(4566, proc) == "pid 4242: python -m ministack"
    assert port_holder(4567, proc).startswith("no listening process found")


def test_local_urls_of_restored_outputs_point_at_the_live_endpoint() -> None:
    live = "http://127.0.0.1:53889"
    # a queue URL written by the emulator when it ran on 4566, restored from its snapshot
    assert live_url("http://localhost:4566/000000000000/iotpipe-dlq", live) == \
        "http://localhost:53889/000000000000/iotpipe-dlq"
    assert live_url("http://sqs.us-east-1.localhost.localstack.cloud:4566/0/q", "http://localhost:4599") == \
        "http://sqs.us-east-1.localhost.localstack.cloud:4599/0/q"
    # AWS URLs, non-URLs and already-live URLs are left as they are; no endpoint (AWS): unchanged
    for value in ("https://sqs.us-east-1.amazonaws.com/1/q", "iotpipe-readings", f"{live}/x"):
        assert live_url(value, live) == value
    assert live_url("http://localhost:4566/0/q", None) == "http://localhost:4566/0/q"
