"""An operator's process killed mid-batch (kill -9), then the batch run again at once.

Each test runs ``mash-requests send-batch`` as a real subprocess against a real SMTP server
in this process (aiosmtpd), kills it with SIGKILL at a chosen point, and runs the same
command again straight away: every request is delivered exactly once, the one that may have
reached the server is recorded ``unconfirmed`` and not sent again, and the summary's counts
are what the server saw. On SQLite and on PostgreSQL.
"""

from __future__ import annotations

import email
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from mash_requests.audit.events import EventKind
from test_batch import make_cases, write_jsonl
from workspace import Workspace

POSTGRES_DSN = os.environ.get("MASH_TEST_POSTGRES_DSN")
CASES = 12  # × 2 partners = 24 requests

pytestmark = pytest.mark.slow


@dataclass
class Sink:
    """An SMTP handler that keeps every message and can stop at the Nth DATA.

    ``hold`` is called (in the server's thread) when the Nth message has arrived in full,
    before the server answers; whatever it does, the message counts as delivered.
    """

    stop_at: int = 0
    hold: Callable[[], None] = lambda: None
    messages: list[email.message.Message] = field(default_factory=list)
    reached: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=policy.default)
        with self.lock:
            self.messages.append(message)
            count = len(self.messages)
        if count == self.stop_at:
            self.reached.set()
            self.hold()
        else:
            time.sleep(0.01)
        return "250 OK queued"

    def per_request(self) -> Counter[tuple[str, str]]:
        with self.lock:
            return Counter((m["X-MASH-Case-Ref"], m["To"]) for m in self.messages)


@dataclass
class Setup:
    workspace: Workspace
    backend: str
    dsn: str | None
    sink: Sink
    port: int

    def configure(self, *, per_minute: int = 100000) -> None:
        log = (
            '[log]\nbackend = "postgres"\ndsn_env = "MASH_TEST_LOG_DSN"\n'
            if self.backend == "postgres"
            else ""
        )
        self.workspace.config.write_text(
            self.workspace.config.read_text().split("\n#--\n")[0]
            + f"""
#--
[gateway]
type = "smtp"

[gateway.smtp]
host = "127.0.0.1"
port = {self.port}
security = "none"
mailbox = "mash@testbury.gov.uk"

[rate_limit]
per_minute = {per_minute}

{log}""",
            encoding="utf-8",
        )

    def command(self, batch: Path) -> list[str]:
        return [sys.executable, "-m", "mash_requests", "send-batch", str(batch),
                "--config", str(self.workspace.config)]  # fmt: skip

    def env(self) -> dict[str, str]:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if self.dsn:
            env["MASH_TEST_LOG_DSN"] = self.dsn
        return env

    def start(self, batch: Path) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self.command(batch), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env()
        )

    def run(self, batch: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(batch), capture_output=True, text=True, timeout=120, env=self.env()
        )

    def events(self) -> list[Any]:
        os.environ.setdefault("MASH_TEST_LOG_DSN", self.dsn or "")
        return self.workspace.events()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def setup(
    request: pytest.FixtureRequest, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Setup]:
    """A workspace sending over SMTP to an in-process server, logging on each backend."""
    backend: str = request.param
    dsn = None
    schema = f"test_{uuid.uuid4().hex[:12]}"
    if backend == "postgres":
        if not POSTGRES_DSN:
            pytest.skip("PostgreSQL tests need MASH_TEST_POSTGRES_DSN (see .ci/run)")
        import psycopg
        from psycopg import conninfo

        with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}".encode())
        dsn = conninfo.make_conninfo(POSTGRES_DSN, options=f"-c search_path={schema}")
        monkeypatch.setenv("MASH_TEST_LOG_DSN", dsn)
    sink = Sink()
    with _socket_port() as port:
        controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    setup = Setup(workspace, backend, dsn, sink, port)
    setup.configure()
    try:
        yield setup
    finally:
        controller.stop()
        if backend == "postgres":
            import psycopg

            assert POSTGRES_DSN is not None
            with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE".encode())


