"""Exchange Web Services (exchangelib): on-premises Exchange, and Exchange Online until 2027.

A send is one ``CreateItem`` with ``SendAndSaveCopy``: the message, our own Message-ID
(``InternetMessageId``), ``ReplyTo`` (where partners' replies go), the ``X-MASH-Request-Ref``
header (an InternetHeaders extended property) and the form as a ``FileAttachment`` whose
``Content`` is the form's exact bytes.
A copy goes to Sent Items, where :meth:`EwsGateway.find_sent` looks the Message-ID up.

exchangelib runs with its FailFast policy: it must never re-POST by itself, because a
re-POST after a lost answer sends a second copy. For the same reason the CreateItem is posted
with the configured API version only: exchangelib would post it again with every other
version it knows when the answer is a version-like refusal (``ErrorInvalidRequest`` …).
Our subclass of it also keeps the HTTP
answer each error is about, because exchangelib's errors do not carry it and some misname
it (a 401 with ``Connection: close`` arrives as "ErrorServerBusy: Caused by closed
connection"). An answer exchangelib refused is classed by its HTTP status, and quoted by
it and its own text (an IIS page's title or first line, bounded), never by a library
internal. Errors are classed here:

- a refused login in any form (HTTP 401 with or without ``Connection: close``, a locked-out
  account, NTLM without a challenge, the identity platform refusing the app's token):
  permanent, ``Failure.AUTHENTICATION``; after one, the gateway contacts nothing more and
  every later call fails with the same error (one failed login, never a lock-out);
- ``ErrorServerBusy`` (a SOAP fault or inside a response message), HTTP 429, HTTP 503/408
  to any request but the sending one, and failures before the request left (connection
  refused, connect timeout): transient. The wait is the server's hint only where the
  server sent one (``BackOffMilliseconds`` read from its answer, ``Retry-After``); never
  exchangelib's own default, which it puts in ``ErrorServerBusy.back_off`` when there is
  none;
- a timeout, reset, HTTP 5xx (503 included: a front end can answer it after the mailbox
  server sent the message) or ``ErrorInternalServerError`` (the server failed part-way)
  *after* the CreateItem was sent: ambiguous (Exchange may have
  sent it; the retry policy looks in Sent Items);
- an untrusted certificate, and the server's refusals (``ErrorInvalidRecipients``,
  ``ErrorSendAsDenied``, ``ErrorMessageSizeExceeded`` …): permanent, with the server's own
  words;
- a message exchangelib cannot build (e.g. a subject over 255 characters): permanent,
  naming the field but never its value;
- anything else (a bug, an error exchangelib does not class): ambiguous while sending,
  permanent before; only the exception's type is kept, as its text may quote the message.

Every error's message is the sentence a person acts on: what failed, the server's own
words (also kept alone as ``server_message``), then the fix where there is one.

Exchange 2010 and older are refused at configuration: they need a save/attach/send
sequence that can leave a half-sent draft.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar
from urllib.parse import urlsplit

from mash_requests.errors import (
    AmbiguousGatewayError,
    Failure,
    GatewayError,
    PermanentGatewayError,
    TransientGatewayError,
)
from mash_requests.gateways.base import OutgoingMessage, Receipt
from mash_requests.gateways.entra import retry_after

if TYPE_CHECKING:
    from mash_requests._tables import Table

T = TypeVar("T")

AUTH_CHOICES = ("ntlm", "basic", "oauth")
#: Version names accepted in the config and the build each stands for (2013 or later only).
VERSION_BUILDS: dict[str, tuple[int, ...]] = {
    "Exchange2013": (15, 0),
    "Exchange2013_SP1": (15, 0, 847),
    "Exchange2016": (15, 1),
    "Exchange2019": (15, 2),
}
_BUILD = re.compile(r"^\d+(\.\d+){1,3}$")


def _parse_build(value: str) -> tuple[int, ...] | None:
    if value in VERSION_BUILDS:
        return VERSION_BUILDS[value]
    if _BUILD.match(value):
        return tuple(int(part) for part in value.split("."))
    return None


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Settings:
    """The ``[gateway.ews]`` table, validated."""

    kind: ClassVar[str] = "ews"

    mailbox: str
    endpoint: str | None
    version: tuple[int, ...] = (15, 1)
    auth: str = "ntlm"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    autodiscover: bool = False
    timeout: float = 60

    @classmethod
    def from_table(cls, table: Table) -> Settings:
        """Validate ``[gateway.ews]``; reads secrets from the environment or files, no network."""
        mailbox = table.required_string("mailbox")
        autodiscover = table.boolean("autodiscover", False)
        endpoint = table.string("endpoint")
        if endpoint is None and not autodiscover:
            raise table.error(
                "endpoint",
                "is required (e.g. https://mail.council.example/EWS/Exchange.asmx) "
                "unless autodiscover = true",
            )
        if endpoint is not None:
            parts = urlsplit(endpoint)
            secure = parts.scheme == "https" or (
                parts.scheme == "http" and _is_loopback(parts.hostname or "")
            )
            if not secure or not parts.hostname:
                raise table.error("endpoint", f"must be an https:// URL, got {endpoint!r}")
        version_name = table.string("version", "Exchange2016") or "Exchange2016"
        version = _parse_build(version_name)
        if version is None:
            raise table.error(
                "version",
                f"expected one of {', '.join(VERSION_BUILDS)} or a build such as '15.1', "
                f"got {version_name!r}",
            )
        if version[0] < 15:
            raise table.error("version", "Exchange 2010 and older are not supported")
        auth = table.choice("auth", AUTH_CHOICES, "ntlm")
        username = password = tenant_id = client_id = client_secret = None
        if auth == "oauth":
            table.secret_not_read("password", read="read with auth = 'ntlm' or 'basic'")
            tenant_id = table.required_string("tenant_id")
            client_id = table.required_string("client_id")
            client_secret = table.secret("client_secret")
        else:
            table.secret_not_read("client_secret", read="read with auth = 'oauth'")
            username = table.required_string("username")
            password = table.secret("password")
        timeout = table.number("timeout", 60, minimum=1)
        table.reject_unknown()
        return cls(
            mailbox=mailbox,
            endpoint=endpoint,
            version=version,
            auth=auth,
            username=username,
            password=password,
            tenant_id=tenant_id,
            client_id=client_id,
            client_secret=client_secret,
            autodiscover=autodiscover,
            timeout=timeout,
        )

    @property
    def who(self) -> str:
        """Who authenticates, for messages: the user, or the app for OAuth."""
        return f"app {self.client_id}" if self.auth == "oauth" else f"user {self.username}"

    def open(self) -> EwsGateway:
        """The gateway; exchangelib is imported and contacted on first use."""
        return EwsGateway(self)


# -- what the server answered -------------------------------------------------------------

#: At most this many characters of a server's own text go into an error.
_WORDS_LIMIT = 200
#: At most this much of an error page is read for its words.
_PAGE_LIMIT = 64 * 1024
#: BackOffMilliseconds in a SOAP fault's detail or a response message's MessageXml.
_BACK_OFF = re.compile(
    rb"<(?:[\w-]+:)?Value\s+Name\s*=\s*[\"']BackOffMilliseconds[\"']\s*>\s*(\d{1,10})\s*<"
)
_QUOTED = r"=\s*\"([^\"]{1,300})\""


def _bounded(text: str, limit: int = _WORDS_LIMIT) -> str:
    """One line of printable text, cut at ``limit`` characters."""
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


class _PageText(HTMLParser):
    """An HTML page's title and visible text, scripts and styles left out."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.texts: list[str] = []
        self._inside: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"title", "script", "style"}:
            self._inside = tag

    def handle_endtag(self, tag: str) -> None:
        if tag == self._inside:
            self._inside = None

    def handle_data(self, data: str) -> None:
        text = " ".join(data.split())
        if not text or self._inside in {"script", "style"}:
            return
        if self._inside == "title":
            self.title = f"{self.title} {text}".strip()
        else:
            self.texts.append(text)


