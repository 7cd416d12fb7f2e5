"""Each command needs only the secrets it uses: what sends nothing (form fill and check,
overdue, replies record, chase --dry-run) runs without the gateway's secret; what sends or
connects refuses early and clearly without it, before anything is sent or logged."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner, Result

from mash_requests.api import send_request
from mash_requests.cli import main
from mash_requests.config import load_settings
from mash_requests.errors import ConfigError
from test_batch import make_cases, write_jsonl
from workspace import EXAMPLES, Workspace

#: The gateway's secret: never set in these tests.
UNSET = "MASH_TEST_SECRET_NOT_SET"

GATEWAYS = {
    "smtp": (
        '[gateway]\ntype = "smtp"\n[gateway.smtp]\nhost = "127.0.0.1"\nport = 9\n'
        'mailbox = "mash@testbury.gov.uk"\nauth = "login"\nusername = "mash"\n'
        f'password_env = "{UNSET}"\ntimeout = 2\n'
    ),
    "graph": (
        '[gateway]\ntype = "graph"\n[gateway.graph]\nmailbox = "mash@testbury.gov.uk"\n'
        'tenant_id = "00000000-0000-0000-0000-000000000001"\n'
        'client_id = "00000000-0000-0000-0000-000000000002"\n'
        f'client_secret_env = "{UNSET}"\n'
    ),
}


def without_secret(workspace: Workspace, kind: str = "smtp") -> Path:
    """The workspace's config sending through ``kind``, whose secret is not set."""
    text = workspace.config.read_text(encoding="utf-8")
    text = text.split("[gateway]")[0]  # drop a gateway set by an earlier call
    workspace.config.write_text(
        f'{text}\n[replies]\nsource = "folder"\nfolder = "replies"\n{GATEWAYS[kind]}',
        encoding="utf-8",
    )
    return workspace.config


def cli(workspace: Workspace, *args: str) -> Result:
    result = CliRunner().invoke(main, [*args, "--config", str(workspace.config)])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


@pytest.fixture(autouse=True)
def _secret_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(UNSET, raising=False)


@pytest.mark.parametrize("kind", sorted(GATEWAYS))
def test_form_fill_and_check_run_without_the_gateway_secret(
    workspace: Workspace, kind: str
) -> None:
    """Filling and checking a form send nothing: no gateway secret is asked for."""
    without_secret(workspace, kind)
    case = workspace.write_case(workspace.example_case())
    out = workspace.root / "filled.pdf"
    blank = EXAMPLES / "forms" / "blank-referral-form.pdf"
    filled = cli(workspace, "form", "fill", "--template", str(blank), "--case", str(case),
                 "--out", str(out))  # fmt: skip
    assert filled.exit_code == 0, filled.output
    assert out.is_file()
    checked = cli(workspace, "form", "check", str(out), "--case-ref", "MASH-2026-0412")
    assert checked.exit_code == 0, checked.output
    assert UNSET not in filled.output + checked.output


def test_overdue_and_replies_record_run_without_the_gateway_secret(
    workspace: Workspace,
) -> None:
    """A request sent earlier (outbox); the config then names a gateway whose secret is
    not set here: overdue lists it and replies record records its answer."""
    case = workspace.write_case(workspace.example_case())
    sent = cli(workspace, "send-request", "--case", str(case), "--partner", "police", "--json")
    assert sent.exit_code == 0, sent.output
    [request] = json.loads(sent.stdout)["requests"]
    without_secret(workspace)
    listed = cli(workspace, "overdue", "--within", "10000", "--json")
    assert listed.exit_code == 0, listed.output
    assert [r["request_ref"] for r in json.loads(listed.stdout)["requests"]] == [
        request["request_ref"]
    ]
    time.sleep(1.1)  # answered after it was sent, to the second
    received = datetime.now(UTC).isoformat(timespec="seconds")
    recorded = cli(workspace, "replies", "record", request["request_ref"], "--received",
                   received, "--channel", "phone")  # fmt: skip
    assert recorded.exit_code == 0, recorded.output
    assert recorded.stdout.startswith(f"recorded: {request['request_ref']}")
    assert UNSET not in recorded.output


def _logged(workspace: Workspace) -> int:
    """How many events the dispatch log holds (read without the gateway's secrets)."""
    from mash_requests.audit import open_store
    from mash_requests.config import load_log_settings

    store = open_store(load_log_settings(workspace.config))
    try:
        return sum(1 for _ in store.events())
    finally:
        store.close()


def _sent_police(workspace: Workspace) -> str:
    """One request sent to police through the outbox, before the gateway is switched."""
    case = workspace.write_case(workspace.example_case())
    sent = cli(workspace, "send-request", "--case", str(case), "--partner", "police", "--json")
    assert sent.exit_code == 0, sent.output
    [request] = json.loads(sent.stdout)["requests"]
    return str(request["request_ref"])


