"""SMTP submission (smtplib): STARTTLS or implicit TLS, AUTH PLAIN/LOGIN/XOAUTH2.

One connection is opened on the first send and reused; a connection the server dropped
while idle is noticed (NOOP) and reopened before the next message.

Where a failure leaves the message decides its class:

- a 4xx reply, or a connection refused, dropped or timed out *before* the end-of-data
  ``.`` was sent: transient (the server cannot have taken a message it never saw end);
- a 5xx reply (including ``535`` authentication failed): permanent;
- the connection dropped or timed out *after* the end-of-data ``.`` and before the reply:
  ambiguous: the server may have queued the message. SMTP cannot look in Sent Items, so
  the retry policy records it as unconfirmed and never sends it again by itself.
- the server's certificate not trusted: permanent. Trying again in a minute will present
  the same certificate; a person must set ``ca_file`` or fix the server's certificate;
- anything else smtplib raises (a bug, an address or password it cannot encode):
  permanent before ``DATA``, ambiguous after; only the exception's type is kept.

Certificate verification is always on (TLS 1.2 or later, host name checked); there is
deliberately no switch to turn it off: a private CA is trusted with ``ca_file``.
"""

from __future__ import annotations

import ipaddress
import re
import smtplib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, NoReturn

from mash_requests.errors import (
    AmbiguousGatewayError,
    GatewayError,
    PermanentGatewayError,
    TransientGatewayError,
)
from mash_requests.gateways.base import OutgoingMessage, Receipt

if TYPE_CHECKING:
    from mash_requests._tables import Table
    from mash_requests.gateways.graph import ClientCredentials

SECURITY_CHOICES = ("starttls", "tls", "none")
AUTH_CHOICES = ("none", "plain", "login", "xoauth2")
DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}
#: A connection idle for longer than this is checked with NOOP before it is reused.
IDLE_CHECK_SECONDS = 10.0
#: The scope Exchange Online wants for SMTP AUTH with XOAUTH2 (client credentials).
XOAUTH2_SCOPE = "https://outlook.office365.com/.default"


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Settings:
    """The ``[gateway.smtp]`` table, validated."""

    kind: ClassVar[str] = "smtp"

    host: str
    mailbox: str
    port: int = 587
    security: str = "starttls"
    ca_file: Path | None = None
    auth: str = "none"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    oauth: ClientCredentials | None = None
    timeout: float = 60

    @classmethod
    def from_table(cls, table: Table) -> Settings:
        """Validate ``[gateway.smtp]``; reads secrets from the environment or files, no network."""
        host = table.required_string("host")
        security = table.choice("security", SECURITY_CHOICES, "starttls")
        if security == "none" and not _is_loopback(host):
            raise table.error(
                "security",
                f"'none' sends in clear and is allowed only to localhost, not {host!r}; "
                "use 'starttls' or 'tls'",
            )
        port = table.integer("port", DEFAULT_PORTS[security], minimum=1)
        if port > 65535:
            raise table.error("port", f"must be at most 65535, got {port}")
        ca_file = table.path("ca_file")
        if ca_file is not None and not ca_file.is_file():
            raise table.error("ca_file", f"no such file: {ca_file}")
        auth = table.choice("auth", AUTH_CHOICES, "none")
        username = table.string("username")
        password: str | None = None
        oauth: ClientCredentials | None = None
        if auth in ("plain", "login"):
            if not username:
                raise table.error("username", f"is required when auth = {auth!r}")
            password = table.secret("password")
        elif auth == "xoauth2":
            from mash_requests.gateways.graph import ClientCredentials

            oauth = ClientCredentials.from_table(table)
        mailbox = table.string("mailbox") or username
        if not mailbox:
            raise table.error("mailbox", "is required: the sending address")
        if auth == "xoauth2" and not username:
            username = mailbox
        if auth != "none" and security == "none":
            raise table.error("auth", "credentials are never sent in clear; use security = 'tls'")
        timeout = table.number("timeout", 60, minimum=1)
        table.reject_unknown()
        return cls(
            host=host,
            mailbox=mailbox,
            port=port,
            security=security,
            ca_file=ca_file,
            auth=auth,
            username=username,
            password=password,
            oauth=oauth,
            timeout=timeout,
        )

    def open(self) -> SmtpGateway:
        """The gateway; it connects on first use."""
        token: Callable[[], str] | None = None
        if self.oauth is not None:
            from mash_requests.gateways.graph import TokenSource

            token = TokenSource(self.oauth, XOAUTH2_SCOPE, timeout=self.timeout).token
        return SmtpGateway(self, token=token)


def _reply_text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return " ".join(text.split())


def _from_reply(what: str, code: int, reply: bytes | str) -> GatewayError:
    """A 4xx reply is transient, anything else (5xx, nonsense) permanent."""
    words = f"{code} {_reply_text(reply)}".strip()
    if 400 <= code < 500:
        return TransientGatewayError(f"SMTP server deferred {what}: {words}", server_message=words)
    return PermanentGatewayError(f"SMTP server refused {what}: {words}", server_message=words)