def _own_text(content: bytes, content_type: str, status_line: str) -> str:
    """The words of an answer that is not EWS: an HTML page's title or first text, or the
    first line of plain text; whatever only repeats the status line is skipped. A SOAP or
    other XML body gives nothing here (exchangelib reads its words)."""
    page = content[:_PAGE_LIMIT].decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    if not page:
        return ""
    html = "html" in content_type.lower() or re.match(
        r"<(!doctype\s+html|html|head|body|title|h\d|p)\b", page, re.IGNORECASE
    )
    if html:
        parser = _PageText()
        parser.feed(page)
        parser.close()
        candidates = [parser.title, *parser.texts]
    elif page.startswith("<"):
        return ""
    else:
        candidates = page.splitlines()
    for candidate in candidates:
        text = _bounded(candidate)
        if text and text.lower().rstrip(".") not in status_line.lower():
            return text
    return ""


@dataclass(frozen=True)
class _HttpAnswer:
    """An HTTP answer exchangelib refused (anything but 200 or a SOAP fault), as words."""

    status: int
    reason: str
    #: The page's own text (an IIS error page's title or first text), bounded.
    text: str
    #: Exchange's diagnostics for a refused token (``x-ms-diagnostics``, a Bearer ``error``).
    diagnostics: str
    #: The server's ``Retry-After``, in seconds.
    retry_after: float | None
    #: ``X-CasErrorCode``: Exchange's front end (CAS) refused the request.
    cas_error: str
    #: The page says the account is locked out.
    locked_out: bool

    @classmethod
    def of(cls, response: Any) -> _HttpAnswer:
        headers = response.headers
        status = int(response.status_code)
        reason = str(response.reason or "")
        content = bytes(response.content or b"")
        diagnostics = ""
        for header, pattern in (
            ("x-ms-diagnostics", "reason" + _QUOTED),
            ("www-authenticate", "error_description" + _QUOTED),
            ("www-authenticate", "error" + _QUOTED),
        ):
            match = re.search(pattern, headers.get(header, ""))
            if match:
                diagnostics = _bounded(match.group(1))
                break
        cas_error = headers.get("x-caserrorcode", "")
        return cls(
            status=status,
            reason=reason,
            text=_own_text(content, headers.get("content-type", ""), f"{status} {reason}"),
            diagnostics=diagnostics,
            retry_after=retry_after(headers.get("retry-after")),
            cas_error=_bounded(cas_error.removeprefix("CAS error:").strip()),
            locked_out=b"currently locked out" in content,
        )

    @property
    def words(self) -> str:
        """``HTTP 503 Service Unavailable: <the page's own text> (<diagnostics>)``."""
        words = f"HTTP {self.status} {self.reason}".strip()
        if self.text:
            words += f": {self.text}"
        if self.diagnostics:
            words += f" ({self.diagnostics})"
        return words


