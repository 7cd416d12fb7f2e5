"""A refused Exchange login through the CLI: one login per run, and the same words everywhere.

The fake is the switch tests' EWS endpoint (``switch_helpers.EwsFake``): it refuses a wrong
Basic password as IIS does (401, its challenges and page, ``Connection: close`` unless told
otherwise) and counts every request that carried credentials.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result

from mash_requests.audit.events import EventKind
from mash_requests.cli import main
from switch_helpers import EWS_PASSWORD, MAILBOX, EwsFake, ews_fake
from workspace import Workspace

FIVE = ("police", "health", "education", "probation", "housing")
#: Two more partners, so the example case asks five; five attempts allowed, no waits.
EXTRA_CONFIG = """
[partners.probation]
name = "Testshire Probation"
addresses = ["mash@testbury.gov.uk"]
template = "probation"

[partners.housing]
name = "Testbury Housing"
addresses = ["housing@testbury.gov.uk"]
template = "housing"

[rate_limit]
per_minute = 100000
"""
REFUSED_WORDS = (
    "HTTP 401 Unauthorized: 401 - Unauthorized: Access is denied due to invalid credentials."
)


@pytest.fixture
def exchange(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> Iterator[EwsFake]:
    """The workspace switched to the EWS fake, with a password Exchange refuses."""
    with ews_fake() as fake:
        monkeypatch.setenv("TEST_EWS_PASSWORD", "not-the-password")
        config = workspace.config.read_text(encoding="utf-8")
        config = config.replace("max_attempts = 2", "max_attempts = 5")
        workspace.config.write_text(config + EXTRA_CONFIG + fake.config, encoding="utf-8")
        yield fake


def cli(workspace: Workspace, *args: str) -> Result:
    result = CliRunner().invoke(main, [*args, "--config", str(workspace.config)])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def send_five(workspace: Workspace) -> Result:
    data = workspace.example_case()
    data["partners"] = list(FIVE)
    case = workspace.write_case(data)
    return cli(workspace, "send-request", "--case", str(case))


@pytest.mark.parametrize("close", [True, False], ids=["connection-close", "keep-alive"])
def test_five_partners_refused_login_is_one_login_and_five_failures(
    workspace: Workspace, exchange: EwsFake, close: bool
) -> None:
    """One login reaches Exchange; all five requests end failed with the same reason."""
    exchange.close_on_refusal = close
    result = send_five(workspace)
    assert result.exit_code == 1
    assert exchange.logins == 1 and exchange.creates == []
    failed = [e for e in workspace.events() if e.kind is EventKind.FAILED]
    assert sorted(e.partner for e in failed) == sorted(FIVE)
    assert len({e.reason for e in failed}) == 1
    assert {e.server_message for e in failed} == {REFUSED_WORDS}
    assert REFUSED_WORDS.rstrip(".") in str(failed[0].reason)
    assert str(failed[0].reason).startswith("Exchange refused the credentials")
    assert "refused the message" not in result.output
    attempts = [e for e in workspace.events() if e.kind is EventKind.ATTEMPT_FAILED]
    assert [(e.attempt, e.error_class) for e in attempts] == [(1, "permanent")]
    for partner in FIVE:
        assert " failed " in next(
            line for line in result.stdout.splitlines() if line.startswith(f"{partner} ")
        )


def test_refused_login_never_shows_the_password(workspace: Workspace, exchange: EwsFake) -> None:
    """Neither the output nor the log holds the refused or the real password."""
    result = send_five(workspace)
    log = workspace.log_path.read_bytes()
    for secret in ("not-the-password", EWS_PASSWORD):
        assert secret not in result.output and secret.encode() not in log


def test_gateway_check_says_the_credentials_were_refused(
    workspace: Workspace, exchange: EwsFake
) -> None:
    """gateway check prints the refused-credentials sentence, exits 1, after one login."""
    result = cli(workspace, "gateway", "check")
    assert result.exit_code == 1
    assert result.output == (
        f"Error: Exchange refused the credentials for {MAILBOX} (user svc-mash@testbury.gov.uk)"
        f" while opening Sent Items: {REFUSED_WORDS.rstrip('.')}; check username and "
        "password_env (or password_file)\n"
    )
    assert exchange.logins == 1