class SmtpGateway:
    """Sends through one SMTP server; reuses its connection across messages."""

    name = "smtp"

    def __init__(self, settings: Settings, *, token: Callable[[], str] | None = None) -> None:
        self.settings = settings
        self._token = token
        self._smtp: smtplib.SMTP | None = None
        self._tls_version: str | None = None
        self._last_reply = 0.0

    @property
    def _where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    # -- connection ---------------------------------------------------------------------

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(
            cafile=str(self.settings.ca_file) if self.settings.ca_file else None
        )
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def _connect(self) -> smtplib.SMTP:
        """Open, secure and authenticate a connection; raise a gateway error if not."""
        s = self.settings
        smtp: smtplib.SMTP | None = None
        try:
            if s.security == "tls":
                smtp = smtplib.SMTP_SSL(
                    s.host, s.port, timeout=s.timeout, context=self._tls_context()
                )
            else:
                smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            smtp.ehlo()
            if s.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise PermanentGatewayError(
                        f"SMTP server {self._where} does not offer STARTTLS; refusing to send "
                        "in clear (use security = 'tls' if it expects TLS from the start)"
                    )
                smtp.starttls(context=self._tls_context())
                smtp.ehlo()
            self._login(smtp)
        except GatewayError:
            if smtp is not None:
                smtp.close()
            raise
        except Exception as exc:
            if smtp is not None:
                smtp.close()
            self._raise_connect_error(exc)
        sock = smtp.sock
        self._tls_version = sock.version() if isinstance(sock, ssl.SSLSocket) else None
        return smtp

    def _raise_connect_error(self, exc: Exception) -> NoReturn:
        where = self._where
        if isinstance(exc, smtplib.SMTPResponseException):
            raise _from_reply(
                f"the connection or login at {where}", exc.smtp_code, exc.smtp_error
            ) from exc
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            raise TransientGatewayError(
                f"SMTP server {where} closed the connection while connecting: {exc}",
                server_message=str(exc),
            ) from exc
        if isinstance(exc, smtplib.SMTPException):
            raise PermanentGatewayError(
                f"SMTP server {where} cannot be used: {exc}", server_message=str(exc)
            ) from exc
        if isinstance(exc, ssl.SSLCertVerificationError):
            raise PermanentGatewayError(
                f"the certificate of SMTP server {where} is not trusted "
                f"({exc.verify_message}); set ca_file to the CA that signed it, "
                "or have the server's certificate fixed",
                server_message=str(exc.verify_message),
            ) from exc
        if isinstance(exc, ssl.SSLError):
            raise TransientGatewayError(
                f"TLS with SMTP server {where} failed: {exc.reason or exc}",
                server_message=str(exc.reason or exc),
            ) from exc
        if isinstance(exc, OSError):
            problem = exc.strerror or type(exc).__name__
            if isinstance(exc, TimeoutError):
                problem = "timed out"
            raise TransientGatewayError(
                f"cannot connect to SMTP server {where}: {problem}", server_message=problem
            ) from exc
        # A bug, or an error smtplib does not class (e.g. a password it cannot encode):
        # nothing was sent, and trying again will do the same. Its text is not kept.
        kind = type(exc).__name__
        raise PermanentGatewayError(
            f"SMTP server {where} cannot be used: unexpected {kind} while connecting",
            server_message=kind,
        ) from exc

    def _login(self, smtp: smtplib.SMTP) -> None:
        s = self.settings
        if s.auth == "none":
            return
        mechanism = s.auth.upper()
        offered = smtp.esmtp_features.get("auth", "").upper().split()
        if mechanism not in offered:
            raise PermanentGatewayError(
                f"SMTP server {self._where} does not offer AUTH {mechanism} "
                f"(it offers: {', '.join(offered) or 'no AUTH at all'}); change auth"
            )
        if s.auth == "xoauth2":
            assert self._token is not None
            token = self._token()
            user = s.username or s.mailbox

            def xoauth2(challenge: bytes | None = None) -> str:
                # On failure the server sends a 334 with a JSON error; the answer is empty.
                if challenge is not None:
                    return ""
                return f"user={user}\x01auth=Bearer {token}\x01\x01"

            smtp.auth("XOAUTH2", xoauth2)
            return
        smtp.user, smtp.password = s.username or "", s.password or ""
        if s.auth == "plain":
            smtp.auth("PLAIN", smtp.auth_plain)
        else:
            smtp.auth("LOGIN", smtp.auth_login, initial_response_ok=False)

    def _connection(self) -> smtplib.SMTP:
        """The open connection, reopened if the server dropped it while idle."""
        if self._smtp is not None:
            # A connection that answered moments ago is used as it is: a NOOP before every
            # message cost a round trip each in a batch. One idle for longer may have been
            # dropped by the server, so it is asked first.
            if time.monotonic() - self._last_reply < IDLE_CHECK_SECONDS:
                return self._smtp
            try:
                code, _ = self._smtp.noop()
            except Exception:  # whatever went wrong, this connection is not to be trusted
                code = 0
            if code == 250:
                return self._smtp
            self._drop()
        self._smtp = self._connect()
        self._last_reply = time.monotonic()
        return self._smtp

    def _drop(self) -> None:
        if self._smtp is not None:
            self._smtp.close()
            self._smtp = None

    # -- sending ------------------------------------------------------------------------

    def send(self, message: OutgoingMessage) -> Receipt:
        """Submit the message once; see the module docstring for how failures are classed."""
        try:
            data = message.as_bytes()
        except Exception as exc:
            raise PermanentGatewayError(
                f"the message cannot be written for SMTP ({type(exc).__name__}); nothing was sent",
                server_message=type(exc).__name__,
            ) from exc
        smtp = self._connection()
        try:
            self._envelope(smtp, message, data)
            code, reply = smtp.docmd("DATA")
        except GatewayError:
            self._reset()
            raise
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            raise TransientGatewayError(
                f"connection to SMTP server {self._where} lost before the message was sent: {exc}",
                server_message=str(exc),
            ) from exc
        except Exception as exc:
            # E.g. UnicodeEncodeError for an address smtplib cannot write: before DATA,
            # so certainly not sent, and the same message would fail the same way.
            self._drop()
            raise PermanentGatewayError(
                f"SMTP could not send the envelope to {self._where} ({type(exc).__name__}); "
                "nothing was sent",
                server_message=type(exc).__name__,
            ) from exc
        if code != 354:
            self._reset()
            raise _from_reply("the message (DATA)", code, reply)
        try:
            smtp.send(_dot_stuffed(data))
        except (smtplib.SMTPException, OSError) as exc:
            # The end-of-data line was not (completely) sent: the server cannot take it.
            self._drop()
            raise TransientGatewayError(
                f"connection to SMTP server {self._where} lost while sending the message; "
                "it was not completed, so not accepted",
                server_message=str(exc),
            ) from exc
        except Exception as exc:
            # Not a socket failure: whether the end-of-data line went cannot be told.
            self._drop()
            raise self._unexpected_after_data(exc) from exc
        try:
            code, reply = smtp.getreply()
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            raise AmbiguousGatewayError(
                f"SMTP server {self._where} gave no answer after the whole message was sent; "
                "it may have accepted it: check the sent mail before resending",
                server_message=str(exc),
            ) from exc
        except Exception as exc:
            self._drop()
            raise self._unexpected_after_data(exc) from exc
        if code != 250:
            self._reset()
            raise _from_reply("the message", code, reply)
        self._last_reply = time.monotonic()
        return Receipt(
            gateway=self.name,
            message_id=message.message_id,
            gateway_id=_reply_text(reply),
            detail=f"{code} from {self._where}",
        )

    def _unexpected_after_data(self, exc: Exception) -> AmbiguousGatewayError:
        kind = type(exc).__name__
        return AmbiguousGatewayError(
            f"SMTP sending to {self._where} failed unexpectedly ({kind}) after the message "
            "began; it may have been accepted: check the sent mail before resending",
            server_message=kind,
        )

    def _envelope(self, smtp: smtplib.SMTP, message: OutgoingMessage, data: bytes) -> None:
        """MAIL FROM and RCPT TO; every recipient must be accepted or nothing is sent."""
        options: list[str] = []
        if smtp.has_extn("size"):
            options.append(f"SIZE={len(data)}")
        if smtp.has_extn("8bitmime") and not data.isascii():
            options.append("BODY=8BITMIME")
        code, reply = smtp.mail(message.sender, options)
        if code != 250:
            raise _from_reply(f"the sender {message.sender}", code, reply)
        for recipient in message.recipients:
            code, reply = smtp.rcpt(recipient)
            if code not in (250, 251):
                raise _from_reply(f"the recipient {recipient}", code, reply)

    def _reset(self) -> None:
        """Clear a half-made transaction so the connection can carry the next message."""
        if self._smtp is None:
            return
        try:
            self._smtp.rset()
        except Exception:  # it runs while a gateway error is raised: never replace that
            self._drop()

    # -- the rest -----------------------------------------------------------------------

    def check(self) -> str:
        """Connect, secure and authenticate; send nothing."""
        self._connection()
        tls = f" over {self._tls_version}" if self._tls_version else " without TLS"
        login = (
            f", authenticated as {self.settings.username or self.settings.mailbox} "
            f"({self.settings.auth.upper()})"
            if self.settings.auth != "none"
            else ""
        )
        return f"smtp: connected to {self._where}{tls}{login}"

    def close(self) -> None:
        """Say QUIT where the connection is still up, then close it."""
        if self._smtp is None:
            return
        try:
            self._smtp.quit()
        except (smtplib.SMTPException, OSError):
            pass
        finally:
            self._drop()


_LEADING_DOT = re.compile(rb"(?m)^\.")


def _dot_stuffed(data: bytes) -> bytes:
    """The DATA payload: leading dots doubled, CRLF-terminated, then the ``.`` line."""
    data = _LEADING_DOT.sub(b"..", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"
