"""``mash-requests gateway check``: one line, and exit 0 / 1 / 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import responses
from click.testing import CliRunner
from smtp_server import PASSWORD, USER, Server

from mash_requests.cli.gateway import gateway


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MASH_REQUESTS_CONFIG", raising=False)
    return CliRunner()


def smtp_config(tmp_path: Path, server: Server, ca_file: Path, **extra: str) -> Path:
    lines = [
        "[gateway]",
        'type = "smtp"',
        "[gateway.smtp]",
        'host = "127.0.0.1"',
        f"port = {server.port}",
        f'ca_file = "{ca_file}"',
        'auth = "login"',
        f'username = "{USER}"',
        'mailbox = "mash@council.example"',
        'password_env = "TEST_SMTP_PASSWORD"',
        "timeout = 5",
        *(f'{key} = "{value}"' for key, value in extra.items()),
    ]
    path = tmp_path / "mash-requests.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_help_teaches_examples_and_exit_codes(runner: CliRunner) -> None:
    """check --help shows examples, what each gateway checks, and the exit codes."""
    result = runner.invoke(gateway, ["check", "--help"])
    assert result.exit_code == 0
    assert "mash-requests gateway check --config" in result.output
    assert "nothing is ever sent" in result.output
    assert "Exit codes: 0 the gateway works; 1 it does not" in result.output
    assert "send-request's outcome and the dispatch log give the same sentence" in result.output


def test_check_smtp_ok_prints_one_line_and_exits_0(
    runner: CliRunner,
    tmp_path: Path,
    starttls_server: Server,
    ca_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A working SMTP relay prints 'ok: smtp: connected …' and exits 0, sending nothing."""
    monkeypatch.setenv("TEST_SMTP_PASSWORD", PASSWORD)
    config = smtp_config(tmp_path, starttls_server, ca_file)
    result = runner.invoke(gateway, ["check", "--config", str(config)])
    assert result.exit_code == 0, result.output
    [line] = result.output.splitlines()
    assert line.startswith(f"ok: smtp: connected to 127.0.0.1:{starttls_server.port} over TLSv1.")
    assert starttls_server.handler.data_seen == 0


def test_check_smtp_wrong_password_exits_1_without_the_password(
    runner: CliRunner,
    tmp_path: Path,
    starttls_server: Server,
    ca_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A refused login prints 'Error: the SMTP server refused the credentials …' and exits 1."""
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "not the password")
    config = smtp_config(tmp_path, starttls_server, ca_file)
    result = runner.invoke(gateway, ["check", "--config", str(config)])
    assert result.exit_code == 1
    assert result.output.startswith("Error: the SMTP server refused the credentials (")
    assert "535" in result.output and "not the password" not in result.output


def test_check_bad_config_exits_2(runner: CliRunner, tmp_path: Path) -> None:
    """Sending in clear to a remote host is a configuration error: exit 2, nothing contacted."""
    path = tmp_path / "mash-requests.toml"
    path.write_text(
        '[gateway]\ntype = "smtp"\n[gateway.smtp]\nhost = "smtp.council.example"\n'
        'security = "none"\nmailbox = "mash@council.example"\n',
        encoding="utf-8",
    )
    result = runner.invoke(gateway, ["check", "--config", str(path)])
    assert result.exit_code == 2
    assert "[gateway.smtp] security: 'none' sends in clear" in result.output


def test_check_graph_token_refused_exits_1(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Graph with a refused client secret exits 1 and names MSAL's error code."""
    monkeypatch.setenv("TEST_GRAPH_SECRET", "graph-secret-value")
    tenant = "72aa88bf-76f0-494f-91ab-2d7cd730db47"
    path = tmp_path / "mash-requests.toml"
    path.write_text(
        '[mash]\nsender = "mash@council.example"\n'
        '[gateway]\ntype = "graph"\n[gateway.graph]\nmailbox = "mash@council.example"\n'
        f'tenant_id = "{tenant}"\nclient_id = "client-1"\n'
        'client_secret_env = "TEST_GRAPH_SECRET"\n',
        encoding="utf-8",
    )
    login = f"https://login.microsoftonline.com/{tenant}"
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(
            "GET",
            f"{login}/v2.0/.well-known/openid-configuration",
            json={
                "token_endpoint": f"{login}/oauth2/v2.0/token",
                "authorization_endpoint": f"{login}/oauth2/v2.0/authorize",
                "issuer": f"{login}/v2.0",
            },
        )
        rsps.add(
            "POST",
            f"{login}/oauth2/v2.0/token",
            status=400,
            json={
                "error": "unauthorized_client",
                "error_description": "AADSTS700016: App not found.",
            },
        )
        rsps.add(
            "GET",
            "https://login.microsoftonline.com/common/discovery/instance",
            json={"metadata": []},
        )
        result = runner.invoke(gateway, ["check", "--config", str(path)])
    assert result.exit_code == 1
    assert "unauthorized_client: AADSTS700016: App not found." in result.output
    assert "graph-secret-value" not in result.output


def test_check_default_outbox_exits_0(runner: CliRunner) -> None:
    """With no config the built-in outbox gateway is checked (its folder is writable)."""
    result = runner.invoke(gateway, ["check"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok: outbox folder ")
