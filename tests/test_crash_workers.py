"""send-batch --workers killed mid-batch: a worker, or the parent, with kill -9.

As in tests/test_crash.py: the real CLI in a subprocess, a real SMTP server in this process,
SQLite and PostgreSQL. A killed worker is replaced and the batch goes on: each request is
delivered once, the one the killed worker had handed over is recorded unconfirmed and not
sent again. A killed parent stops its workers after the case in hand, and the batch run
again sends exactly the rest.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from mash_requests.audit.events import EventKind
from test_batch import make_cases, write_jsonl
from test_crash import Setup, setup, summary

#: The fixture of tests/test_crash.py (SQLite and PostgreSQL), used by name.
FIXTURES = (setup,)

CASES = 12  # x 2 partners

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform != "linux", reason="finds processes through /proc"),
]


def command(setup: Setup, batch: Path, workers: int) -> list[str]:
    return [*setup.command(batch), "--workers", str(workers)]


def record_peers(setup: Setup) -> list[int]:
    """The client port of each message the server takes, in order."""
    peers: list[int] = []
    original = setup.sink.handle_DATA

    async def handle_DATA(server: Any, session: Any, envelope: Any) -> str:
        peers.append(int(session.peer[1]))
        return await original(server, session, envelope)

    setup.sink.handle_DATA = handle_DATA  # type: ignore[method-assign]
    return peers


def pid_of_client(port: int) -> int:
    """The process holding the loopback TCP connection whose local port is ``port``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return int(pid)
        except OSError:
            continue
    raise AssertionError(f"no process holds port {port}")


def workers_of(parent: int) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"spawn_main" in cmdline:
            found.append(int(pid))
    return found


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


def test_a_killed_worker_is_replaced_and_the_batch_ends_exactly_once(setup: Setup) -> None:
    """The worker whose message the server holds is killed: the batch goes on, every
    request reaches the server once, and that one is counted (and logged) unconfirmed."""
    release = threading.Event()
    setup.sink.stop_at = 7
    setup.sink.hold = lambda: release.wait(30) and None
    peers = record_peers(setup)
    batch = write_jsonl(setup.workspace, make_cases(setup.workspace, CASES))
    parent = subprocess.Popen(
        command(setup, batch, 2), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=setup.env()
    )
    try:
        assert setup.sink.reached.wait(90), "the batch never reached the 7th message"
        worker = pid_of_client(peers[6])
        assert worker != parent.pid
        os.kill(worker, signal.SIGKILL)
        time.sleep(0.5)
        release.set()  # the server keeps the message: it reached the gateway
        out, err = parent.communicate(timeout=180)
    finally:
        if parent.poll() is None:
            parent.kill()
    assert parent.returncode == 1, err
    per_request = setup.sink.per_request()
    assert set(per_request.values()) == {1}
    assert len(per_request) == CASES * 2
    counts = summary(out.decode())
    assert counts["unconfirmed"] == 1
    assert counts["sent"] + counts["already sent"] == CASES * 2 - 1
    assert counts["failed"] == counts["refused"] == counts["in flight in another run"] == 0
    unconfirmed = [e for e in setup.events() if e.kind is EventKind.UNCONFIRMED]
    held = setup.sink.messages[6]
    assert [(e.case_ref, e.recipients[0], e.reason) for e in unconfirmed] == [
        (held["X-MASH-Case-Ref"], held["To"].split(",")[0].strip(), "interrupted")
    ]


def test_a_killed_parent_stops_its_workers_and_the_rerun_sends_the_rest(setup: Setup) -> None:
    """kill -9 of the parent: its workers finish the case in hand and exit; the batch run
    again delivers exactly what had not gone, and ends 0."""
    batch = write_jsonl(setup.workspace, make_cases(setup.workspace, CASES))
    parent = subprocess.Popen(
        command(setup, batch, 2), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=setup.env()
    )
    deadline = time.monotonic() + 90
    while len(setup.sink.messages) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    workers = workers_of(parent.pid)
    assert len(workers) == 2
    parent.kill()
    parent.communicate(timeout=30)
    deadline = time.monotonic() + 60
    while not all(gone(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(gone(pid) for pid in workers), "workers outlived their parent"
    delivered = len(setup.sink.messages)
    assert delivered < CASES * 2

    second = subprocess.run(
        command(setup, batch, 2), capture_output=True, text=True, timeout=180, env=setup.env()
    )
    assert second.returncode == 0, second.stderr
    per_request = setup.sink.per_request()
    assert set(per_request.values()) == {1}
    assert len(per_request) == CASES * 2
    counts = summary(second.stdout)
    assert (counts["sent"], counts["already sent"], counts["unconfirmed"]) == (
        CASES * 2 - delivered,
        delivered,
        0,
    )
