"""The SMTP gateway against a real aiosmtpd server on 127.0.0.1 with TLS and AUTH."""

from __future__ import annotations

import asyncio
import email
import socket
from collections.abc import Iterator
from dataclasses import replace
from email import policy
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session
from smtp_server import (
    PASSWORD,
    TOKEN,
    USER,
    FaultyHandler,
    Server,
    authenticator,
    free_port,
    server_context,
    start,
)

from mash_requests._tables import Table
from mash_requests.errors import (
    AmbiguousGatewayError,
    ConfigError,
    Failure,
    PermanentGatewayError,
    TransientGatewayError,
)
from mash_requests.gateways.base import OutgoingMessage
from mash_requests.gateways.smtp import Settings, SmtpGateway
from mash_requests.retry import AttemptFailure, RetryPolicy, SendStatus, send_with_retry

POLICY = RetryPolicy(max_attempts=5, max_seconds=300, initial_wait=1, max_wait=60, jitter=0)


def settings_for(server: Server, ca_file: Path | None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": server.port,
        "mailbox": "mash@council.example",
        "security": "starttls",
        "ca_file": ca_file,
        "auth": "login",
        "username": USER,
        "password": PASSWORD,
        "timeout": 5,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def gateway(starttls_server: Server, ca_file: Path) -> Iterator[SmtpGateway]:
    gw = settings_for(starttls_server, ca_file).open()
    yield gw
    gw.close()


def retry(
    gateway: SmtpGateway, message: OutgoingMessage
) -> tuple[Any, list[AttemptFailure], list[float]]:
    failures: list[AttemptFailure] = []
    sleeps: list[float] = []
    result = send_with_retry(
        gateway, message, POLICY, on_failure=failures.append, sleep=sleeps.append
    )
    return result, failures, sleeps


# -- sending --------------------------------------------------------------------------


def test_send_over_starttls_delivers_the_exact_form(
    gateway: SmtpGateway, starttls_server: Server, message: OutgoingMessage
) -> None:
    """A message sent over STARTTLS with AUTH LOGIN arrives with the form's exact bytes."""
    receipt = gateway.send(message)
    assert receipt.gateway == "smtp" and receipt.message_id == message.message_id
    assert receipt.gateway_id == "2.0.0 Ok: queued as Q1"
    [raw] = starttls_server.handler.delivered
    received = email.message_from_bytes(raw, policy=policy.default)
    assert received["Message-ID"].strip() == message.message_id
    [part] = [p for p in received.walk() if p.get_content_type() == "application/pdf"]
    assert part.get_payload(decode=True) == message.attachment.data


def test_send_over_implicit_tls_with_auth_plain(
    tls_server: Server, ca_file: Path, message: OutgoingMessage
) -> None:
    """security = 'tls' with AUTH PLAIN delivers the message."""
    gw = settings_for(tls_server, ca_file, security="tls", auth="plain").open()
    try:
        gw.send(message)
    finally:
        gw.close()
    assert len(tls_server.handler.delivered) == 1


def test_connection_is_reused_across_messages(
    gateway: SmtpGateway, starttls_server: Server, make_message: Any
) -> None:
    """Two messages go over one connection (the second does not reconnect)."""
    gateway.send(make_message(request_ref="RFI-1"))
    first = gateway._smtp
    gateway.send(make_message(request_ref="RFI-2"))
    assert gateway._smtp is first
    assert len(starttls_server.handler.delivered) == 2


def test_dropped_idle_connection_is_reopened(
    gateway: SmtpGateway, starttls_server: Server, make_message: Any
) -> None:
    """When the server dropped the idle connection, the next send reconnects and delivers."""
    gateway.send(make_message(request_ref="RFI-1"))
    assert gateway._smtp is not None and gateway._smtp.sock is not None
    gateway._smtp.sock.shutdown(socket.SHUT_RDWR)
    gateway._last_reply -= 3600  # idle for an hour: checked with NOOP before reuse
    gateway.send(make_message(request_ref="RFI-2"))
    assert len(starttls_server.handler.delivered) == 2


def test_connection_dropped_between_quick_sends_is_transient_then_reopened(
    gateway: SmtpGateway, starttls_server: Server, make_message: Any
) -> None:
    """A connection lost just after a send fails the next as transient; a retry reconnects."""
    gateway.send(make_message(request_ref="RFI-1"))
    assert gateway._smtp is not None and gateway._smtp.sock is not None
    gateway._smtp.sock.shutdown(socket.SHUT_RDWR)
    with pytest.raises(TransientGatewayError):
        gateway.send(make_message(request_ref="RFI-2"))
    gateway.send(make_message(request_ref="RFI-2"))
    assert len(starttls_server.handler.delivered) == 2


def test_leading_dots_survive_transparency(
    gateway: SmtpGateway, starttls_server: Server, make_message: Any
) -> None:
    """A form whose bytes contain a line starting with '.' arrives byte-for-byte."""
    form = b"%PDF-1.4\n" + b"\r\n.\r\n..\r\n.hidden\n" * 10
    msg = make_message(form)
    gateway.send(msg)
    received = email.message_from_bytes(starttls_server.handler.delivered[0], policy=policy.default)
    [part] = [p for p in received.walk() if p.get_content_type() == "application/pdf"]
    assert part.get_payload(decode=True) == form


# -- faults through the retry policy ----------------------------------------------------


def test_temporary_451_twice_then_success_delivers_exactly_one_copy(
    gateway: SmtpGateway, starttls_server: Server, message: OutgoingMessage
) -> None:
    """Two 451 replies are retried and the third attempt delivers exactly one copy."""
    starttls_server.handler.script = ["451", "451"]
    result, failures, sleeps = retry(gateway, message)
    assert result.status is SendStatus.SENT and result.attempts == 3
    assert len(starttls_server.handler.delivered) == 1
    assert [f.error_class for f in failures] == ["transient", "transient"]
    assert failures[0].server_message == "451 4.3.0 Mail server temporarily rejected message"
    assert sleeps == [1, 2]


def test_550_fails_at_once_with_the_servers_words(
    gateway: SmtpGateway, starttls_server: Server, message: OutgoingMessage
) -> None:
    """A 550 reply is permanent: no retry, failed with the server's own words."""
    starttls_server.handler.script = ["550"]
    result, _, sleeps = retry(gateway, message)
    assert result.status is SendStatus.FAILED and result.attempts == 1
    assert result.server_message == "550 5.7.1 Message rejected as spam by content filter"
    assert starttls_server.handler.data_seen == 1 and sleeps == []


def test_connection_dropped_after_data_is_unconfirmed_and_not_resent(
    gateway: SmtpGateway, starttls_server: Server, message: OutgoingMessage
) -> None:
    """A connection lost after the whole message was sent is unconfirmed; no second copy."""
    starttls_server.handler.script = ["drop"]
    result, failures, sleeps = retry(gateway, message)
    assert result.status is SendStatus.UNCONFIRMED
    assert result.error_class == "ambiguous"
    assert starttls_server.handler.data_seen == 1
    assert failures == [AttemptFailure(1, "ambiguous", failures[0].server_message, None)]
    assert sleeps == []


def test_drop_after_data_raises_ambiguous(
    gateway: SmtpGateway, starttls_server: Server, message: OutgoingMessage
) -> None:
    """send() itself raises AmbiguousGatewayError when the answer to DATA is lost."""
    starttls_server.handler.script = ["drop"]
    with pytest.raises(AmbiguousGatewayError, match="gave no answer after the whole message"):
        gateway.send(message)


def test_silent_server_after_data_is_ambiguous(
    ca_file: Path, message: OutgoingMessage, ca: trustme.CA
) -> None:
    """A server that never answers the end of DATA times out as ambiguous."""

    class Silent(FaultyHandler):
        async def handle_DATA(
            self, server: SMTPServer, session: Session, envelope: Envelope
        ) -> str:
            self.data_seen += 1
            await asyncio.sleep(3)
            return "250 too late"

    server = start(Silent(), tls_context=server_context(ca), authenticator=authenticator)
    gw = settings_for(server, ca_file, timeout=0.5).open()
    try:
        with pytest.raises(AmbiguousGatewayError):
            gw.send(message)
    finally:
        gw.close()
        server.controller.stop()


def test_connection_refused_is_transient(ca_file: Path, message: OutgoingMessage) -> None:
    """Nothing listening on the port is a transient error naming host and port."""
    port = free_port()
    settings = Settings(host="127.0.0.1", port=port, mailbox="m@x.example", ca_file=ca_file)
    with pytest.raises(TransientGatewayError, match=f"127.0.0.1:{port}"):
        settings.open().send(message)


def test_wrong_password_is_permanent_and_hides_the_password(
    starttls_server: Server, ca_file: Path, message: OutgoingMessage
) -> None:
    """A 535 on login is permanent; the error names the server, never the password."""
    gw = settings_for(starttls_server, ca_file, password="wrong password").open()
    with pytest.raises(PermanentGatewayError) as caught:
        gw.send(message)
    assert caught.value.server_message.startswith("535")
    assert "wrong password" not in str(caught.value)
    assert starttls_server.handler.data_seen == 0


def test_untrusted_certificate_is_permanent_with_a_clear_message(
    starttls_server: Server, message: OutgoingMessage
) -> None:
    """STARTTLS with a certificate from an unknown CA is permanent and says to set ca_file."""
    gw = settings_for(starttls_server, None).open()
    with pytest.raises(PermanentGatewayError, match=r"not trusted.*ca_file") as caught:
        gw.send(message)
    assert "certificate verify failed" in str(caught.value) or caught.value.server_message
    assert starttls_server.handler.data_seen == 0


def test_server_without_starttls_is_refused(
    plain_server: Server, ca_file: Path, message: OutgoingMessage
) -> None:
    """A server that offers no STARTTLS is refused rather than used in clear."""
    gw = settings_for(plain_server, ca_file, auth="none").open()
    with pytest.raises(PermanentGatewayError, match="does not offer STARTTLS"):
        gw.send(message)
    assert plain_server.handler.delivered == []


def test_security_none_works_on_loopback(plain_server: Server, message: OutgoingMessage) -> None:
    """security = 'none' to 127.0.0.1 (a local relay) delivers the message."""
    gw = Settings(
        host="127.0.0.1", port=plain_server.port, mailbox="m@x.example", security="none"
    ).open()
    try:
        gw.send(message)
    finally:
        gw.close()
    assert len(plain_server.handler.delivered) == 1


def test_xoauth2_authenticates_with_the_token(
    starttls_server: Server, ca_file: Path, message: OutgoingMessage
) -> None:
    """auth = 'xoauth2' sends the bearer token from the token source and delivers."""
    settings = settings_for(
        starttls_server, ca_file, auth="xoauth2", username="mash@council.example"
    )
    gw = SmtpGateway(settings, token=lambda: TOKEN)
    try:
        gw.send(message)
    finally:
        gw.close()
    assert len(starttls_server.handler.delivered) == 1


def test_check_connects_and_authenticates_without_sending(
    gateway: SmtpGateway, starttls_server: Server
) -> None:
    """check() reports the TLS version and login, and delivers nothing."""
    line = gateway.check()
    assert line.startswith(f"smtp: connected to 127.0.0.1:{starttls_server.port} over TLSv1.")
    assert "authenticated as mash-sender (LOGIN)" in line
    assert starttls_server.handler.data_seen == 0


# -- settings ----------------------------------------------------------------------------


def table(data: dict[str, Any], tmp_path: Path) -> Table:
    return Table(data, where="config t.toml: [gateway.smtp]", base_dir=tmp_path)


def test_settings_from_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A complete table gives settings; the password comes from the named variable."""
    monkeypatch.setenv("SMTP_PASSWORD", "s3cret")
    (tmp_path / "ca.pem").write_text("x")
    settings = Settings.from_table(
        table(
            {
                "host": "smtp.council.example",
                "auth": "login",
                "username": "mash@council.example",
                "password_env": "SMTP_PASSWORD",
                "ca_file": "ca.pem",
            },
            tmp_path,
        )
    )
    assert settings.kind == "smtp" and settings.mailbox == "mash@council.example"
    assert settings.port == 587 and settings.security == "starttls"
    assert settings.password == "s3cret" and "s3cret" not in repr(settings)
    assert settings.ca_file == tmp_path / "ca.pem"


def test_implicit_tls_defaults_to_port_465(tmp_path: Path) -> None:
    """security = 'tls' without a port uses 465."""
    settings = Settings.from_table(
        table({"host": "smtp.x.example", "security": "tls", "mailbox": "m@x.example"}, tmp_path)
    )
    assert settings.port == 465


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"host": "smtp.x.example", "security": "none", "mailbox": "m@x"}, "security: 'none'"),
        (
            {"host": "smtp.x.example", "password": "pw", "auth": "login", "username": "u"},
            "password",
        ),
        ({"host": "smtp.x.example", "auth": "login"}, "username: is required"),
        ({"host": "smtp.x.example"}, "mailbox: is required"),
        ({"host": "smtp.x.example", "mailbox": "m@x", "prot": 25}, "prot: unknown key"),
        ({"host": "smtp.x.example", "mailbox": "m@x", "ca_file": "nope.pem"}, "ca_file: no such"),
        ({"host": "smtp.x.example", "mailbox": "m@x", "auth": "xoauth2"}, "tenant_id"),
    ],
)
def test_bad_settings_are_config_errors(tmp_path: Path, data: dict[str, Any], problem: str) -> None:
    """Each configuration mistake is a ConfigError naming the key."""
    with pytest.raises(ConfigError, match=problem):
        Settings.from_table(table(data, tmp_path))


# -- errors smtplib does not class ------------------------------------------------------


def test_password_smtplib_cannot_encode_is_permanent_naming_only_the_type(
    tls_server: Server, ca_file: Path, message: OutgoingMessage
) -> None:
    """A non-ASCII password (AUTH PLAIN cannot encode it) is permanent, not a traceback."""
    gw = settings_for(tls_server, ca_file, security="tls", auth="plain", password="pässwörd").open()
    try:
        with pytest.raises(PermanentGatewayError) as caught:
            gw.send(message)
    finally:
        gw.close()
    assert caught.value.server_message == "UnicodeEncodeError"
    assert caught.value.failure is Failure.AUTHENTICATION  # the run logs in no more
    assert "pässwörd" not in str(caught.value)
    assert tls_server.handler.data_seen == 0


def test_address_smtplib_cannot_encode_is_permanent_before_data(
    gateway: SmtpGateway, starttls_server: Server, message: OutgoingMessage
) -> None:
    """A recipient smtplib cannot write (non-ASCII, no SMTPUTF8) is permanent and sends nothing."""
    with pytest.raises(PermanentGatewayError) as caught:
        gateway.send(replace(message, recipients=("jöe@school.example",)))
    assert caught.value.server_message == "UnicodeEncodeError"
    assert starttls_server.handler.data_seen == 0


def test_unexpected_error_after_the_message_is_ambiguous(
    gateway: SmtpGateway, message: OutgoingMessage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error smtplib does not class while waiting for the answer to DATA is ambiguous."""
    gateway.check()  # connected; only the reply after the whole message is made to fail
    smtp = gateway._smtp
    assert smtp is not None
    real_send, real_reply = smtp.send, smtp.getreply
    message_sent = False

    def send(data: bytes | str) -> None:
        nonlocal message_sent
        real_send(data)
        message_sent = isinstance(data, bytes) and data.endswith(b"\r\n.\r\n")

    def getreply() -> tuple[int, bytes]:
        if message_sent:
            raise RuntimeError("quoting the message")
        return real_reply()

    monkeypatch.setattr(smtp, "send", send)
    monkeypatch.setattr(smtp, "getreply", getreply)
    with pytest.raises(AmbiguousGatewayError) as caught:
        gateway.send(message)
    assert caught.value.server_message == "RuntimeError"
