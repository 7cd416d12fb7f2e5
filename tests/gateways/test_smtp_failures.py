"""What each SMTP failure reads as, and how often it is tried (issues 14 and 10).

Against the real aiosmtpd server (TLS from a trustme CA) or, for a server that offers only
TLS 1.1, a blocking-OpenSSL STARTTLS server (see smtp_server.OldTlsServer). The same sentence
must reach the outcome column of ``send-request``, the log's ``failed`` event and
``mash-requests gateway check``; failures that waiting cannot mend are tried once.
"""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from click.testing import CliRunner, Result
from smtp_server import (
    PASSWORD,
    USER,
    CountingAuthenticator,
    FaultyHandler,
    OldTlsServer,
    Server,
    authenticator,
    free_port,
    server_context,
    start,
)

from mash_requests.audit.events import EventKind
from mash_requests.cli import main
from mash_requests.errors import Failure, PermanentGatewayError, TransientGatewayError
from mash_requests.gateways.base import OutgoingMessage
from mash_requests.gateways.smtp import Settings, tls_failure
from mash_requests.retry import RetryPolicy, SendResult, SendStatus, send_with_retry
from workspace import Workspace

POLICY = RetryPolicy(max_attempts=3, max_seconds=300, initial_wait=0, max_wait=0, jitter=0)
PAST = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
#: The fix the untrusted-certificate sentence ends with.
SET_CA_FILE = "set ca_file to the CA that signed it, or have the server's certificate fixed"


def starttls(ca: trustme.CA, **kwargs: Any) -> Server:
    """The usual STARTTLS + AUTH LOGIN server; ``context``/``handler``/``auth`` replace parts."""
    return start(
        kwargs.pop("handler", FaultyHandler()),
        tls_context=kwargs.pop("context", None) or server_context(ca),
        require_starttls=True,
        authenticator=kwargs.pop("auth", authenticator),
        auth_require_tls=True,
        **kwargs,
    )


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    """Servers a test starts, stopped when it ends."""
    started: list[Server] = []
    yield started
    for server in started:
        server.controller.stop()


def send_once(port: int, ca_file: Path | None, message: OutgoingMessage, **kw: Any) -> SendResult:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "mailbox": "mash@council.example",
        "ca_file": ca_file,
        "auth": "login",
        "username": USER,
        "password": PASSWORD,
        "timeout": 5,
        **kw,
    }
    gateway = Settings(**values).open()
    try:
        return send_with_retry(gateway, message, POLICY, sleep=lambda s: None)
    finally:
        gateway.close()


# -- each failure kind: its sentence, its kind, its attempts --------------------------------


def test_untrusted_certificate_names_ca_file_and_is_tried_once(
    ca: trustme.CA, servers: list[Server], message: OutgoingMessage
) -> None:
    """A certificate from an unknown CA fails once, naming ca_file, in OpenSSL's own words."""
    servers.append(server := starttls(ca))
    result = send_once(server.port, None, message)
    assert result.reason == (
        f"the certificate of SMTP server 127.0.0.1:{server.port} is not trusted: "
        f"unable to get local issuer certificate; {SET_CA_FILE}"
    )
    assert (result.status, result.failure, result.attempts) == (
        SendStatus.FAILED,
        Failure.TLS,
        1,
    )
    assert result.server_message == "unable to get local issuer certificate"


def test_certificate_for_another_host_name_is_tried_once(
    ca: trustme.CA, ca_file: Path, servers: list[Server], message: OutgoingMessage
) -> None:
    """A trusted certificate issued for another name fails once and says to set host."""
    servers.append(server := starttls(ca, context=server_context(ca, "mail.other.example")))
    result = send_once(server.port, ca_file, message)
    assert result.reason == (
        f"the certificate of SMTP server 127.0.0.1:{server.port} is not valid for the host "
        "name 127.0.0.1: IP address mismatch, certificate is not valid for '127.0.0.1'; set "
        "host to a name the certificate was issued for, or have the certificate reissued "
        "for 127.0.0.1"
    )
    assert (result.failure, result.attempts) == (Failure.TLS, 1)


