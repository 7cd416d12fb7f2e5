"""send-batch --workers N: one batch, N processes, each request sent once.

Real worker processes (spawned as the CLI spawns them) sharing the workspace's SQLite log;
crash behaviour (a worker or the parent killed) is in tests/test_crash_workers.py.
"""

from __future__ import annotations

from collections import Counter

import pytest

from mash_requests.audit.events import EventKind
from mash_requests.batch import BatchProgress, send_batch
from mash_requests.config import load_settings
from test_batch import invoke, make_cases, write_jsonl
from workspace import Workspace

CASES = 8  # x 2 partners


def test_two_workers_send_every_request_once(workspace: Workspace) -> None:
    """Two worker processes share the batch: every request sent once, counted once, by
    two runs of their own (two run ids in the log); progress comes after every case."""
    batch = write_jsonl(workspace, make_cases(workspace, CASES))
    seen: list[int] = []

    def progress(state: BatchProgress) -> None:
        seen.append(state.done)

    result = send_batch(load_settings(workspace.config), batch, workers=2, progress=progress)
    assert result.counts == Counter({"sent": CASES * 2})
    assert result.all_sent and not result.interrupted
    assert len(workspace.outbox_files()) == CASES * 2
    events = workspace.events()
    sent = Counter(e.request_key for e in events if e.kind is EventKind.SENT)
    assert len(sent) == CASES * 2 and set(sent.values()) == {1}
    runs = {e.details["run"] for e in events if e.kind is EventKind.PREPARED}
    assert len(runs) == 2
    assert seen == [2 * n for n in range(1, CASES + 1)]


def test_workers_again_send_nothing_twice(workspace: Workspace) -> None:
    """The same batch again with workers: everything already sent, nothing delivered."""
    batch = write_jsonl(workspace, make_cases(workspace, 3))
    settings = load_settings(workspace.config)
    send_batch(settings, batch, workers=2)
    again = send_batch(settings, batch, workers=3)
    assert again.counts == Counter({"already_sent": 6})
    assert len(workspace.outbox_files()) == 6


def test_workers_from_the_cli_summarise_as_one_run(workspace: Workspace) -> None:
    """--workers 2 prints one summary for the whole batch and exits 0."""
    batch = write_jsonl(workspace, make_cases(workspace, 3))
    code, out, err = invoke(workspace, str(batch), "--workers", "2")
    assert code == 0, err
    assert "Summary: 6 sent" in out
    assert len(workspace.outbox_files()) == 6


def test_workers_refusals_are_counted_with_their_rows(workspace: Workspace) -> None:
    """A case whose form is another case's is refused in its worker and listed by row."""
    cases = make_cases(workspace, 3)
    cases[1]["referral_form"] = cases[0]["referral_form"]
    batch = write_jsonl(workspace, cases)
    result = send_batch(load_settings(workspace.config), batch, workers=2)
    assert result.counts == Counter({"sent": 4, "rejected": 2})
    assert [(row, ref) for row, ref, _ in result.refused] == [(2, cases[1]["case_ref"])]


def test_workers_below_one_are_refused(workspace: Workspace) -> None:
    """--workers 0 is refused by name with exit 2; the API raises ValueError."""
    batch = write_jsonl(workspace, make_cases(workspace, 1))
    code, _, err = invoke(workspace, str(batch), "--workers", "0")
    assert code == 2
    assert "--workers" in err and "0" in err
    with pytest.raises(ValueError, match="at least 1"):
        send_batch(load_settings(workspace.config), batch, workers=0)
    assert workspace.outbox_files() == []


def test_workers_run_with_a_replies_table(workspace: Workspace) -> None:
    """The example config has [replies]: its settings reach the workers (they once failed
    to pickle, with a traceback and nothing sent)."""
    workspace.config.write_text(
        workspace.config.read_text()
        + '\n[replies]\nsource = "folder"\nfolder = "replies"\n'
        + 'address = "mash-replies@testbury.gov.uk"\n',
        encoding="utf-8",
    )
    batch = write_jsonl(workspace, make_cases(workspace, 2))
    code, out, err = invoke(workspace, str(batch), "--workers", "2")
    assert code == 0, err
    assert "Summary: 4 sent" in out