def _back_off_hint(response: Any) -> float | None:
    """The server's BackOffMilliseconds in seconds, read from the answer itself.

    exchangelib's ``ErrorServerBusy.back_off`` cannot be trusted for this: it reads the
    value only from a SOAP fault, and when the fault has none, or the error sits in a
    response message, it puts its own retry wait (10 s) there.
    """
    if response is None:
        return None
    match = _BACK_OFF.search(bytes(response.content or b"")[: 1 << 20])
    return int(match.group(1)) / 1000 if match else None


@functools.cache
def _policy_class() -> type[Any]:
    """exchangelib's FailFast policy, keeping the HTTP answers of the current call."""
    from exchangelib.protocol import FailFast

    class AnswerKeepingFailFast(FailFast):  # type: ignore[misc]
        """Never re-POSTs (FailFast), and keeps the answers its errors are about.

        exchangelib's errors do not carry the HTTP response, and some say something else
        than it did (a 401 with ``Connection: close`` becomes "ErrorServerBusy: Caused by
        closed connection"). ``last`` is the latest answer, ``refused`` the one exchangelib
        raised an error for; :meth:`EwsGateway._call` clears both before each call.
        """

        last: Any = None
        refused: Any = None

        def raise_response_errors(self, response: Any) -> None:
            self.last = response
            try:
                super().raise_response_errors(response)
            except Exception:
                self.refused = response
                raise

        def forget(self) -> None:
            self.last = self.refused = None

    return AnswerKeepingFailFast


# -- error translation --------------------------------------------------------------------

#: Response codes that say "not now" rather than "no": the message was not sent.
TRANSIENT_CODES = frozenset(
    {
        "ErrorServerBusy",
        "ErrorInternalServerTransientError",
        "ErrorTooManyObjectsOpened",
        "ErrorMailboxStoreUnavailable",
        "ErrorMailboxMoveInProgress",
        "ErrorConnectionFailed",
        "ErrorConnectionFailedTransientError",
        "ErrorExceededConnectionCount",
        "ErrorInternalServerError",
    }
)
#: Of those, the ones that say the server failed part-way, not that it did nothing: in
#: answer to the sending CreateItem the message may have gone (like an HTTP 500), so it is
#: looked up in Sent Items before any resend.
MAYBE_DONE_CODES = frozenset({"ErrorInternalServerError", "ErrorInternalServerTransientError"})
#: Response codes that refuse a recipient, and the message itself.
RECIPIENT_CODES = frozenset(
    {"ErrorInvalidRecipients", "ErrorMailRecipientNotFound", "ErrorMissingRecipients"}
)
MESSAGE_CODES = frozenset(
    {
        "ErrorMessageSizeExceeded",
        "ErrorAttachmentSizeLimitExceeded",
        "ErrorSchemaValidation",
        "ErrorInvalidPropertyValue",
    }
)
#: OAuth errors that say the identity platform could not answer now, rather than "no".
_OAUTH_NOT_NOW = frozenset(
    {"temporarily_unavailable", "server_error", "missing_token", "token_expired"}
)

E = TypeVar("E", bound=GatewayError)


def _explained(
    kind: type[E],
    failure: Failure,
    what: str,
    words: str = "",
    *,
    fix: str = "",
    retry_after: float | None = None,
) -> E:
    """The error whose message reads ``<what>: <words>; <fix>`` (``words`` alone kept as
    ``server_message``): what failed, the server's own words, what to do."""
    words = " ".join(words.split())
    message = what
    if words:
        message += f": {words.rstrip('.')}"
    if fix:
        message += f"; {fix}"
    return kind(message, server_message=words, retry_after=retry_after, failure=failure)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and what it was raised from or during (exchangelib re-raises a lot)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _words(exc: BaseException) -> str:
    return _bounded(str(exc), 300)


