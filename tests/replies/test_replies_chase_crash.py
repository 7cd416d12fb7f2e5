"""A chase killed (kill -9) while its reminder is in the gateway, then run again at once.

``mash-requests chase`` runs as a real subprocess against a real SMTP server in this process
(aiosmtpd, the fixture of tests/test_crash.py), is killed while the server holds the
reminder unanswered, and is run again straight away: the reminder that may have reached the
server is recorded ``unconfirmed`` (SMTP cannot look in Sent Items) and never sent again.
On SQLite and on PostgreSQL.
"""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from mash_requests.audit.events import EventKind
from test_crash import Setup, _kill, setup  # noqa: F401 - the fixture, shared

pytestmark = pytest.mark.slow


def _chase(run: Setup, ref: str) -> list[str]:
    return [sys.executable, "-m", "mash_requests", "chase", "--request", ref,
            "--config", str(run.workspace.config)]  # fmt: skip


def test_kill_while_a_reminder_is_in_the_gateway(setup: Setup) -> None:  # noqa: F811
    """The rerun settles the killed run's reminder as unconfirmed; the server has one copy."""
    workspace = setup.workspace
    case = workspace.write_case(workspace.example_case())
    sent = subprocess.run(
        [sys.executable, "-m", "mash_requests", "send-request", "--case", str(case),
         "--partner", "police", "--config", str(workspace.config)],
        capture_output=True, text=True, timeout=120, env=setup.env(), check=False,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    (request,) = [e for e in setup.events() if e.kind is EventKind.SENT]
    assert request.request_ref is not None

    release = threading.Event()
    setup.sink.stop_at = 2  # the request was the first message; the reminder is held
    setup.sink.hold = lambda: release.wait(30) and None
    first = subprocess.Popen(
        _chase(setup, request.request_ref),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=setup.env(),
    )
    assert setup.sink.reached.wait(60), "the chase never reached the server"
    _kill(first)
    release.set()  # the server keeps the reminder: it reached the gateway

    second = subprocess.run(
        _chase(setup, request.request_ref),
        capture_output=True, text=True, timeout=120, env=setup.env(), check=False,
    )  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert "skipped (interval): reminder 1 may have been delivered (unconfirmed" in second.stdout
    assert len(setup.sink.messages) == 2
    reminder = setup.sink.messages[1]
    assert reminder["In-Reply-To"] == request.message_id
    steps = [
        (str(e.details["outcome"]), e.reason) for e in setup.events() if e.kind is EventKind.CHASED
    ]
    assert steps == [("handing_over", None), ("unconfirmed", "interrupted")]
