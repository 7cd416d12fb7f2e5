"""send-batch stopped by Ctrl-C, once or twice: the counts still add up, and say what to do.

The real CLI in a subprocess against a real SMTP server in this process (the fixture of
tests/test_crash.py: SQLite and PostgreSQL). The server holds one message unanswered, so
that the Ctrl-C comes while a case is in hand.
"""

from __future__ import annotations

import json
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
from test_crash import Setup, setup

#: The fixture of tests/test_crash.py (SQLite and PostgreSQL), used by name.
FIXTURES = (setup,)

CASES = 12  # x 2 partners
REQUESTS = CASES * 2
HELD = 7  # the server holds the 7th message (the 4th case's first) unanswered

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT"),
]


def start(setup: Setup, batch: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*setup.command(batch), "--json", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=setup.env(),
    )


def hold_the_7th(setup: Setup) -> threading.Event:
    """Make the server hold the 7th message until the returned event is set."""
    release = threading.Event()
    setup.sink.stop_at = HELD
    setup.sink.hold = lambda: release.wait(60) and None
    return release


def document(out: bytes) -> dict[str, Any]:
    """The one JSON document on stdout."""
    lines = out.decode().splitlines()
    assert len(lines) == 1, lines
    result: dict[str, Any] = json.loads(lines[0])
    return result


def test_ctrl_c_counts_every_request_and_says_to_run_again(setup: Setup) -> None:
    """One Ctrl-C: the case in hand is finished, the requests never reached are counted
    not started (each request in exactly one count), and the error is a documented
    Interrupted that says to run the same command again."""
    release = hold_the_7th(setup)
    batch = write_jsonl(setup.workspace, make_cases(setup.workspace, CASES))
    process = start(setup, batch)
    try:
        assert setup.sink.reached.wait(90), "the batch never reached the 7th message"
        process.send_signal(signal.SIGINT)
        time.sleep(0.3)
        release.set()
        out, err = process.communicate(timeout=120)
    finally:
        release.set()
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1, err
    ran = document(out)
    counts = ran["counts"]
    assert sum(counts.values()) == REQUESTS
    assert counts["sent"] == 8  # the case in hand (the 7th and 8th) was finished
    assert counts["not_started"] == REQUESTS - 8
    assert ran["interrupted"] is True
    assert ran["error"]["type"] == "Interrupted"
    assert ran["error"]["reason"] == "interrupted"
    assert "Run the same command again" in ran["error"]["message"]

    again = setup.run(batch)
    assert again.returncode == 0, again.stderr
    assert set(setup.sink.per_request().values()) == {1}
    assert len(setup.sink.per_request()) == REQUESTS


def test_ctrl_c_in_plain_text_names_the_requests_not_started(setup: Setup) -> None:
    """Without --json the summary counts them too, and says what to do about them."""
    release = hold_the_7th(setup)
    batch = write_jsonl(setup.workspace, make_cases(setup.workspace, CASES))
    process = subprocess.Popen(
        setup.command(batch), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=setup.env()
    )
    try:
        assert setup.sink.reached.wait(90), "the batch never reached the 7th message"
        process.send_signal(signal.SIGINT)
        time.sleep(0.3)
        release.set()
        out, err = process.communicate(timeout=120)
    finally:
        release.set()
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1, err
    assert f", {REQUESTS - 8} not started; 0 bad row(s)." in out.decode()
    assert (
        f"Not started: {REQUESTS - 8} request(s), as the batch was stopped before them. "
        "Run the same command again: it sends only what was not sent."
    ) in err.decode()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_second_ctrl_c_stops_at_once_and_still_prints_the_document(
    setup: Setup, workers: int
) -> None:
    """Two Ctrl-Cs (to the parent only, with workers) while the server holds a message:
    the run ends without waiting for the server, with its JSON document and exit 1; the
    held request is counted unconfirmed (its outcome is not in the log), every request in
    one count; nothing is sent after; the batch run again sends exactly the rest."""
    release = hold_the_7th(setup)
    batch = write_jsonl(setup.workspace, make_cases(setup.workspace, CASES))
    process = start(setup, batch, "--workers", str(workers))
    try:
        assert setup.sink.reached.wait(90), "the batch never reached the 7th message"
        process.send_signal(signal.SIGINT)
        time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)  # well before the server answers
    finally:
        release.set()
        if process.poll() is None:
            process.kill()
    delivered = len(setup.sink.messages)
    time.sleep(1)
    assert len(setup.sink.messages) == delivered  # nothing sent after the second Ctrl-C
    assert process.returncode == 1, err
    ran = document(out)
    counts = ran["counts"]
    assert sum(counts.values()) == REQUESTS
    assert ran["error"]["type"] == "Interrupted"
    # The held one (and, with workers, one the other worker had handed over and the
    # blocked server never took) is unconfirmed: handed over, its outcome not in the log.
    assert 1 <= counts["unconfirmed"] <= workers
    assert counts["not_started"] > 0
    assert counts["sent"] + counts["unconfirmed"] + counts["not_started"] == REQUESTS
    held = setup.sink.messages[HELD - 1]
    assert held["X-MASH-Case-Ref"] in {item["case_ref"] for item in ran["unconfirmed"]}
    assert {item["outcome"] for item in ran["unsent"]} == {"unconfirmed"}
    assert all("outcome is not in the log" in item["reason"] for item in ran["unsent"])
    sent = [e for e in setup.events() if e.kind is EventKind.SENT]
    assert len(sent) == counts["sent"]
    assert held["Message-ID"] not in {e.message_id for e in sent}

    again = setup.run(batch)
    assert again.returncode == 1, again.stderr  # left unconfirmed over SMTP
    per_request = setup.sink.per_request()
    assert set(per_request.values()) == {1}
    assert len(per_request) >= REQUESTS - counts["unconfirmed"] + 1