def _network_problem(network: BaseException) -> tuple[str, bool]:
    """Plain words for a network failure, and whether the request certainly never left."""
    import requests
    from urllib3.exceptions import NameResolutionError, NewConnectionError

    # requests wraps urllib3's MaxRetryError, whose reason is the failure itself.
    inner = network.args[0] if network.args else None
    causes = (network, inner, getattr(inner, "reason", None))
    if isinstance(network, requests.ConnectTimeout):
        return "connect timed out", True
    if any(isinstance(cause, NameResolutionError) for cause in causes):
        return "host name not found", True
    if any(isinstance(cause, NewConnectionError | ConnectionRefusedError) for cause in causes):
        return "connection refused", True
    if isinstance(network, requests.Timeout | TimeoutError):
        return "timed out waiting for the answer", False
    text = str(network).lower()
    if isinstance(network, ConnectionResetError) or "reset" in text:
        return "connection reset", False
    if "aborted" in text or "closed" in text:
        return "connection closed before the answer", False
    return type(network).__name__, False


def _quoted_status(exc: BaseException) -> int | None:
    """The HTTP status an exchangelib error quotes ("Unknown failure … Code: 401 …")."""
    match = re.search(r"\b(?:Code:|HTTP|[Ss]tatus(?: code)?:?)\s*(\d{3})\b", str(exc))
    return int(match.group(1)) if match else None


def _tls_words(exc: BaseException) -> str:
    """The TLS library's own words, e.g. 'certificate verify failed: unable to get …'."""
    match = re.search(r"\[SSL(?:: [A-Z_]+)?\] ([^(')\]]+)", str(exc))
    return _bounded(match.group(1)) if match else _words(exc)


