"""A real SMTP server for the gateway tests: aiosmtpd on 127.0.0.1, TLS from a test CA, AUTH.

``FaultyHandler`` delivers messages or misbehaves at DATA as scripted ('451', '550',
'drop'), so the tests can show what the gateway and the retry policy do with each failure.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
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
