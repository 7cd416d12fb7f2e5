"""A refused connection or a refused message says what to do, after the server's own words,
in gateway check's Error line and in a request's failed reason (SMTP, EWS, Graph)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from click.testing import CliRunner, Result

from gateways.graph_fake import JSON, Fault
from mash_requests.cli import main
from switch_helpers import GraphFake, SmtpFake, fake_mail_system
from workspace import Workspace

CONNECT_ADVICE = (
    "check host and port, that the mail server is running, and that no firewall blocks this "
    "machine from it"
)


def cli(workspace: Workspace, *args: str) -> Result:
    result = CliRunner().invoke(main, [*args, "--config", str(workspace.config)])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def use_smtp(workspace: Workspace, port: int) -> None:
    workspace.config.write_text(
        workspace.config.read_text(encoding="utf-8")
        + '\n[gateway]\ntype = "smtp"\n[gateway.smtp]\nhost = "127.0.0.1"\n'
        f'port = {port}\nsecurity = "none"\nauth = "none"\nmailbox = "mash@testbury.gov.uk"\n'
        "timeout = 2\n",
        encoding="utf-8",
    )


def failed_reason(result: Result, partner: str) -> str:
    """The reason in the send-request table's row for ``partner``."""
    [row] = [line for line in result.stdout.splitlines() if line.startswith(partner + " ")]
    return row


@pytest.fixture
def turned_away() -> Iterator[int]:
    """A server that answers every connection 554 (this machine is not allowed), as a
    relay does for an address it does not serve."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(b"554 5.7.1 Access denied: 127.0.0.1 may not relay here\r\n")
                conn.settimeout(1)
                with contextlib.suppress(OSError):
                    conn.recv(1024)  # QUIT, or nothing

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(5)
    listener.close()


def test_smtp_connection_refused_says_what_to_check(workspace: Workspace) -> None:
    """Nothing listening: gateway check's Error line and the failed request's reason both
    give the system's words, then what to check."""
    port = free_port()
    use_smtp(workspace, port)
    checked = cli(workspace, "gateway", "check")
    assert checked.exit_code == 1
    assert checked.stderr == (
        f"Error: could not connect to SMTP server 127.0.0.1:{port}: Connection refused; "
        f"{CONNECT_ADVICE}\n"
    )
    case = workspace.write_case(workspace.example_case())
    sent = cli(workspace, "send-request", "--case", str(case), "--partner", "police")
    assert sent.exit_code == 1
    assert f"Connection refused; {CONNECT_ADVICE})" in failed_reason(sent, "police")


def test_smtp_connection_turned_away_keeps_the_words_and_says_what_to_do(
    workspace: Workspace, turned_away: int
) -> None:
    """A 554 greeting: the server's words, then to check host and port and ask for this
    machine to be allowed."""
    use_smtp(workspace, turned_away)
    checked = cli(workspace, "gateway", "check")
    assert checked.exit_code == 1
    assert checked.stderr == (
        f"Error: SMTP server 127.0.0.1:{turned_away} refused the connection: 554 5.7.1 Access "
        "denied: 127.0.0.1 may not relay here; its words say why; check host and port, and "
        "ask its administrators to let this machine's address send through it\n"
    )


def test_smtp_refused_message_keeps_the_words_and_says_what_to_check(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 550 after DATA: the server's words, then the address and size to check."""
    with fake_mail_system("smtp", workspace.root, trustme.CA()) as smtp:
        assert isinstance(smtp, SmtpFake)
        for name, value in smtp.secrets.items():
            monkeypatch.setenv(name, value)
        workspace.config.write_text(
            workspace.config.read_text(encoding="utf-8") + smtp.config, encoding="utf-8"
        )
        smtp.handler.script = ["550"]
        case = workspace.write_case(workspace.example_case())
        sent = cli(workspace, "send-request", "--case", str(case), "--partner", "police")
    assert sent.exit_code == 1
    assert (
        "550 5.7.1 Message rejected as spam by content filter; its words say why; check that "
        "it takes mail for the partner's address and a message of this size (the form is "
        "attached), or ask its administrators)"
    ) in failed_reason(sent, "police")


def test_graph_refused_message_keeps_the_words_and_says_what_to_check(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Graph's 400 to sendMail: Graph's code and words, then what to check."""
    with fake_mail_system("graph", workspace.root, trustme.CA()) as graph:
        assert isinstance(graph, GraphFake)
        for name, value in graph.secrets.items():
            monkeypatch.setenv(name, value)
        workspace.config.write_text(
            workspace.config.read_text(encoding="utf-8") + graph.config,
            encoding="utf-8",
        )
        graph.service.fail("sendMail", Fault(status=400, headers=JSON, body=_invalid_mime()))
        case = workspace.write_case(workspace.example_case())
        sent = cli(workspace, "send-request", "--case", str(case), "--partner", "police")
    assert sent.exit_code == 1, sent.output
    reason = failed_reason(sent, "police")
    assert "Graph refused the message (400 ErrorMimeContentInvalidBase64String:" in reason
    assert (
        "; Graph's words say why; check the partner's addresses and the form's size, or ask "
        "the mailbox's administrators)"
    ) in reason


def _invalid_mime() -> str:
    from gateways.gateway_helpers import reference_file

    recorded = reference_file("graph/04_sendMail_mime_invalid_base64_response_400.http")
    return recorded[recorded.index("{") :]


def test_ews_connection_refused_says_what_to_check(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Nothing listening at the EWS endpoint: what failed, then what to check."""
    pytest.importorskip("exchangelib")
    port = free_port()
    monkeypatch.setenv("TEST_EWS_PASSWORD", "not-used")
    workspace.config.write_text(
        workspace.config.read_text(encoding="utf-8")
        + '\n[gateway]\ntype = "ews"\n[gateway.ews]\nmailbox = "mash@testbury.gov.uk"\n'
        f'endpoint = "https://127.0.0.1:{port}/EWS/Exchange.asmx"\nversion = "Exchange2016"\n'
        'auth = "basic"\nusername = "svc-mash"\npassword_env = "TEST_EWS_PASSWORD"\n'
        "timeout = 2\n",
        encoding="utf-8",
    )
    checked = cli(workspace, "gateway", "check")
    assert checked.exit_code == 1, checked.output
    assert checked.stderr.startswith(
        f"Error: could not connect to Exchange at https://127.0.0.1:{port}/EWS/Exchange.asmx "
    )
    assert checked.stderr.rstrip().endswith(
        ": connection refused; check endpoint, that Exchange is running, and that this "
        "machine can reach it (a firewall; HTTPS_PROXY where a proxy is needed)"
    )
