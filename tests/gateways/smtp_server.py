"""A real SMTP server for the gateway tests: aiosmtpd on 127.0.0.1, TLS from a test CA, AUTH.

``FaultyHandler`` delivers messages or misbehaves at DATA as scripted ('451', '550',
'drop'), and refuses the recipients it is told to as Postfix does, so the tests can show
what the gateway and the retry policy do with each failure. ``CountingAuthenticator``
counts logins; ``server_context`` makes a certificate for any names, expired if asked, and
``old_tls_context`` a server that offers only TLS 1.0 and 1.1.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import socket
import ssl
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

USER = "mash-sender"
PASSWORD = "correct horse battery staple"
TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.token"


@dataclass
class FaultyHandler:
    """Delivers messages, or misbehaves at DATA as scripted: '451', '550', 'drop'."""

    script: list[str] = field(default_factory=list)
    delivered: list[bytes] = field(default_factory=list)
    data_seen: int = 0
    #: Addresses refused at RCPT TO with Postfix's 550 for an unknown mailbox.
    refused_recipients: set[str] = field(default_factory=set)
    #: Addresses refused at RCPT TO with Postfix's 554 for relaying without a login.
    relay_denied: set[str] = field(default_factory=set)
    #: Addresses deferred at RCPT TO with Postfix's 450 rate limit.
    deferred_recipients: set[str] = field(default_factory=set)

    async def handle_RCPT(
        self,
        server: SMTPServer,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address in self.refused_recipients:
            return (
                f"550 5.1.1 <{address}>: Recipient address rejected: "
                "User unknown in virtual mailbox table"
            )
        if address in self.relay_denied:
            return f"554 5.7.1 <{address}>: Relay access denied"
        if address in self.deferred_recipients:
            return "450 4.7.1 Error: too much mail from 127.0.0.1"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        self.data_seen += 1
        action = self.script.pop(0) if self.script else "ok"
        if action == "451":
            return "451 4.3.0 Mail server temporarily rejected message"
        if action == "550":
            return "550 5.7.1 Message rejected as spam by content filter"
        if action == "drop":
            # The whole message arrived; the answer never leaves: the client cannot know.
            assert server.transport is not None
            server.transport.abort()
            await asyncio.sleep(0)
            return "250 never seen"
        assert isinstance(envelope.original_content, bytes)
        self.delivered.append(envelope.original_content)
        return f"250 2.0.0 Ok: queued as Q{len(self.delivered)}"

    async def auth_XOAUTH2(self, server: SMTPServer, args: list[str]) -> AuthResult:
        blob = base64.b64decode(args[1]).decode()
        if blob == f"user=mash@council.example\x01auth=Bearer {TOKEN}\x01\x01":
            return AuthResult(success=True, auth_data=LoginPassword(b"mash@council.example", b""))
        return AuthResult(success=False, handled=False)


def authenticator(
    server: SMTPServer, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)


@dataclass
class CountingAuthenticator:
    """The authenticator above, counting every login attempt (PLAIN or LOGIN)."""

    attempts: int = 0

    def __call__(
        self, server: SMTPServer, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        self.attempts += 1
        return authenticator(server, session, envelope, mechanism, data)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_context(
    ca: trustme.CA, *names: str, not_after: datetime.datetime | None = None
) -> ssl.SSLContext:
    """A server context whose certificate ``ca`` issued for ``names`` (default: loopback)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    names = names or ("127.0.0.1", "localhost")
    ca.issue_cert(*names, not_after=not_after).configure_cert(context)
    return context


def old_tls_context(ca: trustme.CA) -> ssl.SSLContext:
    """A server context offering only TLS 1.0 and 1.1, as an old relay or appliance does.

    OpenSSL 3 refuses those versions at its default security level; level 0 allows them.
    """
    context = server_context(ca)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSv1/TLSv1_1 are deprecated
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    return context


@dataclass
class Server:
    handler: FaultyHandler
    port: int
    controller: Controller


def start(handler: FaultyHandler, **kwargs: Any) -> Server:
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    return Server(handler, port, controller)


class OldTlsServer:
    """A minimal SMTP server on 127.0.0.1 whose STARTTLS offers only TLS 1.0 and 1.1.

    aiosmtpd does TLS through asyncio, which closes the connection without sending
    OpenSSL's ``protocol_version`` alert when the versions do not meet; a real old relay
    sends it. This server does STARTTLS with blocking OpenSSL, so the client meets what it
    would meet in the field. ``handshakes`` counts the TLS handshakes tried;
    ``server_errors`` keeps OpenSSL's reason on the server's side for each.
    """

    def __init__(self, ca: trustme.CA) -> None:
        self.context = old_tls_context(ca)
        self.handshakes = 0
        self.server_errors: list[str] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(5)
        self._listener.close()

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(5)
                self._session(connection)

    def _session(self, connection: socket.socket) -> None:
        reader = connection.makefile("rb")
        connection.sendall(b"220 old-relay.example ESMTP\r\n")
        for line in reader:
            command = line.strip().upper()
            if command.startswith((b"EHLO", b"HELO")):
                connection.sendall(b"250-old-relay.example\r\n250-STARTTLS\r\n250 AUTH LOGIN\r\n")
            elif command == b"STARTTLS":
                connection.sendall(b"220 2.0.0 Ready to start TLS\r\n")
                self.handshakes += 1
                try:
                    self.context.wrap_socket(connection, server_side=True).close()
                except ssl.SSLError as exc:
                    self.server_errors.append(str(exc.reason))
                return
            elif command == b"QUIT":
                connection.sendall(b"221 2.0.0 Bye\r\n")
                return
            else:
                connection.sendall(b"502 5.5.2 Command not implemented\r\n")