@dataclass(frozen=True)
class _Translator:
    """Turns one exchangelib / requests / oauthlib error into a gateway error.

    ``last`` and ``refused`` are the HTTP answers of the failed call (see
    :func:`_policy_class`); None where no answer was kept.
    """

    settings: Settings
    endpoint: str
    last: Any = None
    refused: Any = None

    # -- the sentences ------------------------------------------------------------------

    def _credentials_refused(self, step: str, words: str, *, locked_out: bool) -> GatewayError:
        s = self.settings
        if s.auth == "oauth":
            what = f"Exchange refused the OAuth token of app {s.client_id} for {s.mailbox}"
            fix = (
                "check that the app has the EWS permission full_access_as_app with admin "
                "consent in tenant_id's directory"
            )
        else:
            what = f"Exchange refused the credentials for {s.mailbox} (user {s.username})"
            fix = "check username and password_env (or password_file)"
        if locked_out:
            fix = f"the account is locked out: have it unlocked, then {fix}"
        return _explained(
            PermanentGatewayError,
            Failure.AUTHENTICATION,
            f"{what} while {step}",
            words,
            fix=fix,
        )

    def _maybe_sent(self, what: str, words: str) -> AmbiguousGatewayError:
        return _explained(
            AmbiguousGatewayError,
            Failure.SERVER,
            what,
            words,
            fix="Exchange may have sent the message: look in Sent Items before resending",
        )

    # -- the classes of failure ---------------------------------------------------------

    def translate(self, exc: Exception, step: str, *, sending: bool) -> GatewayError:
        """The gateway error for ``exc``, raised while ``step`` (see the module doc)."""
        import requests
        from exchangelib import errors as ews

        chain = list(_chain(exc))
        for link in chain:
            if type(link).__module__.startswith("oauthlib.oauth2"):
                return self._oauth(link)
            if isinstance(link, requests.exceptions.SSLError):
                return _explained(
                    PermanentGatewayError,
                    Failure.TLS,
                    f"TLS with Exchange at {self.endpoint} failed while {step}",
                    _tls_words(link),
                    fix="if its certificate is not trusted, set REQUESTS_CA_BUNDLE to the CA "
                    "that signed it; otherwise have the server's certificate or TLS set-up "
                    "fixed",
                )
            if self._ntlm_not_offered(link):
                s = self.settings
                return _explained(
                    PermanentGatewayError,
                    Failure.AUTHENTICATION,
                    f"Exchange did not complete the NTLM sign-in for {s.mailbox} (user "
                    f"{s.username}) while {step}: its answer to our NTLM negotiation carried "
                    "no NTLM challenge",
                    fix="check that the EWS virtual directory offers NTLM (Windows "
                    "authentication), or set auth to what it offers",
                )

        if self.refused is not None:
            # exchangelib refused the HTTP answer itself: its status says what happened,
            # whatever exchangelib made of it.
            return self._http(exc, _HttpAnswer.of(self.refused), step, sending=sending)

        network = next(
            (
                link
                for link in chain
                if isinstance(link, requests.RequestException | ConnectionError | TimeoutError)
            ),
            None,
        )
        if network is not None:
            problem, never_sent = _network_problem(network)
            if sending and not never_sent:
                return _explained(
                    AmbiguousGatewayError,
                    Failure.CONNECTION,
                    f"Exchange at {self.endpoint} gave no answer while {step}",
                    problem,
                    fix="Exchange may have sent the message: look in Sent Items before resending",
                )
            what = (
                f"could not connect to Exchange at {self.endpoint} while {step}"
                if never_sent
                else f"Exchange at {self.endpoint} gave no answer while {step}"
            )
            fix = (
                "check endpoint, that Exchange is running, and that this machine can reach it "
                "(a firewall; HTTPS_PROXY where a proxy is needed)"
                if never_sent
                else ""
            )
            return _explained(TransientGatewayError, Failure.CONNECTION, what, problem, fix=fix)

        # No answer kept (it never reached the policy, e.g. during autodiscover, or a layer
        # below raised): exchangelib's class and the status it quotes are all there is.
        status = _quoted_status(exc) if isinstance(exc, ews.TransportError) else None
        if isinstance(exc, ews.UnauthorizedError) or status == 401:
            locked_out = "currently locked out" in str(exc)
            words = "The referenced account is currently locked out" if locked_out else ""
            return self._credentials_refused(
                step, words or (f"HTTP {status}" if status else ""), locked_out=locked_out
            )
        exc = self._unwrap(exc)
        if isinstance(exc, ews.ErrorServerBusy) and str(exc).startswith("Caused by "):
            # exchangelib's name for an HTTP answer it refused, whose status was not kept.
            what = f"Exchange gave an error answer and closed the connection while {step}"
            if sending:
                return self._maybe_sent(what, "")
            return _explained(TransientGatewayError, Failure.SERVER, what)
        if isinstance(exc, ews.ErrorServerBusy):
            # A SOAP fault or a response message. The wait is the server's BackOffMilliseconds
            # when it sent one, read from its answer; never exchangelib's own default.
            hint = _back_off_hint(self.last)
            return _explained(
                TransientGatewayError,
                Failure.SERVER,
                f"Exchange is busy ({step})",
                f"ErrorServerBusy: {_words(exc)}",
                retry_after=hint,
            )
        if isinstance(exc, ews.ResponseMessageError):
            return self._response_code(exc, step, sending=sending)
        if isinstance(exc, ews.MalformedResponseError):
            # Only the status code is kept, never the content (it may quote anything).
            words = f"HTTP {status}" if status else "an answer that is not EWS"
            if sending:
                return self._maybe_sent(f"Exchange answered {step} unexpectedly", words)
            return _explained(
                TransientGatewayError,
                Failure.SERVER,
                f"Exchange answered {step} unexpectedly",
                words,
            )
        if isinstance(exc, ews.TransportError | ews.EWSError):
            # SOAP faults and other failures with an answer we could not use.
            words = f"{type(exc).__name__}: {_words(exc)}"
            if sending:
                return self._maybe_sent(f"Exchange failed while {step}", words)
            return _explained(
                TransientGatewayError, Failure.SERVER, f"Exchange failed while {step}", words
            )
        # Anything else is a bug or an error exchangelib did not class. Only its type is
        # kept: its text may quote the message (a ValueError names the field and its value).
        kind = type(exc).__name__
        if sending:
            return _explained(
                AmbiguousGatewayError,
                Failure.SERVER,
                f"EWS failed unexpectedly while {step}",
                kind,
                fix="Exchange may have sent the message: look in Sent Items before resending",
            )
        return _explained(
            PermanentGatewayError,
            Failure.SERVER,
            f"EWS failed unexpectedly while {step}",
            kind,
            fix="nothing was sent",
        )

    @staticmethod
    def _ntlm_not_offered(link: BaseException) -> bool:
        """requests_ntlm found no NTLM challenge in the answer to its negotiation."""
        if isinstance(link, KeyError):
            return bool(link.args) and link.args[0] == "www-authenticate"
        return isinstance(link, PermissionError) and "NTLM challenge" in str(link)

    @staticmethod
    def _unwrap(exc: Exception) -> Exception:
        """The server's error under exchangelib's "ErrorServerBusy: Reraised from …"."""
        from exchangelib import errors as ews

        while (
            isinstance(exc, ews.ErrorServerBusy)
            and str(exc).startswith("Reraised from ")
            and isinstance(exc.__context__, ews.EWSError)
        ):
            exc = exc.__context__
        return exc

    def _oauth(self, link: BaseException) -> GatewayError:
        """oauthlib's OAuth2Error, raised while fetching the token."""
        error = str(getattr(link, "error", "") or "oauth_error")
        description = str(getattr(link, "description", "") or "")
        first_line = description.splitlines()[0] if description else ""
        words = f"{error}: {first_line}".strip(": ")
        what = (
            "Microsoft's identity platform (login.microsoftonline.com) refused the token "
            f"request of app {self.settings.client_id} for EWS"
        )
        if error in _OAUTH_NOT_NOW:
            return _explained(
                TransientGatewayError,
                Failure.SERVER,
                "Microsoft's identity platform (login.microsoftonline.com) gave no token "
                f"for app {self.settings.client_id}",
                words,
            )
        return _explained(
            PermanentGatewayError,
            Failure.AUTHENTICATION,
            what,
            words,
            fix="check tenant_id, client_id and client_secret_env (or client_secret_file)",
        )

    def _http(
        self, exc: Exception, answer: _HttpAnswer, step: str, *, sending: bool
    ) -> GatewayError:
        """An HTTP answer exchangelib refused, classed by its status."""
        from exchangelib import errors as ews

        status, words = answer.status, answer.words
        if status == 401 or answer.locked_out or isinstance(exc, ews.UnauthorizedError):
            return self._credentials_refused(step, words, locked_out=answer.locked_out)
        if answer.cas_error:
            return _explained(
                PermanentGatewayError,
                Failure.SERVER,
                f"Exchange's front end refused the request while {step}",
                f"{words} (CAS error: {answer.cas_error})",
            )
        if isinstance(exc, ews.RedirectError):
            return _explained(
                PermanentGatewayError,
                Failure.SERVER,
                f"the EWS endpoint {self.endpoint} redirects to {exc.url}",
                words,
                fix="set endpoint to the right URL",
            )
        if isinstance(exc, ews.ErrorInvalidSchemaVersionForMailboxVersion):
            return _explained(
                PermanentGatewayError,
                Failure.SERVER,
                f"Exchange refused the configured version while {step}",
                words,
                fix="set version to the server's (e.g. Exchange2016)",
            )
        # As for Graph: a front end can answer 503/408 after the mailbox server has sent the
        # message, so on the sending request they are ambiguous. 429 comes before the mailbox.
        if status == 429:
            return _explained(
                TransientGatewayError,
                Failure.SERVER,
                f"Exchange is throttling requests ({step})",
                words,
                retry_after=answer.retry_after,
            )
        if status in (408, 503) and not sending:
            return _explained(
                TransientGatewayError,
                Failure.SERVER,
                f"Exchange is unavailable ({step})",
                words,
                retry_after=answer.retry_after,
            )
        if status >= 500 or status < 400:
            if sending:
                return self._maybe_sent(f"Exchange failed while {step}", words)
            return _explained(
                TransientGatewayError,
                Failure.SERVER,
                f"Exchange failed while {step}",
                words,
                retry_after=answer.retry_after,
            )
        fix = ""
        if status == 403:
            fix = (
                f"check that EWS is enabled for {self.settings.who} and that it may use "
                f"{self.settings.mailbox}"
            )
        return _explained(
            PermanentGatewayError, Failure.SERVER, f"Exchange refused {step}", words, fix=fix
        )

    def _response_code(self, exc: Exception, step: str, *, sending: bool) -> GatewayError:
        """An EWS response code (ErrorSendAsDenied, ErrorInvalidRecipients …)."""
        code = type(exc).__name__
        words = f"{code}: {_words(exc)}"
        if sending and code in MAYBE_DONE_CODES:
            return self._maybe_sent(f"Exchange failed while {step}", words)
        if code in TRANSIENT_CODES:
            return _explained(
                TransientGatewayError,
                Failure.SERVER,
                f"Exchange could not do it now ({step})",
                words,
            )
        s = self.settings
        fixes = {
            "ErrorSendAsDenied": f"give {s.who} the Send As permission on {s.mailbox}",
            "ErrorNonExistentMailbox": f"check mailbox ({s.mailbox})",
            "ErrorImpersonateUserDenied": f"allow {s.who} to impersonate {s.mailbox}",
            "ErrorImpersonationDenied": f"allow {s.who} to impersonate {s.mailbox}",
            "ErrorMessageSizeExceeded": "the message is larger than Exchange accepts",
        }
        if code in RECIPIENT_CODES:
            failure, what = Failure.RECIPIENT, "Exchange refused a recipient of the message"
        elif code in MESSAGE_CODES:
            failure, what = Failure.MESSAGE, "Exchange refused the message"
        else:
            failure, what = Failure.SERVER, f"Exchange refused {step}"
        return _explained(PermanentGatewayError, failure, what, words, fix=fixes.get(code, ""))


