"""The README walkthrough, as a new user runs it: send, drop the example replies, fetch, overdue."""

from __future__ import annotations

import email
import json
import shutil
import subprocess
import sys
from email import policy
from pathlib import Path

import pytest
from replies_helpers import run_cli

from workspace import EXAMPLES


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of examples/ in a fresh folder, as in a clone (data lands in ../mash-data)."""
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MASH_REQUESTS_CONFIG", raising=False)
    monkeypatch.setenv("MASH_OPERATOR", "s.okafor")
    return tmp_path


def _overdue(config: str) -> list[dict[str, object]]:
    code, out, err = run_cli("overdue", "--within", "336", "--format", "jsonl", "--config", config)
    assert code in (0, 1), err
    return [json.loads(line) for line in out.splitlines()]


def test_the_readme_walkthrough(checkout: Path) -> None:
    """Send, example replies, fetch: overdue shrinks; chase the rest; the report opens.

    The README's "Replies and overdue requests" walkthrough, command by command, as a new
    user runs it from a clone: five requests due; after the example replies, probation
    bounced and housing still waiting; a dry-run chase builds housing's reminder and sends
    nothing; the chase sends it, threaded and with the same form; overdue counts it; a
    second chase keeps the interval; the evidence report is written from the same log.
    """
    config = "examples/mash-requests.toml"
    code, out, err = run_cli(
        "send-request", "--config", config, "--case", "examples/cases/MASH-2026-0412.json"
    )
    assert code == 0, out + err
    before = _overdue(config)
    assert sorted(item["partner"] for item in before) == [
        "education", "health", "housing", "police", "probation",
    ]  # fmt: skip
    made = subprocess.run(
        [sys.executable, "examples/make_replies.py", "--config", config],
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    assert "8 example replies for case MASH-2026-0412 written" in made.stdout

    code, out, _ = run_cli("replies", "fetch", "--config", config)
    assert code == 1  # a bounce and an unmatched message need a person
    assert out.startswith("folder: 8 new message(s)")
    for line in (
        "3  replies from partners",
        "2  automatic replies (not answers)",
        "1  read receipts (not answers)",
        "1  bounced: the partner did not get the request",
        "1  unmatched: a person must look at them",
    ):
        assert line in out
    assert "UNMATCHED from securemail.example" in out

    after = {str(item["partner"]): item["state"] for item in _overdue(config)}
    assert after == {"probation": "bounced", "housing": "due_soon"}

    code, out, _ = run_cli("replies", "fetch", "--config", config)
    assert code == 0 and "0 new message(s)" in out and "8 already seen" in out

    housing = next(item for item in _overdue(config) if item["partner"] == "housing")
    outbox = checkout / "mash-data" / "outbox"
    sent_before = sorted(outbox.glob("*.eml"))

    code, out, err = run_cli("chase", "--config", config, "--within", "336", "--dry-run")
    assert code == 0, out + err
    rows = {line.split()[0]: line for line in out.splitlines()[1:-1]}
    assert set(rows) == {"probation", "housing"}
    assert "skipped (bounced)" in rows["probation"]
    assert rows["housing"].split()[1:4] == [housing["request_ref"], "1", "of"]
    assert rows["housing"].rstrip().endswith("dry run")
    assert out.splitlines()[-1] == (
        "Dry run: 1 reminder(s) checked and built; nothing was sent; 1 skipped."
    )
    assert sorted(outbox.glob("*.eml")) == sent_before

    code, out, err = run_cli("chase", "--config", config, "--within", "336")
    assert code == 0, out + err
    assert out.splitlines()[-1] == "1 reminder(s) sent; 1 skipped."
    (reminder_file,) = set(outbox.glob("*.eml")) - set(sent_before)
    reminder = email.message_from_bytes(reminder_file.read_bytes(), policy=policy.default)
    original = next(
        m for m in (email.message_from_bytes(f.read_bytes(), policy=policy.default)
                    for f in sent_before)
        if m["X-MASH-Request-Ref"] == housing["request_ref"]
    )  # fmt: skip
    assert reminder["In-Reply-To"] == original["Message-ID"] == housing["message_id"]
    assert reminder["Subject"].startswith("OFFICIAL-SENSITIVE: ")
    assert reminder["Reply-To"] == "mash-replies@eastbury.gov.uk"
    assert original["Reply-To"] == "sam.okafor@eastbury.gov.uk, mash-replies@eastbury.gov.uk"
    (form,) = reminder.iter_attachments()
    (original_form,) = original.iter_attachments()
    assert form.get_content() == original_form.get_content()

    chasers = {str(item["partner"]): item["chasers"] for item in _overdue(config)}
    assert chasers == {"probation": 0, "housing": 1}
    code, out, _ = run_cli("chase", "--config", config, "--within", "336")
    assert code == 0 and "skipped (interval)" in out and "0 reminder(s) sent" in out

    code, out, err = run_cli("audit", "report", "--config", config, "--out", "evidence.html")
    assert code == 0, out + err
    # A reminder is not a request: the report's sending figures still count five.
    assert "5 request(s) sent, 100% (5 of 5) with the referral form attached" in out
    assert (checkout / "evidence.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    # The evidence report's timeliness section shows the same: three answered, one bounced.
    page = (checkout / "evidence.html").read_text(encoding="utf-8")
    timeliness = page[page.index('id="timeliness"') :]
    assert "All agencies: 3 of 5 (60.0%) answered within the timescale" in timeliness
    assert "Probation Service, Eastshire: 1 of 1 (100%) bounced, not answered" in timeliness
    assert "100% in time (3 of 3 due)" in timeliness  # the bounced one is not due yet
    code, out, _ = run_cli("audit", "verify", "--config", config)
    assert code == 0 and "intact" in out


def test_make_replies_with_a_mailbox_source_says_to_give_out(checkout: Path) -> None:
    """examples/make_replies.py with [replies] source = "imap" (whose "folder" is a mailbox
    name, not a folder) and no --out: one line saying what to do, no traceback."""
    config = checkout / "examples" / "mash-requests.toml"
    text = config.read_text(encoding="utf-8")
    text = text.replace('source = "folder"', 'source = "imap"', 1).replace(
        '# [replies.imap]\n# host = "imap.eastbury.gov.uk"\n# username = "mash-replies"\n'
        '# password_env = "MASH_IMAP_PASSWORD"',
        '[replies.imap]\nhost = "imap.eastbury.gov.uk"\nusername = "mash-replies"\n'
        'password_env = "MASH_IMAP_PASSWORD"',
    )
    assert "[replies.imap]\nhost" in text
    config.write_text(text, encoding="utf-8")
    code, out, err = run_cli(
        "send-request", "--config", str(config), "--case", "examples/cases/MASH-2026-0412.json"
    )
    assert code == 0, out + err
    made = subprocess.run(
        [sys.executable, "examples/make_replies.py", "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 1
    assert "Traceback" not in made.stderr
    assert "or give --out" in made.stderr