def test_expired_certificate_is_tried_once(
    ca: trustme.CA, ca_file: Path, servers: list[Server], message: OutgoingMessage
) -> None:
    """An expired certificate fails once and says to have it renewed."""
    context = server_context(ca, "127.0.0.1", not_after=PAST)
    servers.append(server := starttls(ca, context=context))
    result = send_once(server.port, ca_file, message)
    assert result.reason == (
        f"the certificate of SMTP server 127.0.0.1:{server.port} is out of date: certificate "
        "has expired; have the server's certificate renewed (or this computer's clock "
        "corrected)"
    )
    assert (result.failure, result.attempts) == (Failure.TLS, 1)


def test_server_offering_only_tls_1_1_is_tried_once(
    ca: trustme.CA, ca_file: Path, message: OutgoingMessage
) -> None:
    """A server that offers only TLS 1.0/1.1 fails once: 'the server offers TLS older than 1.2'."""
    old = OldTlsServer(ca)
    try:
        result = send_once(old.port, ca_file, message)
    finally:
        old.stop()
    assert result.reason == (
        f"the server offers TLS older than 1.2 (SMTP server 127.0.0.1:{old.port}): "
        "[SSL: TLSV1_ALERT_PROTOCOL_VERSION] tlsv1 alert protocol version; have the server "
        "upgraded to TLS 1.2 or later; older versions are never used"
    )
    assert (result.failure, result.attempts) == (Failure.TLS, 1)
    assert old.handshakes == 1 and old.server_errors == ["UNSUPPORTED_PROTOCOL"]


def test_implicit_tls_to_a_starttls_port_is_tried_once_and_says_which_security(
    ca: trustme.CA, ca_file: Path, servers: list[Server], message: OutgoingMessage
) -> None:
    """security = 'tls' against a port that starts in clear fails once and names 'starttls'."""
    servers.append(server := starttls(ca))
    result = send_once(server.port, ca_file, message, security="tls")
    assert result.reason == (
        f"SMTP server 127.0.0.1:{server.port} did not answer in TLS: [SSL: "
        "WRONG_VERSION_NUMBER] wrong version number; security = 'tls' needs a port that "
        "speaks TLS from the first byte (usually 465); for port 587 use security = 'starttls'"
    )
    assert (result.failure, result.attempts) == (Failure.TLS, 1)


def test_refused_password_reads_as_refused_credentials(
    ca: trustme.CA, ca_file: Path, servers: list[Server], message: OutgoingMessage
) -> None:
    """A 535 reads 'the SMTP server refused the credentials', once, without the password."""
    servers.append(server := starttls(ca, auth=(counter := CountingAuthenticator())))
    result = send_once(server.port, ca_file, message, password="not the password")
    assert result.reason == (
        f"the SMTP server refused the credentials (127.0.0.1:{server.port}, AUTH LOGIN as "
        "mash-sender): 535 5.7.8 Authentication credentials invalid; check username and the "
        "password (password_env or password_file)"
    )
    assert (result.failure, result.attempts, counter.attempts) == (Failure.AUTHENTICATION, 1, 1)
    assert "refused the message" not in result.reason


def test_refused_xoauth2_token_says_what_to_check(
    ca: trustme.CA, ca_file: Path, servers: list[Server], message: OutgoingMessage
) -> None:
    """A refused XOAUTH2 login is an authentication failure naming the app's settings."""
    from mash_requests.gateways.smtp import SmtpGateway

    servers.append(server := starttls(ca))
    settings = Settings(
        host="127.0.0.1",
        port=server.port,
        mailbox="mash@council.example",
        ca_file=ca_file,
        auth="xoauth2",
        username="mash@council.example",
        timeout=5,
    )
    gateway = SmtpGateway(settings, token=lambda: "a-token-the-server-refuses")
    try:
        result = send_with_retry(gateway, message, POLICY, sleep=lambda s: None)
    finally:
        gateway.close()
    assert (result.failure, result.attempts) == (Failure.AUTHENTICATION, 1)
    assert result.reason.startswith("the SMTP server refused the credentials (")
    assert "check tenant_id and client_id" in result.reason
    assert "a-token-the-server-refuses" not in result.reason