# -- the gateway --------------------------------------------------------------------------

_REGISTERED_HEADERS: dict[str, str] = {}


def _header_field(name: str) -> str:
    """The exchangelib field name for an X- header, registered once as an extended property."""
    if name not in _REGISTERED_HEADERS:
        from exchangelib import ExtendedProperty, Message

        field_name = "mash_header_" + re.sub(r"[^a-z0-9]", "_", name.lower())
        prop = type(
            f"InternetHeader_{field_name}",
            (ExtendedProperty,),
            {
                "distinguished_property_set_id": "InternetHeaders",
                "property_name": name,
                "property_type": "String",
            },
        )
        Message.register(field_name, prop)
        _REGISTERED_HEADERS[name] = field_name
    return _REGISTERED_HEADERS[name]


def _build(account: Any, folder: Any, message: OutgoingMessage) -> Any:
    """The exchangelib Message with the form attached, validated before anything is sent.

    exchangelib checks field values (a subject over 255 characters, an address it cannot
    parse) only when it writes the request; validating here makes such a message a
    permanent refusal that certainly sent nothing, rather than a failure of the send.
    """
    from exchangelib import FileAttachment, HTMLBody, Mailbox
    from exchangelib import Message as EwsMessage

    try:
        headers = {
            _header_field(name): value
            for name, value in message.extra_headers
            if name.lower().startswith("x-")
        }
        item = EwsMessage(
            account=account,
            folder=folder,
            subject=message.subject,
            body=HTMLBody(message.html_body),
            to_recipients=[Mailbox(email_address=address) for address in message.recipients],
            message_id=message.message_id,
            reply_to=[Mailbox(email_address=a) for a in message.reply_to_addresses] or None,
            # A reminder threads on its request (Exchange keeps these as the MIME headers).
            in_reply_to=message.mime.get("In-Reply-To"),
            references=message.mime.get("References"),
            # As the MIME the other gateways send: RED is high importance, and From shows
            # the MASH's name (the address is the mailbox's own: config checks they match).
            importance="High" if message.importance == "high" else "Normal",
            author=(
                Mailbox(name=message.sender_name, email_address=message.sender)
                if message.sender_name
                else None
            ),
            **headers,
        )
        form = message.attachment
        item.attach(
            FileAttachment(name=form.filename, content_type=form.content_type, content=form.data)
        )
        item.clean(version=account.version)
    except Exception as exc:
        # exchangelib's words quote the value ("'subject' value '…' exceeds length 255"):
        # only the field's name is kept, never the value, which is message content.
        match = re.match(r"'(\w+)' ", str(exc))
        field_name = f"field {match.group(1)!r}" if match else "a field"
        raise PermanentGatewayError(
            f"EWS cannot carry this message: {field_name} is not valid for Exchange "
            f"({type(exc).__name__}); nothing was sent",
            server_message=f"{type(exc).__name__} in {field_name}",
        ) from exc
    return item


