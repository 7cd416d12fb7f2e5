"""The README walkthrough, as a new user runs it: send, drop the example replies, fetch, overdue."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
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


def test_the_example_replies_shrink_the_overdue_list(checkout: Path) -> None:
    """Five requests due; after the example replies: probation bounced, housing still waiting."""
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

    # The evidence report's timeliness section shows the same: three answered, one bounced.
    code, out, err = run_cli(
        "audit", "report", "--config", config, "--out", str(checkout / "report.html")
    )
    assert code == 0, out + err
    page = (checkout / "report.html").read_text(encoding="utf-8")
    timeliness = page[page.index('id="timeliness"') :]
    assert "All agencies: 3 of 5 (60.0%) answered within the timescale" in timeliness
    assert "Probation Service, Eastshire: 1 of 1 (100%) bounced, not answered" in timeliness
    assert "100% in time (3 of 3 due)" in timeliness  # the bounced one is not due yet
