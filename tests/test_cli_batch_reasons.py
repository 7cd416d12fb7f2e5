"""send-batch's closing table says, for each request not sent, the case, partner and why,
and what to do; --json lists every one. Through a real SMTP server."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import trustme
from click.testing import CliRunner, Result

from mash_requests.batch import send_batch
from mash_requests.cli import main
from mash_requests.config import load_settings
from switch_helpers import FakeMailSystem, SmtpFake, fake_mail_system
from test_batch import make_cases, write_jsonl
from workspace import Workspace

#: What the example case holds about the child: never in the table.
CHILD_DETAILS = ["Leo Hartley", "Hartley", "14 Alder Row", "EB3 2QT", "2016-04-09"]


@pytest.fixture
def smtp(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpFake]:
    """The workspace sending through a real in-process SMTP server."""
    with fake_mail_system("smtp", workspace.root, trustme.CA()) as system:
        assert isinstance(system, SmtpFake)
        for name, value in system.secrets.items():
            monkeypatch.setenv(name, value)
        workspace.config.write_text(
            workspace.config.read_text(encoding="utf-8")
            + "\n[rate_limit]\nper_minute = 100000\n"
            + system.config,
            encoding="utf-8",
        )
        yield system


def batch(workspace: Workspace, *args: str) -> Result:
    result = CliRunner().invoke(main, ["send-batch", "--config", str(workspace.config), *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def mixed_batch(workspace: Workspace, smtp: FakeMailSystem) -> list[dict[str, object]]:
    """Three cases (police then health each): row 1 police refused by the server (550),
    row 2 police's answer lost (unconfirmed), row 3 carrying row 1's form (refused)."""
    assert isinstance(smtp, SmtpFake)
    cases = make_cases(workspace, 3)
    cases[2]["referral_form"] = cases[0]["referral_form"]  # another case's form
    smtp.handler.script = ["550", "ok", "drop", "ok"]
    write_jsonl(workspace, cases)
    return cases


def test_closing_table_gives_each_unsent_request_its_case_partner_and_reason(
    workspace: Workspace, smtp: SmtpFake
) -> None:
    """Each refused, failed or unconfirmed request has its own line (row, case, partner,
    reason), and each kind what to do; no child detail is printed."""
    cases = mixed_batch(workspace, smtp)
    result = batch(workspace, str(workspace.root / "batch.jsonl"))
    assert result.exit_code == 1
    assert "2 sent, 0 already sent, 0 in flight in another run, 1 unconfirmed, 1 failed, " \
        "2 refused" in result.stdout  # fmt: skip
    lines = result.stderr.splitlines()
    [failed] = [line for line in lines if f"case {cases[0]['case_ref']}, police:" in line]
    assert failed.startswith(f"  row 1, case {cases[0]['case_ref']}, police: failed: ")
    assert "the message was refused by SMTP server" in failed
    assert "550 5.7.1 Message rejected as spam by content filter" in failed
    [unconfirmed] = [line for line in lines if f"case {cases[1]['case_ref']}, police:" in line]
    assert unconfirmed.startswith(
        f"  row 2, case {cases[1]['case_ref']}, police: unconfirmed (request "
        f"{cases[1]['case_ref']}-POLICE-"
    )
    refused = [line for line in lines if f"case {cases[2]['case_ref']}," in line]
    assert refused == [
        f"  row 3, case {cases[2]['case_ref']}, {partner}: refused: wrong_case "
        "(another case's form)"
        for partner in ("health", "police")
    ]
    assert any(line.startswith("Failed: nothing was delivered.") for line in lines)
    assert any(line.startswith("Refused: nothing was sent.") for line in lines)
    assert any(line.startswith("1 request(s) unconfirmed: they may") for line in lines)
    for detail in CHILD_DETAILS:
        assert detail not in result.output


def test_closing_table_says_nothing_more_when_everything_was_sent(
    workspace: Workspace, smtp: SmtpFake
) -> None:
    """All sent: the summary line only, no list and no advice."""
    write_jsonl(workspace, make_cases(workspace, 1))
    result = batch(workspace, str(workspace.root / "batch.jsonl"))
    assert result.exit_code == 0
    assert [line for line in result.stderr.splitlines() if not line.startswith("progress:")] == []
    assert "Not sent" not in result.output


def test_json_lists_every_unsent_request_with_its_reason(
    workspace: Workspace, smtp: SmtpFake
) -> None:
    """--json: ``unsent`` has one entry per request not sent (outcome, reason, partner,
    request reference), the failed one included, which had no entry before."""
    cases = mixed_batch(workspace, smtp)
    result = batch(workspace, str(workspace.root / "batch.jsonl"), "--json")
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    unsent = [(u["row"], u["partner"], u["outcome"]) for u in document["unsent"]]
    assert unsent == [
        (1, "police", "failed"),
        (2, "police", "unconfirmed"),
        (3, "health", "rejected"),
        (3, "police", "rejected"),
    ]
    failed, unconfirmed, refused, _ = document["unsent"]
    assert failed["case_ref"] == cases[0]["case_ref"]
    assert "550 5.7.1 Message rejected as spam" in failed["reason"]
    assert failed["request_ref"].startswith(f"{cases[0]['case_ref']}-POLICE-")
    assert unconfirmed["request_ref"] == document["unconfirmed"][0]["request_ref"]
    assert unconfirmed["reason"]
    assert (refused["reason"], refused["request_ref"]) == ("wrong_case", None)


def test_workers_report_every_unsent_request(workspace: Workspace) -> None:
    """With worker processes the result still lists each refused request with its reason."""
    cases = make_cases(workspace, 3)
    cases[1]["referral_form"] = cases[0]["referral_form"]
    path = write_jsonl(workspace, cases)
    result = send_batch(load_settings(workspace.config), path, workers=2)
    assert [(u.row, u.partner, u.outcome, u.reason) for u in result.unsent] == [
        (2, "health", "rejected", "wrong_case"),
        (2, "police", "rejected", "wrong_case"),
    ]