class _socket_port:
    def __enter__(self) -> int:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return int(probe.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        pass


def summary(output: str) -> dict[str, int]:
    """The summary line's counts by label."""
    line = next(line for line in output.splitlines() if line.startswith("Summary: "))
    return {label: int(n) for n, label in re.findall(r"(\d+) ([a-z ]+?)(?:,|;)", line)}


def _kill(process: subprocess.Popen[bytes]) -> None:
    process.kill()
    process.communicate(timeout=30)
    assert process.returncode == -9


def test_kill_while_a_message_is_in_the_gateway(setup: Setup) -> None:
    """Killed while the server holds the 7th message unanswered, the rerun sends the rest at
    once, records the 7th unconfirmed without resending it, and counts exactly that."""
    release = threading.Event()
    setup.sink.stop_at = 7
    setup.sink.hold = lambda: release.wait(30) and None
    batch = write_jsonl(setup.workspace, make_cases(setup.workspace, CASES))
    first = setup.start(batch)
    assert setup.sink.reached.wait(60), "the batch never reached the 7th message"
    _kill(first)
    release.set()  # the server keeps the message: it reached the gateway

    started = time.monotonic()
    second = setup.run(batch)
    assert time.monotonic() - started < 60  # no lease waited out
    assert second.returncode == 1, second.stderr
    assert set(setup.sink.per_request().values()) == {1}
    assert len(setup.sink.per_request()) == CASES * 2
    assert summary(second.stdout) == {
        "sent": CASES * 2 - 7,
        "already sent": 6,
        "in flight in another run": 0,
        "unconfirmed": 1,
        "failed": 0,
        "refused": 0,
    }
    unconfirmed = [e for e in setup.events() if e.kind is EventKind.UNCONFIRMED]
    assert [e.reason for e in unconfirmed] == ["interrupted"]
    held = setup.sink.messages[6]
    assert (unconfirmed[0].case_ref, unconfirmed[0].recipients[0]) == (
        held["X-MASH-Case-Ref"],
        held["To"].split(",")[0].strip(),
    )
    assert "1 request(s) unconfirmed" in second.stderr


def test_kill_after_the_gateway_took_it_before_the_log_recorded_it(setup: Setup) -> None:
    """Killed after the server answered 250 for the 5th message but before its ``sent`` was
    written, the rerun records it unconfirmed (never resends) and sends the rest."""
    locked = threading.Event()
    unlock = threading.Event()

    def hold_the_log() -> None:
        # Take the log's write lock before answering, so the sender's "sent" must wait.
        def holder() -> None:
            if setup.backend == "sqlite":
                conn = sqlite3.connect(setup.workspace.log_path, isolation_level=None)
                conn.execute("BEGIN IMMEDIATE")
                locked.set()
                unlock.wait(60)
                conn.execute("ROLLBACK")
                conn.close()
            else:
                import psycopg

                assert setup.dsn is not None
                with psycopg.connect(setup.dsn) as conn:
                    conn.execute("LOCK TABLE events IN EXCLUSIVE MODE")
                    locked.set()
                    unlock.wait(60)
                    conn.rollback()

        threading.Thread(target=holder, daemon=True).start()
        assert locked.wait(30)

    setup.sink.stop_at = 5
    setup.sink.hold = hold_the_log
    batch = write_jsonl(setup.workspace, make_cases(setup.workspace, CASES))
    first = setup.start(batch)
    assert setup.sink.reached.wait(60)
    time.sleep(1.0)  # the 250 reaches the sender, which then waits for the log
    _kill(first)
    unlock.set()

    second = setup.run(batch)
    assert second.returncode == 1, second.stderr
    assert set(setup.sink.per_request().values()) == {1}
    assert len(setup.sink.per_request()) == CASES * 2
    counts = summary(second.stdout)
    assert (counts["sent"], counts["already sent"], counts["unconfirmed"]) == (
        CASES * 2 - 5,
        4,
        1,
    )
    kinds = [e.kind for e in setup.events()]
    assert kinds.count(EventKind.UNCONFIRMED) == 1
    assert kinds.count(EventKind.SENT) == CASES * 2 - 1


def test_kill_while_waiting_for_the_rate_limit(setup: Setup) -> None:
    """Killed while it waits for the per-minute limit, with the next request claimed but
    not handed over, the rerun sends that request too: nothing unconfirmed, exit 0."""
    setup.configure(per_minute=3)
    batch = write_jsonl(setup.workspace, make_cases(setup.workspace, 3))
    first = setup.start(batch)
    deadline = time.monotonic() + 60
    while len(setup.sink.messages) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # the 4th request is claimed and waits for the minute to pass
    _kill(first)
    assert len(setup.sink.messages) == 3
    prepared = [e for e in setup.events() if e.kind is EventKind.PREPARED]
    assert len(prepared) == 4

    setup.configure()  # the operator lifts the limit for the rerun
    second = setup.run(batch)
    assert second.returncode == 0, second.stderr
    assert set(setup.sink.per_request().values()) == {1}
    assert len(setup.sink.per_request()) == 6
    counts = summary(second.stdout)
    assert (counts["sent"], counts["already sent"], counts["unconfirmed"]) == (3, 3, 0)
    not_sent = [e for e in setup.events() if e.kind is EventKind.RECONCILED]
    assert [e.details["outcome"] for e in not_sent] == ["not_sent"]


def test_two_runs_of_one_batch_share_it_and_both_end_0(setup: Setup) -> None:
    """Two processes started together on one batch deliver each request once between them,
    and both exit 0 with counts that add up."""
    batch = write_jsonl(setup.workspace, make_cases(setup.workspace, CASES))
    first, second = setup.start(batch), setup.start(batch)
    outputs = [p.communicate(timeout=180) for p in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], [err for _, err in outputs]
    assert set(setup.sink.per_request().values()) == {1}
    assert len(setup.sink.per_request()) == CASES * 2
    counts = [summary(out.decode()) for out, _ in outputs]
    assert counts[0]["sent"] + counts[1]["sent"] == CASES * 2
    assert counts[0]["already sent"] == counts[1]["sent"]
    rejected = [e for e in setup.events() if e.kind is EventKind.REJECTED]
    assert rejected == []