def test_login_required_at_mail_from_is_an_authentication_failure(
    ca: trustme.CA, ca_file: Path, servers: list[Server], message: OutgoingMessage
) -> None:
    """A 530 at MAIL FROM (no auth configured) is a permanent authentication failure."""
    servers.append(server := starttls(ca, auth_required=True))
    result = send_once(server.port, ca_file, message, auth="none", username=None, password=None)
    assert result.reason == (
        f"SMTP server 127.0.0.1:{server.port} requires a login before it takes mail: 530 5.7.0 "
        "Authentication required; set auth, username and password_env (or password_file) in "
        "[gateway.smtp]"
    )
    assert (result.failure, result.attempts) == (Failure.AUTHENTICATION, 1)


def test_550_at_rcpt_reads_as_the_recipient_was_refused(
    ca: trustme.CA, ca_file: Path, servers: list[Server], message: OutgoingMessage
) -> None:
    """A 550 at RCPT TO reads 'the recipient was refused' with the server's words; once."""
    handler = FaultyHandler(refused_recipients={"dsl@school.example"})
    servers.append(server := starttls(ca, handler=handler))
    result = send_once(server.port, ca_file, message)
    assert result.reason == (
        f"the recipient was refused by SMTP server 127.0.0.1:{server.port} (RCPT TO "
        "dsl@school.example): 550 5.1.1 <dsl@school.example>: Recipient address rejected: "
        "User unknown in virtual mailbox table; check the partner's address in the partner "
        "directory"
    )
    assert (result.failure, result.attempts, handler.data_seen) == (Failure.RECIPIENT, 1, 0)


def test_relay_denied_at_rcpt_says_the_address_is_not_the_problem(
    ca: trustme.CA, ca_file: Path, servers: list[Server], message: OutgoingMessage
) -> None:
    """Postfix refuses relaying at RCPT TO (5.7.1): a policy on who sends, not a bad
    address, so the advice is about the account or the server's administrators."""
    handler = FaultyHandler(relay_denied={"dsl@school.example"})
    servers.append(server := starttls(ca, handler=handler))
    result = send_once(server.port, ca_file, message)
    assert result.reason.startswith(
        f"SMTP server 127.0.0.1:{server.port} (RCPT TO dsl@school.example) refused to take "
        "mail from this account: 554 5.7.1 <dsl@school.example>: Relay access denied; the "
        "address is not the problem"
    )
    assert "check the partner's address" not in result.reason
    assert (result.status, result.attempts, handler.data_seen) == (SendStatus.FAILED, 1, 0)


def test_message_over_the_servers_size_limit_reads_as_too_large(
    ca: trustme.CA, ca_file: Path, servers: list[Server], message: OutgoingMessage
) -> None:
    """The size is announced in MAIL FROM (SIZE=): a server with a smaller limit refuses the
    sender step with 552 5.3.4, which is about the message, not the sender."""
    handler = FaultyHandler()
    limit = len(message.as_bytes()) - 1
    servers.append(server := starttls(ca, handler=handler, data_size_limit=limit))
    result = send_once(server.port, ca_file, message)
    assert result.reason.startswith(
        f"the message is larger than SMTP server 127.0.0.1:{server.port} takes: 552"
    )
    assert result.reason.endswith(
        "ask its administrators for its message size limit (the referral form is attached), "
        "or attach a smaller form"
    )
    assert (result.failure, result.attempts, handler.data_seen) == (Failure.MESSAGE, 1, 0)


