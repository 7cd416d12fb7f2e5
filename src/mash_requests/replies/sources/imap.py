"""IMAP (imaplib): any mail server, Exchange Online with OAuth (XOAUTH2), Dovecot, Postfix boxes.

The folder is opened read-only (``EXAMINE``) and read with ``BODY.PEEK``: nothing is marked
read, moved or deleted. A fetch searches ``SINCE`` the day before the last fetch (IMAP
searches by date), lists the Message-IDs of what it finds, and downloads only messages not
yet recorded.

TLS as for the SMTP gateway: certificates always verified, TLS 1.2 or later, a private CA
trusted with ``ca_file``; ``security = "none"`` is allowed only to a loopback address.

Failures: a refused login (``[AUTHENTICATIONFAILED]``, ``NO`` to LOGIN or AUTHENTICATE), an
untrusted certificate, a port that does not speak TLS, or a folder that does not exist are
permanent; a refused or lost connection, an unknown host name, a timeout or a ``BYE`` are
transient and retried under ``[retry]``. A server that cannot be reached at all is named
(host and port) with what to check: ``[replies.imap]`` host and port, that the server runs,
the network and firewall.
"""

from __future__ import annotations

import contextlib
import imaplib
import re
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, TypeVar

from mash_requests.errors import (
    Failure,
    GatewayError,
    PermanentGatewayError,
    TransientGatewayError,
)
from mash_requests.replies.sources.base import RawMessage, call_with_retry

if TYPE_CHECKING:
    from mash_requests._tables import Table
    from mash_requests.gateways.graph import ClientCredentials
    from mash_requests.retry import RetryPolicy

T = TypeVar("T")

SECURITY_CHOICES = ("tls", "starttls", "none")
AUTH_CHOICES = ("login", "xoauth2")
DEFAULT_PORTS = {"tls": 993, "starttls": 143, "none": 143}
#: The scope Exchange Online wants for IMAP with XOAUTH2 (client credentials).
XOAUTH2_SCOPE = "https://outlook.office365.com/.default"
#: UIDs per FETCH command: keeps command lines short and answers bounded.
FETCH_CHUNK = 100


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Settings:
    """The ``[replies.imap]`` table, validated."""

    kind: ClassVar[str] = "imap"

    host: str
    username: str
    port: int = 993
    security: str = "tls"
    ca_file: Path | None = None
    auth: str = "login"
    password: str | None = field(default=None, repr=False)
    oauth: ClientCredentials | None = None
    folder: str = "INBOX"
    timeout: float = 60

    @classmethod
    def from_table(cls, table: Table) -> Settings:
        """Validate ``[replies.imap]``; reads secrets from the environment or files, no network."""
        host = table.required_string("host")
        security = table.choice("security", SECURITY_CHOICES, "tls")
        if security == "none" and not _is_loopback(host):
            raise table.error(
                "security",
                f"'none' reads in clear and is allowed only to localhost, not {host!r}; "
                "use 'tls' or 'starttls'",
            )
        port = table.integer("port", DEFAULT_PORTS[security], minimum=1)
        if port > 65535:
            raise table.error("port", f"must be at most 65535, got {port}")
        ca_file = table.path("ca_file")
        if ca_file is not None and not ca_file.is_file():
            raise table.error("ca_file", f"no such file: {ca_file}")
        auth = table.choice("auth", AUTH_CHOICES, "login")
        username = table.required_string("username")
        password: str | None = None
        oauth: ClientCredentials | None = None
        if auth == "login":
            password = table.secret("password")
        else:
            from mash_requests.gateways.graph import ClientCredentials

            oauth = ClientCredentials.from_table(table)
        folder = table.string("folder", "INBOX") or "INBOX"
        if any(ch in folder for ch in '\r\n"\\'):
            raise table.error("folder", f"expected a folder name such as 'INBOX', got {folder!r}")
        timeout = table.number("timeout", 60, minimum=1)
        table.reject_unknown()
        return cls(
            host=host,
            username=username,
            port=port,
            security=security,
            ca_file=ca_file,
            auth=auth,
            password=password,
            oauth=oauth,
            folder=folder,
            timeout=timeout,
        )

    @property
    def identity(self) -> str:
        return f"imap://{self.username}@{self.host}:{self.port}/{self.folder}"

    def open(self, policy: RetryPolicy) -> ImapSource:
        token: Callable[[], str] | None = None
        if self.oauth is not None:
            from mash_requests.gateways.graph import TokenSource

            token = TokenSource(self.oauth, XOAUTH2_SCOPE, timeout=self.timeout).token
        return ImapSource(self, policy, token=token)