@pytest.mark.parametrize("kind", sorted(GATEWAYS))
def test_chase_dry_run_runs_without_the_gateway_secret(workspace: Workspace, kind: str) -> None:
    """A dry run sends nothing: it checks the form and builds the reminder, records
    nothing, and neither reads the gateway's secret nor opens the gateway."""
    ref = _sent_police(workspace)
    events = _logged(workspace)
    without_secret(workspace, kind)
    result = cli(workspace, "chase", "--dry-run", "--request", ref)
    assert result.exit_code == 0, result.output
    assert "Dry run: 1 reminder(s) checked and built; nothing was sent." in result.stdout
    assert UNSET not in result.output
    assert _logged(workspace) == events and len(workspace.outbox_files()) == 1


def test_chase_dry_run_still_checks_the_form_without_the_gateway_secret(
    workspace: Workspace,
) -> None:
    """Without the secret, a dry run still finds and checks the form: a missing one is
    refused (exit 1), and nothing is recorded."""
    ref = _sent_police(workspace)
    events = _logged(workspace)
    without_secret(workspace)
    (workspace.forms / "MASH-2026-0412.pdf").unlink()
    result = cli(workspace, "chase", "--dry-run", "--request", ref)
    assert result.exit_code == 1, result.output
    assert "refused (no_form)" in result.stdout
    assert _logged(workspace) == events


def test_a_real_chase_refuses_early_without_the_gateway_secret(workspace: Workspace) -> None:
    """Not a dry run: exit 2 with the same Error line as the other senders, nothing sent,
    nothing (not even a form refusal) recorded."""
    ref = _sent_police(workspace)
    events = _logged(workspace)
    without_secret(workspace)
    (workspace.forms / "MASH-2026-0412.pdf").unlink()
    result = cli(workspace, "chase", "--request", ref)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == (
        f"Error: config {workspace.config}: [gateway.smtp] password_env: environment "
        f"variable {UNSET} is not set; set it and retry"
    )
    assert _logged(workspace) == events and len(workspace.outbox_files()) == 1


def test_the_chase_api_refuses_to_send_with_settings_without_gateway_secrets(
    workspace: Workspace,
) -> None:
    """chase(settings) with gateway_secrets=False settings: a dry run works; a real run
    raises ConfigError before it records anything (here, the missing form's refusal)."""
    from mash_requests.replies import ChaseOutcome, chase

    ref = _sent_police(workspace)
    events = _logged(workspace)
    without_secret(workspace)
    settings = load_settings(workspace.config, gateway_secrets=False)
    dry = chase(settings, [ref], dry_run=True)
    assert [item.outcome for item in dry.outcomes] == [ChaseOutcome.DRY_RUN]
    (workspace.forms / "MASH-2026-0412.pdf").unlink()
    with pytest.raises(ConfigError, match="secrets were not read"):
        chase(settings, [ref])
    assert _logged(workspace) == events


@pytest.mark.parametrize(
    "command",
    [
        ["send-request", "--case", "{case}"],
        ["send-batch", "{batch}"],
        ["chase"],
        ["gateway", "check"],
        ["replies", "fetch"],
        ["reconcile"],
    ],
    ids=lambda c: " ".join(w for w in c if "{" not in w and not w.startswith("-")),
)
def test_commands_that_send_or_connect_refuse_early_without_it(
    workspace: Workspace, command: list[str]
) -> None:
    """Exit 2, one Error line naming the variable, nothing sent and nothing logged."""
    case = workspace.write_case(workspace.example_case())
    batch = write_jsonl(workspace, make_cases(workspace, 1))
    without_secret(workspace)
    args = [w.format(case=case, batch=batch) for w in command]
    result = cli(workspace, *args)
    assert result.exit_code == 2, result.output
    assert f"environment variable {UNSET} is not set" in result.stderr
    assert "Traceback" not in result.output
    assert workspace.outbox_files() == [] and not workspace.log_path.exists()


def test_settings_without_gateway_secrets_cannot_send(workspace: Workspace) -> None:
    """The API: gateway_secrets=False validates the gateway, reads no secret, and a send
    with such settings is refused before anything is logged."""
    from mash_requests.config import GatewayNotRead

    without_secret(workspace)
    with pytest.raises(ConfigError, match=UNSET):
        load_settings(workspace.config)
    settings = load_settings(workspace.config, gateway_secrets=False)
    assert isinstance(settings.gateway, GatewayNotRead)
    assert (settings.gateway.kind, settings.gateway.mailbox) == ("smtp", "mash@testbury.gov.uk")
    with pytest.raises(ConfigError, match="secrets were not read"):
        settings.gateway.open()
    with pytest.raises(ConfigError, match="secrets were not read"):
        send_request(settings, workspace.write_case(workspace.example_case()))
    from mash_requests.audit import open_store

    store = open_store(settings.log)
    try:
        assert [stored.event.kind.value for stored in store.events()] == []
    finally:
        store.close()