def test_deferral_outlasting_the_retries_says_to_send_it_later(
    ca: trustme.CA, ca_file: Path, servers: list[Server], message: OutgoingMessage
) -> None:
    handler = FaultyHandler(deferred_recipients={"dsl@school.example"})
    servers.append(server := starttls(ca, handler=handler))
    result = send_once(server.port, ca_file, message)
    assert result.reason.startswith("gave up after 3 attempts: ")
    assert result.reason.endswith("if it still defers, send it again later")


def test_550_after_data_reads_as_the_message_was_refused(
    ca: trustme.CA, ca_file: Path, servers: list[Server], message: OutgoingMessage
) -> None:
    """A 5xx after the message's end reads 'the message was refused' with the server's words."""
    servers.append(server := starttls(ca, handler=FaultyHandler(script=["550"])))
    result = send_once(server.port, ca_file, message)
    assert result.reason == (
        f"the message was refused by SMTP server 127.0.0.1:{server.port}: "
        "550 5.7.1 Message rejected as spam by content filter; its words say why; check that "
        "it takes mail for the partner's address and a message of this size (the form is "
        "attached), or ask its administrators"
    )
    assert (result.failure, result.attempts) == (Failure.MESSAGE, 1)


def test_nothing_listening_reads_as_could_not_connect_after_every_attempt(
    ca_file: Path, message: OutgoingMessage
) -> None:
    """A refused connection is retried to max_attempts, then says so with the OS's words."""
    port = free_port()
    result = send_once(port, ca_file, message)
    assert result.reason == (
        f"gave up after 3 attempts: could not connect to SMTP server 127.0.0.1:{port}: "
        "Connection refused; check host and port, that the mail server is running, and that "
        "no firewall blocks this machine from it"
    )
    assert (result.failure, result.attempts) == (Failure.CONNECTION, 3)


def test_421_greeting_is_retried_and_says_what_to_do(
    ca_file: Path, message: OutgoingMessage
) -> None:
    """A server greeting with 421 (busy, closing) is tried again, then says to try later."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def greet_busy() -> None:
        with listener:
            for _ in range(POLICY.max_attempts):
                connection, _address = listener.accept()
                with connection:
                    connection.sendall(b"421 4.3.2 Service not available, closing channel\r\n")

    thread = threading.Thread(target=greet_busy, daemon=True)
    thread.start()
    result = send_once(port, ca_file, message, security="none")
    thread.join(5)
    assert (result.status, result.attempts) == (SendStatus.FAILED, 3)
    assert "is not taking connections now" in result.reason
    assert result.reason.endswith(
        "the server is busy or restarting: try again later, and if it keeps saying so ask "
        "its administrators"
    )


def test_4xx_after_data_is_retried_and_reads_as_deferred(
    ca: trustme.CA, ca_file: Path, servers: list[Server], message: OutgoingMessage
) -> None:
    """A 451 after DATA is retried to max_attempts and reads as deferred, not refused."""
    servers.append(server := starttls(ca, handler=FaultyHandler(script=["451"] * 3)))
    result = send_once(server.port, ca_file, message)
    assert result.reason == (
        f"gave up after 3 attempts: SMTP server 127.0.0.1:{server.port} deferred the message: "
        "451 4.3.0 Mail server temporarily rejected message; the server is busy or limiting "
        "this sender: it is tried again; if it still defers, send it again later"
    )
    assert (result.failure, result.attempts) == (Failure.SERVER, 3)


# -- TLS failures the servers here cannot make -----------------------------------------------


def ssl_error(reason: str, text: str) -> ssl.SSLError:
    """An SSLError as OpenSSL raises it (``reason`` set, C location in the text)."""
    error = ssl.SSLError(1, f"[SSL: {reason}] {text} (_ssl.c:1006)")
    error.reason = reason
    return error


@pytest.mark.parametrize(
    "reason",
    ["UNSUPPORTED_PROTOCOL", "TLSV1_ALERT_PROTOCOL_VERSION", "NO_PROTOCOLS_AVAILABLE"],
)
def test_each_way_openssl_reports_an_old_version_is_permanent(reason: str) -> None:
    """An old server answering with a TLS 1.1 ServerHello (not an alert) is permanent too."""
    error = tls_failure(ssl_error(reason, "x"), "h:587", host="h", security="starttls")
    assert isinstance(error, PermanentGatewayError) and error.failure is Failure.TLS
    assert str(error).startswith("the server offers TLS older than 1.2 (SMTP server h:587): ")


def test_no_shared_cipher_is_permanent() -> None:
    """A handshake failure (no cipher allowed with TLS 1.2 in common) is permanent."""
    error = tls_failure(
        ssl_error("SSLV3_ALERT_HANDSHAKE_FAILURE", "sslv3 alert handshake failure"),
        "h:587",
        host="h",
        security="starttls",
    )
    assert isinstance(error, PermanentGatewayError)
    assert str(error).startswith(
        "TLS could not be agreed with SMTP server h:587: [SSL: SSLV3_ALERT_HANDSHAKE_FAILURE] "
        "sslv3 alert handshake failure; "
    )


def test_handshake_cut_off_is_transient() -> None:
    """A connection cut during the handshake may mend: transient, in OpenSSL's words."""
    error = tls_failure(
        ssl_error("UNEXPECTED_EOF_WHILE_READING", "EOF occurred in violation of protocol"),
        "h:587",
        host="h",
        security="starttls",
    )
    assert isinstance(error, TransientGatewayError) and error.failure is Failure.TLS
    assert str(error) == (
        "TLS with SMTP server h:587 failed: [SSL: UNEXPECTED_EOF_WHILE_READING] EOF occurred "
        "in violation of protocol"
    )


