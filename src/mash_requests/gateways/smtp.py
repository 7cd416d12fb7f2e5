"""SMTP submission (smtplib): STARTTLS or implicit TLS, AUTH PLAIN/LOGIN/XOAUTH2.

One connection is opened on the first send and reused; a connection the server dropped
while idle is noticed (NOOP) and reopened before the next message.

Where a failure leaves the message decides its class:

- a 4xx reply, or a connection refused, dropped or timed out *before* the end-of-data
  ``.`` was sent: transient (the server cannot have taken a message it never saw end);
- a 5xx reply: permanent;
- the connection dropped or timed out *after* the end-of-data ``.`` and before the reply:
  ambiguous: the server may have queued the message. SMTP cannot look in Sent Items, so
  the retry policy records it as unconfirmed and never sends it again by itself.
- any refusal of the credentials (AUTH answered with anything but success, a 530 that
  asks for a login): permanent, so a run logs in once and a service account is never
  locked out by retries;
- TLS that waiting cannot mend (certificate not trusted, for another host name, expired
  or too weak; the server offering only TLS older than 1.2; no TLS where TLS was
  expected): permanent. Trying again in a minute meets the same server; a person must
  set ``ca_file``, correct ``host`` or ``security``, or have the server fixed;
- anything else smtplib raises (a bug, an address or password it cannot encode):
  permanent before ``DATA``, ambiguous after; only the exception's type is kept.

Each error says what failed (:class:`~mash_requests.errors.Failure`) in the words a person
acts on, then the server's or OpenSSL's own words, then the fix (see :func:`tls_failure`
and :meth:`SmtpGateway._refused`); the README's Gateways section lists them.

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
from typing import TYPE_CHECKING, ClassVar

from mash_requests.errors import (
    AmbiguousGatewayError,
    Failure,
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
        else:
            table.secret_not_read("password", read="read with auth = 'plain' or 'login'")
        if auth == "xoauth2":
            from mash_requests.gateways.graph import ClientCredentials

            oauth = ClientCredentials.from_table(table)
        else:
            table.secret_not_read("client_secret", read="read with auth = 'xoauth2'")
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


def _reply_words(code: int, reply: bytes | str) -> str:
    """The server's reply as it said it: code, enhanced status, text."""
    return f"{code} {_reply_text(reply)}".strip()


def _deferred(code: int) -> bool:
    return 400 <= code < 500


_ENHANCED = re.compile(r"\s*([245])\.(\d{1,3})\.(\d{1,3})\b")


def _enhanced(reply: bytes | str) -> tuple[int, int] | None:
    """The subject and detail of an RFC 3463 enhanced status code (5.7.1 -> (7, 1))."""
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    match = _ENHANCED.match(text)
    return (int(match.group(2)), int(match.group(3))) if match else None


def _too_large(code: int, reply: bytes | str, what: str) -> bool:
    """The server refused the message's size: the enhanced codes for "message length exceeds
    administrative limit" (x.2.3, x.3.4), or, without an enhanced code, 552 to MAIL (SIZE=)
    or to the message. A 552 with another code (5.2.2, mailbox full) is not about size."""
    enhanced = _enhanced(reply)
    if enhanced is not None:
        return enhanced in ((2, 3), (3, 4))
    return code == 552 and what != "the recipient"


#: Words of a refusal for who is sending, from servers that give no enhanced status code.
_POLICY_WORDS = ("relay access denied", "relaying denied", "client host rejected")


def _policy(reply: bytes | str) -> bool:
    """A refusal for who is sending (RFC 3463 x.7.x: relaying, client host, security), not
    for the address; decided by the enhanced code when there is one."""
    enhanced = _enhanced(reply)
    if enhanced is not None:
        return enhanced[0] == 7
    text = (reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply).lower()
    return any(words in text for words in _POLICY_WORDS)