def _send_and_save_once(item: Any) -> Any:
    """``item.send_and_save()`` (SendAndSaveCopy) in exactly one POST.

    exchangelib answers a version-like refusal (ErrorInvalidRequest, ErrorInvalidServerVersion
    and two more) by posting the same request again with each other API version it knows: up
    to ten CreateItems for one message, none of which the retry policy or the log would see.
    Here the configured version is the only one tried, and its refusal is raised as the
    server gave it, so the server's own words reach the person.
    """
    from exchangelib import errors as ews
    from exchangelib.items import SEND_AND_SAVE_COPY, SEND_TO_NONE
    from exchangelib.services import CreateItem

    version_refusals = (
        ews.ErrorInvalidServerVersion,
        ews.ErrorIncorrectSchemaVersion,
        ews.ErrorInvalidRequest,
        ews.ErrorInvalidSchemaVersionForMailboxVersion,
    )

    class CreateItemOnce(CreateItem):  # type: ignore[misc]
        def _api_versions_to_try(self) -> tuple[str, ...]:
            return (self._version_hint.api_version,)

        def _get_soap_messages(self, body: Any) -> Any:
            try:
                return super()._get_soap_messages(body=body)
            except version_refusals as exc:
                # Not the error exchangelib would take as "try the next version".
                raise _RefusedOnce(exc) from exc

    try:
        return CreateItemOnce(account=item.account).get(
            items=[item],
            folder=item.folder,
            message_disposition=SEND_AND_SAVE_COPY,
            send_meeting_invitations=SEND_TO_NONE,
        )
    except _RefusedOnce as wrapped:
        raise wrapped.error from None


class _RefusedOnce(Exception):
    """Carries a version-like refusal past exchangelib's loop over API versions."""

    def __init__(self, error: Exception) -> None:
        super().__init__(type(error).__name__)
        self.error = error