# -- the same words in the outcome column, the log and gateway check --------------------------

PARTNERS = ("police", "health")


@pytest.fixture
def smtp_workspace(
    workspace: Workspace, ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> Workspace:
    """The workspace, ready to be pointed at an SMTP server with use_server."""
    monkeypatch.setenv("TEST_SMTP_PASSWORD", PASSWORD)
    workspace.write_case(workspace.example_case())
    return workspace


def use_server(workspace: Workspace, port: int, ca_file: Path | None) -> None:
    ca_line = f'ca_file = "{ca_file}"\n' if ca_file else ""
    with workspace.config.open("a", encoding="utf-8") as config:
        config.write(
            "\n[rate_limit]\nper_minute = 100000\n"
            '\n[gateway]\ntype = "smtp"\n\n[gateway.smtp]\nhost = "127.0.0.1"\n'
            f'port = {port}\n{ca_line}auth = "login"\nusername = "{USER}"\n'
            'mailbox = "mash@testbury.gov.uk"\npassword_env = "TEST_SMTP_PASSWORD"\n'
            "timeout = 5\n"
        )


def run(workspace: Workspace, *args: str) -> Result:
    result = CliRunner().invoke(main, [*args, "--config", str(workspace.config)])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def send_request(workspace: Workspace) -> Result:
    return run(workspace, "send-request", "--case", str(workspace.cases / "case.json"))


def failed_events(workspace: Workspace) -> dict[str, Any]:
    return {e.partner: e for e in workspace.events() if e.kind is EventKind.FAILED}


def outcome_cell(result: Result, partner: str) -> str:
    [line] = [row for row in result.stdout.splitlines() if row.startswith(f"{partner} ")]
    return line


def assert_everywhere(workspace: Workspace, sentence: str, *, attempts: int = 1) -> None:
    """send-request shows the sentence for each partner, the log has it, check prints it."""
    result = send_request(workspace)
    assert result.exit_code == 1, result.output
    events = failed_events(workspace)
    for partner in PARTNERS:
        assert f" failed ({sentence}) " in outcome_cell(result, partner)
        assert events[partner].reason == sentence
    assert events["police"].attempt == attempts
    check = run(workspace, "gateway", "check")
    assert check.exit_code == 1
    assert check.output == f"Error: {sentence}\n"


def test_untrusted_certificate_reads_the_same_in_outcome_log_and_check(
    smtp_workspace: Workspace, ca: trustme.CA, servers: list[Server]
) -> None:
    """Without ca_file the certificate sentence (naming ca_file) is in all three places."""
    servers.append(server := starttls(ca))
    use_server(smtp_workspace, server.port, None)
    assert_everywhere(
        smtp_workspace,
        f"the certificate of SMTP server 127.0.0.1:{server.port} is not trusted: "
        f"unable to get local issuer certificate; {SET_CA_FILE}",
    )
    assert server.handler.data_seen == 0


def test_host_name_mismatch_reads_the_same_in_outcome_log_and_check(
    smtp_workspace: Workspace, ca: trustme.CA, ca_file: Path, servers: list[Server]
) -> None:
    """A certificate for another name reads the same in all three places, tried once."""
    servers.append(server := starttls(ca, context=server_context(ca, "mail.other.example")))
    use_server(smtp_workspace, server.port, ca_file)
    assert_everywhere(
        smtp_workspace,
        f"the certificate of SMTP server 127.0.0.1:{server.port} is not valid for the host "
        "name 127.0.0.1: IP address mismatch, certificate is not valid for '127.0.0.1'; set "
        "host to a name the certificate was issued for, or have the certificate reissued "
        "for 127.0.0.1",
    )


def test_old_tls_reads_the_same_in_outcome_log_and_check(
    smtp_workspace: Workspace, ca: trustme.CA, ca_file: Path
) -> None:
    """A TLS 1.1 server reads the same in all three places: one handshake per request."""
    old = OldTlsServer(ca)
    try:
        use_server(smtp_workspace, old.port, ca_file)
        assert_everywhere(
            smtp_workspace,
            f"the server offers TLS older than 1.2 (SMTP server 127.0.0.1:{old.port}): "
            "[SSL: TLSV1_ALERT_PROTOCOL_VERSION] tlsv1 alert protocol version; have the "
            "server upgraded to TLS 1.2 or later; older versions are never used",
        )
    finally:
        old.stop()
    assert old.handshakes == len(PARTNERS) + 1  # one per request, one for gateway check


def test_refused_credentials_log_in_once_per_run(
    smtp_workspace: Workspace,
    ca: trustme.CA,
    ca_file: Path,
    servers: list[Server],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 535 ends the run's use of SMTP: one login for both partners, the same words shown."""
    servers.append(server := starttls(ca, auth=(counter := CountingAuthenticator())))
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "not the password")
    use_server(smtp_workspace, server.port, ca_file)
    result = send_request(smtp_workspace)
    sentence = (
        f"the SMTP server refused the credentials (127.0.0.1:{server.port}, AUTH LOGIN as "
        "mash-sender): 535 5.7.8 Authentication credentials invalid; check username and the "
        "password (password_env or password_file)"
    )
    assert counter.attempts == 1
    events = failed_events(smtp_workspace)
    assert [events[p].attempt for p in PARTNERS] == [1, 0]
    for partner in PARTNERS:
        assert f" failed ({sentence}) " in outcome_cell(result, partner)
        assert events[partner].reason == sentence
    assert "not the password" not in result.output
    check = run(smtp_workspace, "gateway", "check")
    assert check.output == f"Error: {sentence}\n"


def test_refused_recipient_fails_only_that_partner(
    smtp_workspace: Workspace, ca: trustme.CA, ca_file: Path, servers: list[Server]
) -> None:
    """A 550 at RCPT fails that partner with 'the recipient was refused'; the other is sent."""
    handler = FaultyHandler(refused_recipients={"mash@testshire.police.uk"})
    servers.append(server := starttls(ca, handler=handler))
    use_server(smtp_workspace, server.port, ca_file)
    result = send_request(smtp_workspace)
    sentence = (
        f"the recipient was refused by SMTP server 127.0.0.1:{server.port} (RCPT TO "
        "mash@testshire.police.uk): 550 5.1.1 <mash@testshire.police.uk>: Recipient address "
        "rejected: User unknown in virtual mailbox table; check the partner's address in the "
        "partner directory"
    )
    assert f" failed ({sentence}) " in outcome_cell(result, "police")
    assert " sent " in outcome_cell(result, "health")
    assert failed_events(smtp_workspace)["police"].reason == sentence
    assert len(handler.delivered) == 1


def test_refused_message_reads_the_same_in_outcome_and_log(
    smtp_workspace: Workspace, ca: trustme.CA, ca_file: Path, servers: list[Server]
) -> None:
    """A 5xx after DATA reads 'the message was refused' in the outcome and the log, tried once."""
    servers.append(server := starttls(ca, handler=FaultyHandler(script=["550"])))
    use_server(smtp_workspace, server.port, ca_file)
    result = send_request(smtp_workspace)
    sentence = (
        f"the message was refused by SMTP server 127.0.0.1:{server.port}: "
        "550 5.7.1 Message rejected as spam by content filter; its words say why; check that "
        "it takes mail for the partner's address and a message of this size (the form is "
        "attached), or ask its administrators"
    )
    assert f" failed ({sentence}) " in outcome_cell(result, "police")
    [event] = failed_events(smtp_workspace).values()
    assert (event.reason, event.attempt, server.handler.data_seen) == (sentence, 1, 2)


def test_connection_refused_reads_the_same_after_the_attempt_count(
    smtp_workspace: Workspace, ca_file: Path
) -> None:
    """Nothing listening: the outcome and log give the attempts, then check's sentence."""
    port = free_port()
    use_server(smtp_workspace, port, ca_file)
    sentence = (
        f"could not connect to SMTP server 127.0.0.1:{port}: Connection refused; check host "
        "and port, that the mail server is running, and that no firewall blocks this machine "
        "from it"
    )
    result = send_request(smtp_workspace)
    assert f" failed (gave up after 2 attempts: {sentence}) " in outcome_cell(result, "police")
    events = failed_events(smtp_workspace)
    assert events["police"].reason == f"gave up after 2 attempts: {sentence}"
    assert events["police"].attempt == 2
    assert run(smtp_workspace, "gateway", "check").output == f"Error: {sentence}\n"


def test_attempt_failed_events_say_the_policy_set_the_wait(
    smtp_workspace: Workspace, ca: trustme.CA, ca_file: Path, servers: list[Server]
) -> None:
    """A retried 451 is logged with wait_from 'policy' (SMTP sends no hint of its own)."""
    servers.append(server := starttls(ca, handler=FaultyHandler(script=["451"])))
    use_server(smtp_workspace, server.port, ca_file)
    send_request(smtp_workspace)
    [retried, *_] = [e for e in smtp_workspace.events() if e.kind is EventKind.ATTEMPT_FAILED]
    assert retried.wait_seconds == 0 and retried.details == {"wait_from": "policy"}


@pytest.mark.parametrize(
    ("code", "reply", "policy", "too_large"),
    [
        (554, b"5.7.1 <x@y>: Relay access denied", True, False),
        (554, b"<x@y>: Relay access denied", True, False),
        (
            550,
            b"<x@y>: Recipient address rejected: User unknown in relay recipient table",
            False,
            False,
        ),
        (550, b"5.1.1 <x@y>: Recipient address rejected: User unknown", False, False),
        (552, b"5.2.2 Mailbox full", False, False),
        (552, b"5.3.4 Message size exceeds fixed limit", False, True),
        (552, b"Message size exceeds fixed maximum message size", False, True),
    ],
)
def test_refusals_are_read_by_their_enhanced_code_first(
    code: int, reply: bytes, policy: bool, too_large: bool
) -> None:
    """An address in a 'relay recipient table' is an address problem, and a full mailbox
    (552 5.2.2) is not a size limit: the enhanced code decides where there is one."""
    from mash_requests.gateways.smtp import _policy, _too_large

    assert _policy(reply) is policy
    assert _too_large(code, reply, "the message") is too_large