def test_gateway_table_is_still_validated_without_its_secrets(workspace: Workspace) -> None:
    """A typo in the gateway's table is refused even when its secrets are not read."""
    without_secret(workspace)
    text = workspace.config.read_text(encoding="utf-8").replace("port = 9", "prot = 9")
    workspace.config.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="prot"):
        load_settings(workspace.config, gateway_secrets=False)


# -- the referral form's password ----------------------------------------------------------

#: ``[form] password_env``'s variable: never set in these tests.
FORM_UNSET = "MASH_TEST_FORM_PASSWORD_NOT_SET"


def with_form_password(workspace: Workspace) -> Path:
    """The workspace's config with ``[form] password_env`` naming a variable not set."""
    with workspace.config.open("a", encoding="utf-8") as handle:
        handle.write(f'\n[form]\npassword_env = "{FORM_UNSET}"\n')
    return workspace.config


@pytest.fixture
def _form_password_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FORM_UNSET, raising=False)
    monkeypatch.delenv("MASH_FORM_PASSWORD", raising=False)


@pytest.mark.usefixtures("_form_password_unset")
def test_overdue_runs_without_the_form_password(workspace: Workspace) -> None:
    """overdue opens no form: an unset [form] password_env does not stop the listing."""
    ref = _sent_police(workspace)
    with_form_password(workspace)
    listed = cli(workspace, "overdue", "--within", "10000", "--json")
    assert listed.exit_code == 0, listed.output
    assert [r["request_ref"] for r in json.loads(listed.stdout)["requests"]] == [ref]
    assert FORM_UNSET not in listed.output


@pytest.mark.usefixtures("_form_password_unset")
@pytest.mark.parametrize(
    "command",
    [
        ["reconcile"],
        ["gateway", "check"],
        ["replies", "fetch", "--dry-run"],
        ["replies", "record", "{ref}", "--received", "{now}", "--channel", "phone"],
    ],
    ids=lambda c: " ".join(w for w in c if "{" not in w and not w.startswith("-"))[:20],
)
def test_commands_that_open_no_form_run_without_the_form_password(
    workspace: Workspace, command: list[str]
) -> None:
    """Looking in Sent Items, checking the gateway, reading and recording replies open no
    referral form: an unset [form] password_env does not stop them."""
    ref = _sent_police(workspace)
    (workspace.root / "replies").mkdir()
    with workspace.config.open("a", encoding="utf-8") as handle:
        handle.write('\n[replies]\nsource = "folder"\nfolder = "replies"\n')
    with_form_password(workspace)
    now = datetime.now(ZoneInfo("Europe/London")).strftime("%Y-%m-%d %H:%M")
    result = cli(workspace, *(w.format(ref=ref, now=now) for w in command))
    assert result.exit_code == 0, result.output
    assert FORM_UNSET not in result.output


@pytest.mark.usefixtures("_form_password_unset")
@pytest.mark.parametrize(
    "command",
    [
        ["send-request", "--case", "{case}"],
        ["send-batch", "{batch}"],
        ["chase", "--request", "{ref}"],
        ["chase", "--dry-run", "--request", "{ref}"],
        ["form", "check", "{form}", "--case-ref", "MASH-2026-0412"],
        ["form", "fill", "--template", "{blank}", "--case", "{case}", "--out", "{out}"],
    ],
    ids=lambda c: " ".join(w for w in c if "{" not in w and not w.startswith("-")),
)
def test_commands_that_open_forms_still_need_the_form_password(
    workspace: Workspace, command: list[str]
) -> None:
    """What opens a form keeps refusing early: exit 2, the variable named, nothing logged."""
    ref = _sent_police(workspace)
    events = _logged(workspace)
    case = workspace.write_case(workspace.example_case(), name="again.json")
    batch = write_jsonl(workspace, make_cases(workspace, 1))
    with_form_password(workspace)
    args = [
        w.format(
            case=case,
            batch=batch,
            ref=ref,
            form=workspace.forms / "MASH-2026-0412.pdf",
            blank=EXAMPLES / "forms" / "blank-referral-form.pdf",
            out=workspace.root / "filled.pdf",
        )
        for w in command
    ]
    result = cli(workspace, *args)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == (
        f"Error: config {workspace.config}: [form] password_env: environment variable "
        f"{FORM_UNSET} is not set; set it and retry"
    )
    assert _logged(workspace) == events and len(workspace.outbox_files()) == 1


def test_form_table_is_still_validated_without_its_password(workspace: Workspace) -> None:
    """form_secrets=False reads no password but still refuses a password written in the
    config, or a typo in [form]."""
    for table, problem in (
        ('password = "hunter2"', "secrets are not written in the config"),
        ('password_env = "NOT A NAME"', "expected an environment variable name"),
        ('pasword_env = "X"', "unknown key"),
    ):
        text = workspace.config.read_text(encoding="utf-8").split("\n[form]")[0]
        workspace.config.write_text(f"{text}\n[form]\n{table}\n", encoding="utf-8")
        with pytest.raises(ConfigError, match=problem):
            load_settings(workspace.config, gateway_secrets=False, form_secrets=False)