class EwsGateway:
    """Sends as one mailbox through EWS; finds sent messages by Message-ID."""

    name = "ews"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._account: Any = None
        #: exchangelib's retry policy for this gateway: FailFast, keeping HTTP answers.
        self._policy: Any = None
        #: The refusal of our credentials, once there was one (see :meth:`_call`).
        self._refused: PermanentGatewayError | None = None

    def _call(self, step: str, action: Callable[[], T], *, sending: bool = False) -> T:
        """Run one exchangelib call, its errors translated into gateway errors.

        Once Exchange (or the identity platform) has refused the credentials, every later
        call fails with the same error without contacting anything: a service account is
        locked after a handful of failed logins, and no retry can fix a refused password.
        """
        if self._refused is not None:
            refused = self._refused
            raise PermanentGatewayError(
                str(refused), server_message=refused.server_message, failure=refused.failure
            )
        answers = self._answers()
        if answers is not None:
            answers.forget()
        try:
            return action()
        except GatewayError:
            raise
        except Exception as exc:
            error = self._translator().translate(exc, step, sending=sending)
            if isinstance(error, PermanentGatewayError) and error.failure is Failure.AUTHENTICATION:
                self._refused = error
            raise error from exc

    def _translator(self) -> _Translator:
        endpoint = self.settings.endpoint
        if endpoint is None and self._account is not None:
            endpoint = str(self._account.protocol.service_endpoint)
        policy = self._answers()
        return _Translator(
            settings=self.settings,
            endpoint=endpoint or "the autodiscovered endpoint",
            last=policy.last if policy is not None else None,
            refused=policy.refused if policy is not None else None,
        )

    def _answers(self) -> Any:
        """The policy keeping HTTP answers that this gateway's protocol uses now.

        exchangelib shares one protocol per endpoint and credentials, so a later gateway
        for the same account may have put its own policy there.
        """
        if self._account is not None:
            policy = self._account.protocol.retry_policy
            if isinstance(policy, _policy_class()):
                return policy
        return self._policy

    def call_with_account(self, step: str, action: Callable[[Any], T]) -> T:
        """Run ``action(account)`` on this gateway's connection, errors translated as a send's.

        For readers of the same mailbox (the replies source): one way to reach EWS, one
        translation of its errors, the same one-login-per-run rule.
        """
        account = self._connect()
        return self._call(step, lambda: action(account))

    def _connect(self) -> Any:
        if self._account is None:
            self._account = self._call("connecting", self._make_account)
        return self._account

    def _make_account(self) -> Any:
        from exchangelib import (
            DELEGATE,
            IMPERSONATION,
            Account,
            Build,
            Configuration,
            Credentials,
            Identity,
            OAuth2Credentials,
            Version,
        )
        from exchangelib.transport import BASIC, NTLM, OAUTH2

        s = self.settings
        # FailFast: exchangelib must never re-POST a CreateItem by itself.
        self._policy = policy = _policy_class()()
        credentials: Any
        if s.auth == "oauth":
            credentials = OAuth2Credentials(
                client_id=s.client_id,
                client_secret=s.client_secret,
                tenant_id=s.tenant_id,
                identity=Identity(primary_smtp_address=s.mailbox),
            )
            auth_type, access_type = OAUTH2, IMPERSONATION
        else:
            credentials = Credentials(s.username, s.password)
            auth_type, access_type = (BASIC if s.auth == "basic" else NTLM), DELEGATE
        if s.autodiscover:
            account = Account(
                primary_smtp_address=s.mailbox,
                credentials=credentials,
                autodiscover=True,
                access_type=access_type,
                config=Configuration(
                    credentials=credentials,
                    auth_type=auth_type,
                    retry_policy=policy,
                    max_connections=1,
                ),
            )
        else:
            config = Configuration(
                credentials=credentials,
                service_endpoint=s.endpoint,
                auth_type=auth_type,
                version=Version(build=Build(*s.version)),
                retry_policy=policy,
                max_connections=1,
            )
            account = Account(
                primary_smtp_address=s.mailbox,
                config=config,
                autodiscover=False,
                access_type=access_type,
            )
        # exchangelib shares one protocol per endpoint and credentials, keeping the policy of
        # whoever made it first: make sure it is ours (fail fast, answers kept).
        account.protocol.config.retry_policy = policy
        # Per-instance timeout; exchangelib's default (120 s) is a class attribute.
        account.protocol.TIMEOUT = s.timeout
        return account

    def send(self, message: OutgoingMessage) -> Receipt:
        """One CreateItem (SendAndSaveCopy) carrying the form's exact bytes."""
        account = self._connect()
        # Resolving Sent Items (two GetFolder calls) happens before anything is sent.
        sent_folder = self._call("opening Sent Items", lambda: account.sent)
        item = _build(account, sent_folder, message)
        self._call("sending the message", lambda: _send_and_save_once(item), sending=True)
        return Receipt(
            gateway=self.name,
            message_id=message.message_id,
            gateway_id=None,  # SendAndSaveCopy returns no item id; find_sent gives one
            detail=f"sent and saved by {self.settings.mailbox}",
        )

    def find_sent(self, message_id: str) -> Receipt | None:
        """Look the Message-ID up in Sent Items."""
        account = self._connect()

        def search() -> list[Any]:
            query = account.sent.filter(message_id=message_id).only("id", "datetime_sent")
            return list(query[:1])

        found = self._call("searching Sent Items", search)
        if not found:
            return None
        item = found[0]
        return Receipt(
            gateway=self.name,
            message_id=message_id,
            gateway_id=getattr(item, "id", None),
            detail=f"found in Sent Items of {self.settings.mailbox}, sent "
            f"{getattr(item, 'datetime_sent', None) or 'at an unknown time'}",
        )

    def check(self) -> str:
        """Authenticate and open the mailbox's Sent Items; sends nothing."""
        account = self._connect()
        folder = self._call("opening Sent Items", lambda: account.sent)
        where = self.settings.endpoint or "the autodiscovered endpoint"
        total = getattr(folder, "total_count", None)
        count = f" ({total} messages in Sent Items)" if total is not None else ""
        return f"ews: {where} accepted {self.settings.who} for {self.settings.mailbox}{count}"

    def close(self) -> None:
        if self._account is not None:
            self._account.protocol.close()
            self._account = None