class ImapSource:
    """Reads one IMAP folder read-only; one connection per fetch."""

    name = "imap"

    def __init__(
        self,
        settings: Settings,
        policy: RetryPolicy,
        *,
        token: Callable[[], str] | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self._token = token
        self._sleep = sleep
        self._conn: imaplib.IMAP4 | None = None

    @property
    def _where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    # -- connection ---------------------------------------------------------------------------

    def _tls_context(self) -> ssl.SSLContext:
        ca = self.settings.ca_file
        context = ssl.create_default_context(cafile=str(ca) if ca else None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def _connect(self) -> imaplib.IMAP4:
        if self._conn is not None:
            return self._conn
        s = self.settings
        conn: imaplib.IMAP4 | None = None
        step = "connecting"  # what was under way when it failed, for the error
        try:
            if s.security == "tls":
                conn = imaplib.IMAP4_SSL(
                    s.host, s.port, ssl_context=self._tls_context(), timeout=s.timeout
                )
            else:
                conn = imaplib.IMAP4(s.host, s.port, timeout=s.timeout)
                if s.security == "starttls":
                    if "STARTTLS" not in conn.capabilities:
                        raise PermanentGatewayError(
                            f"IMAP server {self._where} does not offer STARTTLS; refusing to "
                            "log in in clear (use security = 'tls' if it expects TLS at once)",
                            failure=Failure.TLS,
                        )
                    step = "starting TLS"
                    conn.starttls(ssl_context=self._tls_context())
            step = "logging in"
            self._login(conn)
            step = "opening the folder"
            status, data = conn.select(_quoted(s.folder), readonly=True)
            if status != "OK":
                raise PermanentGatewayError(
                    f"IMAP server {self._where} cannot open folder {s.folder!r}: "
                    f"{_words(data)}; check [replies.imap] folder",
                    server_message=_words(data),
                    failure=Failure.SERVER,
                )
        except BaseException as exc:
            if conn is not None:
                _close_quietly(conn)
            if isinstance(exc, Exception) and not isinstance(exc, GatewayError):
                raise self._translate(exc, step) from exc
            raise
        self._conn = conn
        return conn

    def _login(self, conn: imaplib.IMAP4) -> None:
        s = self.settings
        try:
            if self._token is not None:
                bearer = self._token()
                blob = f"user={s.username}\x01auth=Bearer {bearer}\x01\x01".encode()
                conn.authenticate("XOAUTH2", lambda _challenge: blob)
            else:
                assert s.password is not None
                conn.login(s.username, s.password)
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error as exc:
            words = _words(exc.args)
            raise PermanentGatewayError(
                f"IMAP server {self._where} refused the credentials of {s.username}: {words}; "
                "check username and the password (or the app's IMAP permission)",
                server_message=words,
                failure=Failure.AUTHENTICATION,
            ) from exc

    def _translate(self, exc: Exception, step: str) -> GatewayError:
        """An imaplib, ssl or socket error as a gateway error saying what failed."""
        if isinstance(exc, ssl.SSLCertVerificationError):
            return PermanentGatewayError(
                f"the certificate of IMAP server {self._where} is not trusted "
                f"({exc.verify_message}); set ca_file to the CA that signed it",
                server_message=str(exc.verify_message),
                failure=Failure.TLS,
            )
        if isinstance(exc, ssl.SSLError) and exc.reason == "WRONG_VERSION_NUMBER":
            return PermanentGatewayError.explained(
                Failure.TLS,
                f"IMAP server {self._where} did not answer in TLS",
                str(exc.reason),
                fix="security = 'tls' needs a port that speaks TLS from the first byte "
                "(usually 993); for port 143 use security = 'starttls'"
                if self.settings.security == "tls"
                else "check [replies.imap] host and port: something other than an IMAP "
                "server answered STARTTLS",
            )
        if isinstance(exc, ssl.SSLError):
            return PermanentGatewayError(
                f"TLS with IMAP server {self._where} failed ({exc.reason}); it may offer "
                "only TLS older than 1.2",
                server_message=str(exc.reason),
                failure=Failure.TLS,
            )
        if step == "connecting" and isinstance(exc, OSError):
            return self._unreachable(exc)
        if isinstance(exc, imaplib.IMAP4.abort | OSError | socket.timeout):
            problem = "timed out" if isinstance(exc, TimeoutError) else _words(exc.args)
            return TransientGatewayError(
                f"IMAP server {self._where} could not be reached while {step} ({problem})",
                server_message=problem,
                failure=Failure.CONNECTION,
            )
        if isinstance(exc, imaplib.IMAP4.error):
            words = _words(exc.args)
            return PermanentGatewayError(
                f"IMAP server {self._where} refused {step}: {words}",
                server_message=words,
                failure=Failure.SERVER,
            )
        kind = type(exc).__name__
        return PermanentGatewayError(
            f"IMAP failed unexpectedly while {step} ({kind})",
            server_message=kind,
            failure=Failure.SERVER,
        )

    def _unreachable(self, exc: OSError) -> TransientGatewayError:
        """No connection to the server at all: what happened, and what a person checks.

        Transient (a server restarting, a network blip); when the retries run out, this is
        what the person reads, so it names the server and the config keys, never a secret.
        """
        server = f"IMAP server {self._where}"
        check = "check [replies.imap] host and port in the config"
        if isinstance(exc, socket.gaierror):
            what = f"the host name of {server} could not be found"
            fix = f"{check} (the host's spelling), and that this machine's DNS works"
        elif isinstance(exc, ConnectionRefusedError):
            what = f"{server} refused the connection"
            fix = f"{check}, that the IMAP server is running, and that no firewall refuses it"
        elif isinstance(exc, TimeoutError):
            seconds = self.settings.timeout
            what = f"{server} did not answer within {seconds:g} second{'s' * (seconds != 1)}"
            fix = (
                f"{check}, that the IMAP server is running, and that no firewall drops "
                "this machine's connections to it"
            )
        else:  # e.g. no route to the host or its network
            what = f"could not connect to {server}"
            fix = (
                f"{check}, that the IMAP server is running, and that this machine's network "
                "and firewall let it reach the server"
            )
        words = "timed out" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        return TransientGatewayError.explained(
            Failure.CONNECTION, what, words or type(exc).__name__, fix=fix
        )

    def _call(self, step: str, action: Callable[[imaplib.IMAP4], T]) -> T:
        """One command on a live connection, reconnecting and retrying transient failures."""

        def attempt() -> T:
            conn = self._connect()
            try:
                return action(conn)
            except GatewayError:
                raise
            except Exception as exc:
                error = self._translate(exc, step)
                if isinstance(error, TransientGatewayError):
                    self._drop()
                raise error from exc

        if self._sleep is None:
            return call_with_retry(attempt, self.policy)
        return call_with_retry(attempt, self.policy, sleep=self._sleep)

    def _drop(self) -> None:
        if self._conn is not None:
            _close_quietly(self._conn)
            self._conn = None

    # -- reading -----------------------------------------------------------------------------

    def messages(
        self, since: datetime | None, known: Callable[[str], bool]
    ) -> Iterator[RawMessage]:
        """New messages in the folder since ``since`` (a day earlier: IMAP counts days)."""
        from mash_requests.replies.classify import normalise_message_id

        def search(conn: imaplib.IMAP4) -> list[bytes]:
            return _search(conn, since)

        uids = self._call("searching the folder", search)
        wanted: list[bytes] = []
        for chunk in _chunks(uids, FETCH_CHUNK):

            def list_ids(conn: imaplib.IMAP4, chunk: list[bytes] = chunk) -> _Fetched:
                return _fetch(conn, chunk, "(UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")

            listed = self._call("listing Message-IDs", list_ids)
            for uid, _, header in listed:
                text = header.decode("ascii", "replace")
                message_id = normalise_message_id(text.partition(":")[2].strip())
                if message_id is None or not known(message_id):
                    wanted.append(uid)
        for chunk in _chunks(wanted, FETCH_CHUNK // 4):

            def download(conn: imaplib.IMAP4, chunk: list[bytes] = chunk) -> _Fetched:
                return _fetch(conn, chunk, "(UID INTERNALDATE BODY.PEEK[])")

            fetched = self._call("downloading messages", download)
            for uid, received, data in fetched:
                yield RawMessage(data=data, received_at=received, where=f"UID {uid.decode()}")

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.logout()
            except (imaplib.IMAP4.error, OSError):
                pass
            finally:
                self._conn = None


def _search(conn: imaplib.IMAP4, since: datetime | None) -> list[bytes]:
    if since is None:
        status, data = conn.uid("SEARCH", "ALL")
    else:
        day = (since.astimezone(UTC) - timedelta(days=1)).strftime("%d-%b-%Y")
        status, data = conn.uid("SEARCH", "SINCE", day)
    if status != "OK":
        raise imaplib.IMAP4.error(f"SEARCH {status}: {_words(data)}")
    return [uid for part in data if isinstance(part, bytes) for uid in part.split()]


_UID = re.compile(rb"\bUID (\d+)")
_INTERNALDATE = re.compile(rb'INTERNALDATE "([^"]+)"')


_Fetched = list[tuple[bytes, datetime | None, bytes]]


def _fetch(conn: imaplib.IMAP4, uids: list[bytes], items: str) -> _Fetched:
    """(uid, internal date, literal) for each message of one UID FETCH."""
    status, data = conn.uid("FETCH", b",".join(uids).decode(), items)
    if status != "OK":
        raise imaplib.IMAP4.error(f"FETCH {status}: {_words(data)}")
    found: _Fetched = []
    for index, part in enumerate(data):
        if not isinstance(part, tuple):
            continue
        # The literal's prefix names the items; some servers put items after the literal.
        after = data[index + 1] if index + 1 < len(data) else b""
        meta = part[0] + (after if isinstance(after, bytes) else b"")
        uid = _UID.search(meta)
        if uid is None:
            continue
        received: datetime | None = None
        date = _INTERNALDATE.search(meta)
        if date is not None:
            try:
                text = date.group(1).decode("ascii").strip()
                received = datetime.strptime(text, "%d-%b-%Y %H:%M:%S %z").astimezone(UTC)
            except ValueError:
                received = None
        found.append((uid.group(1), received, part[1]))
    return found


def _chunks(items: list[bytes], size: int) -> Iterator[list[bytes]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _quoted(folder: str) -> str:
    return f'"{folder}"'


def _words(args: object) -> str:
    parts = args if isinstance(args, list | tuple) else [args]
    text = " ".join(
        part.decode("utf-8", "replace") if isinstance(part, bytes) else str(part)
        for part in parts
        if part is not None
    )
    return " ".join(text.split())[:300]


def _close_quietly(conn: imaplib.IMAP4) -> None:
    with contextlib.suppress(OSError, imaplib.IMAP4.error):
        conn.shutdown()
