"""Exchange Web Services (exchangelib): on-premises Exchange, and Exchange Online until 2027.

A send is one ``CreateItem`` with ``SendAndSaveCopy``: the message, our own Message-ID
(``InternetMessageId``), ``ReplyTo`` (where partners' replies go), the ``X-MASH-Request-Ref``
header (an InternetHeaders extended property) and the form as a ``FileAttachment`` whose
``Content`` is the form's exact bytes.
A copy goes to Sent Items, where :meth:`EwsGateway.find_sent` looks the Message-ID up.

exchangelib runs with its FailFast policy: it must never re-POST by itself, because a
re-POST after a lost answer sends a second copy. Its errors are classed here:

- ``ErrorServerBusy`` with ``BackOffMilliseconds``, HTTP 429, HTTP 503/408 to any request
  but the sending one, and failures before the request left (connection refused, connect
  timeout): transient, with the server's hint;
- a timeout, reset or HTTP 5xx (503 included: a front end can answer it after the mailbox
  server sent the message) *after* the CreateItem was sent: ambiguous (Exchange may have
  sent it; the retry policy looks in Sent Items);
- 401 and other refused credentials, an untrusted certificate, and the server's refusals
  (``ErrorInvalidRecipients``, ``ErrorSendAsDenied``, ``ErrorMessageSizeExceeded`` …):
  permanent, with the server's own words;
- a message exchangelib cannot build (e.g. a subject over 255 characters): permanent,
  naming the field but never its value;
- anything else (a bug, an error exchangelib does not class): ambiguous while sending,
  permanent before; only the exception's type is kept, as its text may quote the message.

Exchange 2010 and older are refused at configuration: they need a save/attach/send
sequence that can leave a half-sent draft.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar
from urllib.parse import urlsplit

from mash_requests.errors import (
    AmbiguousGatewayError,
    GatewayError,
    PermanentGatewayError,
    TransientGatewayError,
)
from mash_requests.gateways.base import OutgoingMessage, Receipt

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
            tenant_id = table.required_string("tenant_id")
            client_id = table.required_string("client_id")
            client_secret = table.secret("client_secret")
        else:
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


# -- error translation --------------------------------------------------------------------


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and what it was raised from or during (exchangelib re-raises a lot)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _words(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300]


def _translate(exc: Exception, step: str, *, sending: bool) -> GatewayError:
    """One exchangelib / requests / oauthlib error as a gateway error (see the module doc)."""
    import requests
    from exchangelib import errors as ews
    from urllib3.exceptions import NewConnectionError

    chain = list(_chain(exc))

    for link in chain:
        if type(link).__module__.startswith("oauthlib.oauth2"):
            # oauthlib's OAuth2Error (invalid_client …), raised while fetching the token.
            error = str(getattr(link, "error", "") or "oauth_error")
            description = str(getattr(link, "description", "") or "")
            first_line = description.splitlines()[0] if description else ""
            words = f"{error}: {first_line}".strip(": ")
            return PermanentGatewayError(
                f"no OAuth token for EWS {step}: {words}; check tenant_id, client_id and the "
                "client secret",
                server_message=words,
            )
        if isinstance(link, requests.exceptions.SSLError):
            return PermanentGatewayError(
                f"TLS with the EWS endpoint failed while {step}: the certificate is not trusted "
                "or TLS could not be agreed; set REQUESTS_CA_BUNDLE to the CA that signed it, or "
                "have the server's certificate fixed",
                server_message=_words(link),
            )

    network = next(
        (
            link
            for link in chain
            if isinstance(link, requests.RequestException | ConnectionResetError | TimeoutError)
        ),
        None,
    )
    if network is not None:
        reason = getattr(network.args[0], "reason", None) if network.args else None
        never_sent = isinstance(network, requests.ConnectTimeout) or isinstance(
            reason, NewConnectionError
        )
        problem = (
            "timed out"
            if isinstance(network, requests.Timeout | TimeoutError)
            else type(network).__name__
        )
        if sending and not never_sent:
            return AmbiguousGatewayError(
                f"EWS gave no answer while {step} ({problem}); Exchange may have sent the "
                "message: look in Sent Items before resending",
                server_message=problem,
            )
        return TransientGatewayError(
            f"EWS could not be reached while {step} ({problem})", server_message=problem
        )

    if isinstance(exc, ews.UnauthorizedError):
        return PermanentGatewayError(
            f"EWS refused the credentials while {step}; check username and password (or "
            "the app's permissions and impersonation rights)",
            server_message="401 Unauthorized",
        )
    if isinstance(exc, ews.CASError):
        return PermanentGatewayError(
            f"Exchange refused the request while {step}: {exc.cas_error}",
            server_message=str(exc.cas_error),
        )
    if isinstance(exc, ews.RedirectError):
        return PermanentGatewayError(
            f"the EWS endpoint redirects to {exc.url}; set endpoint to the right URL",
            server_message=f"redirect to {exc.url}",
        )
    if isinstance(exc, ews.ErrorServerBusy):
        cause = chain[1] if len(chain) > 1 else None
        from_server = cause is None or not isinstance(cause, ews.EWSError)
        if from_server and not str(exc).startswith("Caused by"):
            # A real SOAP fault; BackOffMilliseconds (if any) arrives as back_off seconds.
            hint = float(exc.back_off) if exc.back_off else None
            return TransientGatewayError(
                f"Exchange is busy ({step}): {_words(exc)}",
                server_message=f"ErrorServerBusy: {_words(exc)}",
                retry_after=hint,
            )
        # exchangelib's own re-raise of a 503, a closed connection, or a server error page.
        exc = cause if isinstance(cause, Exception) else exc
        unavailable = "HTTP 503" in str(exc)
        if isinstance(exc, ews.ErrorTooManyObjectsOpened) or (unavailable and not sending):
            return TransientGatewayError(
                f"Exchange is unavailable ({step}): {_words(exc)}", server_message=_words(exc)
            )
        if sending:
            return AmbiguousGatewayError(
                f"Exchange failed while {step} ({_words(exc)}); it may have sent the message: "
                "look in Sent Items before resending",
                server_message=_words(exc),
            )
        return TransientGatewayError(
            f"Exchange failed while {step}: {_words(exc)}", server_message=_words(exc)
        )
    if isinstance(exc, ews.MalformedResponseError):
        # "Unknown failure in response. Code: 504 headers: … content: …": keep the code only.
        match = re.search(r"Code: (\d{3})", str(exc))
        status = int(match.group(1)) if match else 0
        words = f"HTTP {status}" if status else "an answer that is not EWS"
        # As for Graph: a front end can answer 503/408 after the mailbox server has sent the
        # message, so on the sending request they are ambiguous. 429 comes before the mailbox.
        if status == 429 or (status in (408, 503) and not sending):
            return TransientGatewayError(f"Exchange deferred {step}: {words}", server_message=words)
        if status >= 500 or not status:
            if sending:
                return AmbiguousGatewayError(
                    f"Exchange answered {words} while {step}; it may have sent the message: "
                    "look in Sent Items before resending",
                    server_message=words,
                )
            return TransientGatewayError(
                f"Exchange answered {words} while {step}", server_message=words
            )
        return PermanentGatewayError(f"Exchange refused {step}: {words}", server_message=words)
    if isinstance(exc, ews.ResponseMessageError):
        code = type(exc).__name__
        words = f"{code}: {_words(exc)}"
        if code in TRANSIENT_CODES:
            return TransientGatewayError(
                f"Exchange could not do it now ({step}): {words}", server_message=words
            )
        return PermanentGatewayError(f"Exchange refused {step}: {words}", server_message=words)
    if isinstance(exc, ews.TransportError | ews.EWSError):
        # SOAP faults and other failures with an answer we could not use.
        words = f"{type(exc).__name__}: {_words(exc)}"
        if sending:
            return AmbiguousGatewayError(
                f"Exchange failed while {step} ({words}); it may have sent the message: "
                "look in Sent Items before resending",
                server_message=words,
            )
        return TransientGatewayError(f"Exchange failed while {step}: {words}", server_message=words)
    # Anything else is a bug or an error exchangelib did not class. Only its type is kept:
    # its text may quote the message (a ValueError names the field and its value).
    kind = type(exc).__name__
    if sending:
        return AmbiguousGatewayError(
            f"EWS failed unexpectedly while {step} ({kind}); Exchange may have sent the "
            "message: look in Sent Items before resending",
            server_message=kind,
        )
    return PermanentGatewayError(
        f"EWS failed unexpectedly while {step} ({kind}); nothing was sent", server_message=kind
    )


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
            reply_to=[Mailbox(email_address=message.reply_to)] if message.reply_to else None,
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


class EwsGateway:
    """Sends as one mailbox through EWS; finds sent messages by Message-ID."""

    name = "ews"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._account: Any = None

    def _call(self, step: str, action: Callable[[], T], *, sending: bool = False) -> T:
        try:
            return action()
        except GatewayError:
            raise
        except Exception as exc:
            raise _translate(exc, step, sending=sending) from exc

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
            FailFast,
            Identity,
            OAuth2Credentials,
            Version,
        )
        from exchangelib.transport import BASIC, NTLM, OAUTH2

        s = self.settings
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
                    retry_policy=FailFast(),
                    max_connections=1,
                ),
            )
        else:
            config = Configuration(
                credentials=credentials,
                service_endpoint=s.endpoint,
                auth_type=auth_type,
                version=Version(build=Build(*s.version)),
                # FailFast: exchangelib must never re-POST a CreateItem by itself.
                retry_policy=FailFast(),
                max_connections=1,
            )
            account = Account(
                primary_smtp_address=s.mailbox,
                config=config,
                autodiscover=False,
                access_type=access_type,
            )
        # Per-instance timeout; exchangelib's default (120 s) is a class attribute.
        account.protocol.TIMEOUT = s.timeout
        return account

    def send(self, message: OutgoingMessage) -> Receipt:
        """One CreateItem (SendAndSaveCopy) carrying the form's exact bytes."""
        account = self._connect()
        # Resolving Sent Items (two GetFolder calls) happens before anything is sent.
        sent_folder = self._call("opening Sent Items", lambda: account.sent)
        item = _build(account, sent_folder, message)
        self._call("sending the message", item.send_and_save, sending=True)
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