# OpenSSL's certificate verification codes (X509_V_ERR_*) that call for their own fix.
_CERT_NOT_YET_VALID, _CERT_EXPIRED = 9, 10
_HOST_MISMATCH = {62, 64}  # HOSTNAME_MISMATCH, IP_ADDRESS_MISMATCH
_CERT_TOO_WEAK = {66, 67, 68}  # EE_KEY_TOO_SMALL, CA_KEY_TOO_SMALL, CA_MD_TOO_WEAK
# OpenSSL's reasons when the two ends share no TLS version: the server offers only
# versions older than the TLS 1.2 this client requires.
_VERSION_TOO_OLD = {
    "UNSUPPORTED_PROTOCOL",
    "TLSV1_ALERT_PROTOCOL_VERSION",
    "NO_PROTOCOLS_AVAILABLE",
    "VERSION_TOO_LOW",
}
# ... when they share no cipher (or signature algorithm) allowed with TLS 1.2 or later.
_NO_SHARED_CIPHER = {
    "SSLV3_ALERT_HANDSHAKE_FAILURE",
    "NO_SHARED_CIPHER",
    "NO_CIPHERS_AVAILABLE",
    "NO_SUITABLE_SIGNATURE_ALGORITHM",
    "DH_KEY_TOO_SMALL",
}
_SSL_LOCATION = re.compile(r"\s*\(_ssl\.c:\d+\)$")


