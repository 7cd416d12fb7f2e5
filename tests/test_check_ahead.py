"""Forms checked ahead of need in a helper process: same verdicts, nothing left behind.

A batch of many cases checks the next cases' forms in a helper process while it sends
(:mod:`mash_requests.referral_form.ahead`). Only an acceptance of exactly the bytes that will
be attached may come from the helper; everything else is decided by the batch's own process,
as without a helper. The helper ends with the batch, and with a batch killed by ``kill -9``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mash_requests.audit.events import EventKind
from mash_requests.batch import CHECK_AHEAD_FROM, send_batch
from mash_requests.config import load_settings
from mash_requests.referral_form import Reason, check_form
from mash_requests.referral_form.ahead import CheckAhead
from test_batch import make_cases, write_jsonl
from workspace import Workspace

LIMITS = {"max_size": 10 * 1024 * 1024, "case_ref_field": "case_reference"}


def _form(workspace: Workspace, number: int = 0) -> tuple[Path, str]:
    case = make_cases(workspace, number + 1)[number]
    return workspace.root / case["referral_form"], case["case_ref"]


def _alive(pid: int) -> bool:
    """Whether the process runs (a zombie waiting for its reaper has ended)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _helpers_of(pid: int) -> list[int]:
    """The check-ahead helpers ``pid`` started."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="ascii")
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"referral_form.ahead" in command:
            found.append(int(entry.name))
    return found


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


def test_the_helper_accepts_the_bytes_the_caller_read(workspace: Workspace) -> None:
    """The helper's verdict is the one check_form gives, for the same bytes and case."""
    path, ref = _form(workspace)
    data = path.read_bytes()
    with CheckAhead(**LIMITS) as ahead:  # type: ignore[arg-type]
        ahead.submit(path, ref, None)
        assert ahead.outstanding == 1
        verdict = ahead.result(path, ref, None, data)
    assert verdict is not None and verdict.accepted
    assert verdict == check_form(data, ref, case_ref_field="case_reference")


def test_a_file_changed_after_the_helper_read_it_gets_no_verdict(workspace: Workspace) -> None:
    """The helper read other bytes than the caller will attach: the caller checks its own."""
    path, ref = _form(workspace)
    with CheckAhead(**LIMITS) as ahead:  # type: ignore[arg-type]
        ahead.submit(path, ref, None)
        assert ahead.result(path, ref, None, path.read_bytes() + b"\n%changed") is None


def test_a_refusal_is_left_for_the_caller_to_decide(workspace: Workspace) -> None:
    """The helper refusing a form (here: another case's) gives no verdict either way."""
    path, _ = _form(workspace)
    with CheckAhead(**LIMITS) as ahead:  # type: ignore[arg-type]
        ahead.submit(path, "MASH-2026-9999", None)
        assert ahead.result(path, "MASH-2026-9999", None, path.read_bytes()) is None
        # And a form never submitted has no verdict: nothing is waited for.
        assert ahead.result(path, "MASH-2026-5000", None, path.read_bytes()) is None


@needs_proc
def test_a_helper_that_dies_leaves_the_caller_to_check(workspace: Workspace) -> None:
    """Killed mid-run, the helper is given up for the rest of the run, without an error."""
    first, ref = _form(workspace)
    second, ref2 = _form(workspace, 1)
    with CheckAhead(**LIMITS) as ahead:  # type: ignore[arg-type]
        ahead.submit(first, ref, None)
        assert ahead.result(first, ref, None, first.read_bytes()) is not None
        [helper] = _helpers_of(os.getpid())
        os.kill(helper, signal.SIGKILL)
        ahead.submit(second, ref2, None)
        assert ahead.result(second, ref2, None, second.read_bytes()) is None
        ahead.submit(second, ref2, None)  # given up: nothing started again
        assert ahead.outstanding == 0
    assert _helpers_of(os.getpid()) == []


@needs_proc
def test_a_batch_uses_the_helper_and_its_verdicts_are_the_same(workspace: Workspace) -> None:
    """A batch long enough to check ahead sends every good case and refuses the one whose
    form is another case's, for that reason, exactly as one checked in turn; the helper has
    ended when the batch returns."""
    cases = make_cases(workspace, CHECK_AHEAD_FROM + 2)
    cases[5]["referral_form"] = cases[6]["referral_form"]  # another case's form
    batch = write_jsonl(workspace, cases)
    seen: list[int] = []
    settings = load_settings(workspace.config)

    def progress(_: object) -> None:
        seen.extend(_helpers_of(os.getpid()))

    result = send_batch(settings, batch, skip_invalid=True, progress=progress)
    assert seen, "no helper was started for a long batch"
    assert _helpers_of(os.getpid()) == []
    partners = len(cases[0]["partners"])
    assert result.counts["sent"] == (len(cases) - 1) * partners
    assert [(ref, reason) for _, ref, reason in result.refused] == [
        (cases[5]["case_ref"], str(Reason.WRONG_CASE))
    ]
    refused = [e for e in workspace.events() if e.kind is EventKind.REJECTED]
    assert {(e.case_ref, e.reason) for e in refused} == {
        (cases[5]["case_ref"], str(Reason.WRONG_CASE))
    }


@needs_proc
@pytest.mark.slow
def test_kill_9_of_a_batch_leaves_no_helper_and_no_lock(workspace: Workspace) -> None:
    """A batch killed while checking ahead leaves no helper running, and the rerun at
    once sends the rest, each request once."""
    cases = make_cases(workspace, CHECK_AHEAD_FROM + 4)
    batch = write_jsonl(workspace, cases)
    command = [sys.executable, "-m", "mash_requests", "send-batch", str(batch),
               "--config", str(workspace.config)]  # fmt: skip
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    helpers: list[int] = []
    deadline = time.monotonic() + 60
    while not helpers and first.poll() is None and time.monotonic() < deadline:
        helpers = _helpers_of(first.pid)
        time.sleep(0.01)
    assert helpers, "the batch started no helper"
    first.kill()
    first.communicate(timeout=30)  # returns: the helper holds none of the batch's pipes
    gone_by = time.monotonic() + 15
    while any(_alive(pid) for pid in helpers) and time.monotonic() < gone_by:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in helpers), "the helper outlived its batch"

    second = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    files = workspace.outbox_files()  # the outbox's files are what was delivered
    assert len(files) == len(cases) * len(cases[0]["partners"])
    refs = [e.request_ref for e in workspace.events() if e.kind is EventKind.SENT]
    assert len(refs) == len(set(refs)) == len(files)