def _openssl_words(exc: ssl.SSLError) -> str:
    """OpenSSL's own words for the failure, without the C source location."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return str(exc.verify_message)
    text = exc.strerror if isinstance(exc.strerror, str) else str(exc)
    return _SSL_LOCATION.sub("", text) or type(exc).__name__


def tls_failure(exc: ssl.SSLError, where: str, *, host: str, security: str) -> GatewayError:
    """Translate a TLS failure with the SMTP server at ``where`` into a gateway error.

    What waiting cannot change is permanent: the certificate (not trusted, for another
    name, expired, too weak), a server that offers only TLS older than 1.2 or no cipher
    allowed with 1.2, a port that does not speak TLS. Anything else (the connection cut
    during the handshake) is transient. Each says what to do.
    """
    words = _openssl_words(exc)
    server = f"SMTP server {where}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = exc.verify_code
        if code in _HOST_MISMATCH:
            return PermanentGatewayError.explained(
                Failure.TLS,
                f"the certificate of {server} is not valid for the host name {host}",
                words,
                fix="set host to a name the certificate was issued for, "
                f"or have the certificate reissued for {host}",
            )
        if code in (_CERT_EXPIRED, _CERT_NOT_YET_VALID):
            return PermanentGatewayError.explained(
                Failure.TLS,
                f"the certificate of {server} is out of date",
                words,
                fix="have the server's certificate renewed (or this computer's clock corrected)",
            )
        if code in _CERT_TOO_WEAK:
            return PermanentGatewayError.explained(
                Failure.TLS,
                f"the certificate of {server} is too weak to trust",
                words,
                fix="have the server's certificate reissued with a stronger key and signature",
            )
        return PermanentGatewayError.explained(
            Failure.TLS,
            f"the certificate of {server} is not trusted",
            words,
            fix="set ca_file to the CA that signed it, or have the server's certificate fixed",
        )
    reason = exc.reason or ""
    if reason in _VERSION_TOO_OLD:
        return PermanentGatewayError.explained(
            Failure.TLS,
            f"the server offers TLS older than 1.2 ({server})",
            words,
            fix="have the server upgraded to TLS 1.2 or later; older versions are never used",
        )
    if reason in _NO_SHARED_CIPHER:
        return PermanentGatewayError.explained(
            Failure.TLS,
            f"TLS could not be agreed with {server}",
            words,
            fix="have the server's TLS settings checked: it must offer TLS 1.2 or later "
            "with current ciphers",
        )
    if reason == "WRONG_VERSION_NUMBER":
        fix = (
            "security = 'tls' needs a port that speaks TLS from the first byte (usually "
            "465); for port 587 use security = 'starttls'"
            if security == "tls"
            else "check host and port: something other than an SMTP server answered STARTTLS"
        )
        return PermanentGatewayError.explained(
            Failure.TLS, f"{server} did not answer in TLS", words, fix=fix
        )
    return TransientGatewayError.explained(Failure.TLS, f"TLS with {server} failed", words)


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
        step = "connect"  # which step failed decides what an error means
        try:
            if s.security == "tls":
                smtp = smtplib.SMTP_SSL(
                    s.host, s.port, timeout=s.timeout, context=self._tls_context()
                )
            else:
                smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            smtp.ehlo()
            if s.security == "starttls":
                step = "starttls"
                self._start_tls(smtp)
            step = "login"
            self._login(smtp)
        except GatewayError:
            if smtp is not None:
                smtp.close()
            raise
        except Exception as exc:
            if smtp is not None:
                smtp.close()
            raise self._connect_error(exc, step) from exc
        sock = smtp.sock
        self._tls_version = sock.version() if isinstance(sock, ssl.SSLSocket) else None
        return smtp

    def _start_tls(self, smtp: smtplib.SMTP) -> None:
        if not smtp.has_extn("starttls"):
            raise PermanentGatewayError.explained(
                Failure.TLS,
                f"SMTP server {self._where} does not offer STARTTLS, and nothing is sent in clear",
                fix="use security = 'tls' if the server expects TLS from the first byte "
                "(usually port 465)",
            )
        smtp.starttls(context=self._tls_context())
        smtp.ehlo()

    def _connect_error(self, exc: Exception, step: str) -> GatewayError:
        """What went wrong while connecting, securing (``starttls``) or logging in."""
        server = f"SMTP server {self._where}"
        during = {"connect": "connecting", "starttls": "starting TLS", "login": "logging in"}
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return self._credentials_refused(exc.smtp_code, exc.smtp_error)
        if isinstance(exc, smtplib.SMTPResponseException):
            words = _reply_words(exc.smtp_code, exc.smtp_error)
            cls = TransientGatewayError if _deferred(exc.smtp_code) else PermanentGatewayError
            if step == "starttls":
                what = "could not start TLS now" if _deferred(exc.smtp_code) else "refused STARTTLS"
                return cls.explained(Failure.TLS, f"{server} {what}", words)
            if step == "login":
                return PermanentGatewayError.explained(
                    Failure.AUTHENTICATION, f"{server} did not complete the login", words
                )
            what = (
                "is not taking connections now"
                if _deferred(exc.smtp_code)
                else "refused the connection"
            )
            return cls.explained(
                Failure.SERVER,
                f"{server} {what}",
                words,
                fix="the server is busy or restarting: try again later, and if it keeps "
                "saying so ask its administrators"
                if _deferred(exc.smtp_code)
                else "its words say why; check host and port, and ask its administrators to "
                "let this machine's address send through it",
            )
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            return TransientGatewayError.explained(
                Failure.CONNECTION,
                f"{server} closed the connection while {during[step]}",
                str(exc),
            )
        if isinstance(exc, ssl.SSLError):
            return tls_failure(
                exc, self._where, host=self.settings.host, security=self.settings.security
            )
        if isinstance(exc, OSError):
            words = "timed out" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
            what = (
                f"could not connect to {server}"
                if step == "connect"
                else f"the connection to {server} was lost while {during[step]}"
            )
            return TransientGatewayError.explained(
                Failure.CONNECTION,
                what,
                words or type(exc).__name__,
                fix="check host and port, that the mail server is running, and that no "
                "firewall blocks this machine from it"
                if step == "connect"
                else "",
            )
        kind = type(exc).__name__
        if step == "login":
            # E.g. UnicodeEncodeError: AUTH PLAIN and LOGIN carry ASCII only. Its text
            # could quote the password, so only the type is kept.
            return PermanentGatewayError.explained(
                Failure.AUTHENTICATION,
                f"the credentials could not be sent to {server}",
                kind,
                fix="AUTH PLAIN and LOGIN take only ASCII user names and passwords"
                if isinstance(exc, UnicodeError)
                else "",
            )
        # A bug, or an error smtplib does not class: nothing was sent, and trying again
        # will do the same. Its text is not kept.
        return PermanentGatewayError.explained(
            Failure.SERVER, f"{server} cannot be used: unexpected error while connecting", kind
        )

    def _credentials_refused(self, code: int, reply: bytes | str) -> PermanentGatewayError:
        """AUTH refused: permanent whatever the code, so a run logs in only once."""
        s = self.settings
        user = s.username or s.mailbox
        if s.auth == "xoauth2":
            fix = (
                "check tenant_id and client_id, and that the app may send as "
                f"{s.mailbox} (SMTP.SendAsApp, and the service principal added in Exchange)"
            )
        else:
            fix = "check username and the password (password_env or password_file)"
        if _deferred(code):
            fix = "the server could not check them now; try again later"
        return PermanentGatewayError.explained(
            Failure.AUTHENTICATION,
            f"the SMTP server refused the credentials ({self._where}, "
            f"AUTH {s.auth.upper()} as {user})",
            _reply_words(code, reply),
            fix=fix,
        )

    def _login(self, smtp: smtplib.SMTP) -> None:
        s = self.settings
        if s.auth == "none":
            return
        mechanism = s.auth.upper()
        offered = smtp.esmtp_features.get("auth", "").upper().split()
        if mechanism not in offered:
            raise PermanentGatewayError.explained(
                Failure.AUTHENTICATION,
                f"SMTP server {self._where} does not offer AUTH {mechanism}",
                f"it offers {'AUTH ' + ' '.join(offered) if offered else 'no AUTH at all'}",
                fix="set auth to a mechanism it offers"
                if offered
                else "check host, port and security: this server takes no logins",
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
            return self._submit(message)
        except Exception:
            raise
        except BaseException:
            # Broken off mid-exchange (a second Ctrl-C): the connection is in no known
            # state, and close()'s QUIT would wait for the server's answer to the message.
            self._drop()
            raise

    def _submit(self, message: OutgoingMessage) -> Receipt:
        server = f"SMTP server {self._where}"
        try:
            data = message.as_bytes()
        except Exception as exc:
            raise PermanentGatewayError.explained(
                Failure.MESSAGE,
                "the message could not be written for SMTP; nothing was sent",
                type(exc).__name__,
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
            raise TransientGatewayError.explained(
                Failure.CONNECTION,
                f"the connection to {server} was lost before the message was sent",
                str(exc) or type(exc).__name__,
            ) from exc
        except Exception as exc:
            # E.g. UnicodeEncodeError for an address smtplib cannot write: before DATA,
            # so certainly not sent, and the same message would fail the same way.
            self._drop()
            raise PermanentGatewayError.explained(
                Failure.MESSAGE,
                f"an address could not be written for {server}; nothing was sent",
                type(exc).__name__,
                fix="the server does not take addresses that are not ASCII",
            ) from exc
        if code != 354:
            self._reset()
            raise self._refused("the message", code, reply)
        try:
            smtp.send(_dot_stuffed(data))
        except (smtplib.SMTPException, OSError) as exc:
            # The end-of-data line was not (completely) sent: the server cannot take it.
            self._drop()
            raise TransientGatewayError.explained(
                Failure.CONNECTION,
                f"the connection to {server} was lost while sending the message, "
                "before its end, so it was not accepted",
                str(exc) or type(exc).__name__,
            ) from exc
        except Exception as exc:
            # Not a socket failure: whether the end-of-data line went cannot be told.
            self._drop()
            raise self._unexpected_after_data(exc) from exc
        try:
            code, reply = smtp.getreply()
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            words = "timed out" if isinstance(exc, TimeoutError) else str(exc)
            raise AmbiguousGatewayError.explained(
                Failure.CONNECTION,
                f"{server} gave no answer after the whole message was sent",
                words or type(exc).__name__,
            ) from exc
        except Exception as exc:
            self._drop()
            raise self._unexpected_after_data(exc) from exc
        if code != 250:
            self._reset()
            raise self._refused("the message", code, reply)
        self._last_reply = time.monotonic()
        return Receipt(
            gateway=self.name,
            message_id=message.message_id,
            gateway_id=_reply_text(reply),
            detail=f"{code} from {self._where}",
        )

    def _unexpected_after_data(self, exc: Exception) -> AmbiguousGatewayError:
        return AmbiguousGatewayError.explained(
            Failure.SERVER,
            f"sending to SMTP server {self._where} failed unexpectedly after the message began",
            type(exc).__name__,
        )

    def _refused(
        self, what: str, code: int, reply: bytes | str, *, address: str = ""
    ) -> GatewayError:
        """A reply other than the one hoped for to MAIL, RCPT or DATA.

        ``what`` is "the sender", "the recipient" (``address`` names which) or "the
        message". 4xx: deferred, try
        again. 530: the server wants a login first (permanent, as any credential
        failure). Anything else: refused for good, saying which part was refused.
        """
        server = f"SMTP server {self._where}"
        if address:
            server += f" (RCPT TO {address})"
        words = _reply_words(code, reply)
        if _deferred(code):
            failure = Failure.RECIPIENT if what == "the recipient" else Failure.SERVER
            return TransientGatewayError.explained(
                failure,
                f"{server} deferred {what}",
                words,
                fix="the server is busy or limiting this sender: it is tried again; if it still "
                "defers, send it again later",
            )
        if code == 530:
            return PermanentGatewayError.explained(
                Failure.AUTHENTICATION,
                f"{server} requires a login before it takes mail",
                words,
                fix="set auth, username and password_env (or password_file) in [gateway.smtp]"
                if self.settings.auth == "none"
                else "check that username may send through this server",
            )
        if _too_large(code, reply, what):
            return PermanentGatewayError.explained(
                Failure.MESSAGE,
                f"the message is larger than {server} takes",
                words,
                fix="ask its administrators for its message size limit (the referral form is "
                "attached), or attach a smaller form",
            )
        if what != "the message" and _policy(reply):
            return PermanentGatewayError.explained(
                Failure.SERVER,
                f"{server} refused to take mail from this "
                f"{'machine' if self.settings.auth == 'none' else 'account'}",
                words,
                fix="the address is not the problem: set auth, username and password_env in "
                "[gateway.smtp] (a submission port wants a login), or ask its administrators "
                "to let this machine send through it"
                if self.settings.auth == "none"
                else "the address is not the problem: ask its administrators to let "
                f"{self.settings.username or self.settings.mailbox} send as [mash] sender to "
                "this recipient",
            )
        if what == "the recipient":
            return PermanentGatewayError.explained(
                Failure.RECIPIENT,
                f"the recipient was refused by {server}",
                words,
                fix="check the partner's address in the partner directory",
            )
        if what == "the sender":
            return PermanentGatewayError.explained(
                Failure.MESSAGE,
                f"the sender was refused by {server}",
                words,
                fix="check that the account may send as [mash] sender",
            )
        return PermanentGatewayError.explained(
            Failure.MESSAGE,
            f"the message was refused by {server}",
            words,
            fix="its words say why; check that it takes mail for the partner's address and "
            "a message of this size (the form is attached), or ask its administrators",
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
            raise self._refused("the sender", code, reply)
        for recipient in message.recipients:
            code, reply = smtp.rcpt(recipient)
            if code not in (250, 251):
                raise self._refused("the recipient", code, reply, address=recipient)

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
    if data.startswith(b".") or b"\n." in data:  # rare: a fast search spares the rewrite
        data = _LEADING_DOT.sub(b"..", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"
