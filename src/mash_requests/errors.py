"""The one exception tree of mash-requests.

::

    MashRequestsError                 every error this library raises on purpose
    ├── ConfigError                   the configuration is wrong: fix it, then run again
    ├── InputError                    something a person supplied is wrong (exit code 2)
    │   ├── CaseFileError             a case file is missing, malformed or invalid
    │   ├── TemplateError             a template is missing, broken or needs a variable
    │   ├── RecipientError            an address is not in the partner directory/allow-list
    │   ├── FormRefusedError          the referral form PDF was refused (carries the verdict)
    │   └── DuplicateRequestError     this request was already sent, or is being sent
    └── OperationalError              something failed while doing the work
        ├── GatewayError              the mail gateway did not take the message
        │   ├── TransientGatewayError     certainly not accepted; safe to try again
        │   ├── AmbiguousGatewayError     may have been accepted; look before resending
        │   └── PermanentGatewayError     refused; trying again will not help
        └── LogError                  the dispatch log cannot be read or written
            └── SendLogError          ... while a case was being sent: says what went out

Every ``GatewayError`` also says *what* failed (:class:`Failure`): the connection, TLS, the
credentials, a recipient, the message, or the server. ``str(error)`` is the whole sentence a
person acts on: what failed, then the server's (or the TLS library's) own words, then the
fix where there is one, e.g. "the certificate of SMTP server smtp.council.example:587 is not
trusted: unable to get local issuer certificate; set ca_file to the CA that signed it".
``server_message`` holds those words alone. :meth:`GatewayError.explained` builds both
from their parts; the retry policy passes the sentence on unchanged as the reason a request
failed, so the outcome, the dispatch log and ``gateway check`` say the same. An
``authentication`` failure is always permanent, and ends a run's use of the gateway: no
later request of the run is handed to it (one failed login per run, so a service account
is never locked out by retries).

``ConfigError`` is deliberately *not* an ``OperationalError``: a batch that skips failed sends
catches ``OperationalError`` and must never swallow a misconfiguration.

Messages never contain message bodies, child details, passwords or tokens: they name the
file, field, partner or request reference that is wrong, and say what to do. They never name
a command-line option: the CLI adds its own advice from the fields below.

Fields a script can act on without reading the words:

- every ``InputError``: ``reason`` (a code: ``invalid_case``, ``template_error``,
  ``recipient_refused``, ``unknown_partner``, ``no_partners``, ``no_directory``,
  ``no_form``, ``form_unreadable``, ``duplicate``, ``in_flight_elsewhere``,
  ``batch_invalid``, ``batch_unreadable``, ``encoding`` …; for a refused form, the
  verdict's reason such as ``wrong_case``), ``field`` (the case, config or batch field at
  fault, or None) and ``partners`` (the partner keys concerned; empty when the whole case
  is);
- ``DuplicateRequestError``: ``case_ref``, ``states`` (partner → ``sent``,
  ``unconfirmed`` or ``in_flight``), ``earlier`` (partner → the request reference the log
  holds) and ``others`` (partners asked that are not held, which may be asked alone);
- ``SendLogError``: ``case_ref``, ``handed_over`` (what reached the gateway before the log
  failed, each with partner, request reference, Message-ID and whether the log recorded
  its outcome) and ``not_sent`` (partner, request reference).

Third-party errors (smtplib, exchangelib, requests, pypdf, sqlite3, psycopg) are translated
into these classes at the module boundary that calls the library, raised ``from`` the original.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Generic, NamedTuple, Protocol, Self, TypeVar


class MashRequestsError(Exception):
    """Base class of every error raised on purpose by mash-requests."""


class ConfigError(MashRequestsError):
    """The configuration (TOML file, environment, secrets) is invalid or incomplete."""


class InputError(MashRequestsError):
    """Something a person or script supplied is invalid; nothing was sent.

    ``reason`` is a short code, ``field`` the field at fault (or None), ``partners`` the
    partner keys concerned (empty: the whole case). See the module docstring.
    """

    #: The ``reason`` when none is given.
    default_reason = "invalid_input"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        field: str | None = None,
        partners: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.reason = reason or type(self).default_reason
        self.field = field
        self.partners = tuple(partners)


class CaseFileError(InputError):
    """A case file is missing, not JSON, or fails validation."""

    default_reason = "invalid_case"


class TemplateError(InputError):
    """A template is missing, has a syntax error, or uses an undefined variable."""

    default_reason = "template_error"


class RecipientError(InputError):
    """An address or partner is not in the partner directory or its domain allow-list."""

    default_reason = "recipient_refused"


class RefusedForm(Protocol):
    """What a refused form's verdict tells (``mash_requests.referral_form.Verdict`` is one).

    A protocol, so that this module, the ground floor of the package, imports nothing of ours.
    """

    @property
    def reason(self) -> str: ...
    @property
    def detail(self) -> str: ...
    @property
    def sha256(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def pages(self) -> int | None: ...


_V = TypeVar("_V", bound=RefusedForm)


class FormRefusedError(InputError, Generic[_V]):
    """The referral form was refused by the check; ``verdict`` says why.

    ``verdict`` is the check's :class:`~mash_requests.referral_form.Verdict` (its
    ``reason``, ``detail`` and fingerprint).
    """

    def __init__(self, message: str, verdict: _V) -> None:
        super().__init__(message)
        self.verdict = verdict


class DuplicateRequestError(InputError):
    """A request with the same key was already sent, or another run is sending it.

    Nothing of the case was sent. ``states`` maps each partner held to ``sent``,
    ``unconfirmed`` (may have been delivered: check before sending again) or ``in_flight``
    (another run is sending it now); ``earlier`` maps it to the request reference the log
    holds; ``others`` lists the partners asked that are not held. ``reason`` is
    ``in_flight_elsewhere`` when any partner is in flight, else ``duplicate``.
    """

    default_reason = "duplicate"

    def __init__(
        self,
        message: str,
        *,
        case_ref: str | None = None,
        states: Mapping[str, str] | None = None,
        earlier: Mapping[str, str | None] | None = None,
        others: Sequence[str] = (),
    ) -> None:
        states = dict(states or {})
        super().__init__(
            message,
            reason="in_flight_elsewhere" if "in_flight" in states.values() else "duplicate",
            partners=list(states),
        )
        self.case_ref = case_ref
        self.states = states
        self.earlier = dict(earlier or {})
        self.others = tuple(others)


class OperationalError(MashRequestsError):
    """Something failed while doing the work (gateway, log)."""


class Failure(StrEnum):
    """What failed when a gateway did not take a message; decides the words a person reads."""

    #: The server could not be reached (refused, reset, timed out, name not found).
    CONNECTION = "connection"
    #: TLS could not be set up: certificate not trusted, wrong host name, protocol too old.
    TLS = "tls"
    #: The server refused the credentials (or the token request was refused).
    AUTHENTICATION = "authentication"
    #: The server refused a recipient address.
    RECIPIENT = "recipient"
    #: The server refused the message itself (too large, policy, content).
    MESSAGE = "message"
    #: The server failed, was busy or throttled, or answered something unexpected.
    SERVER = "server"


class GatewayError(OperationalError):
    """The mail gateway did not take the message.

    ``str(error)`` is the sentence for a person: what failed, the server's words, the fix.
    ``server_message`` holds the server's own words alone (never credentials or message
    content); ``retry_after`` is the server's hint in seconds, where it gave one;
    ``failure`` says what failed (see :class:`Failure`).
    """

    #: One word for the log: "transient", "ambiguous" or "permanent".
    error_class = "gateway"

    def __init__(
        self,
        message: str,
        *,
        server_message: str = "",
        retry_after: float | None = None,
        failure: Failure = Failure.SERVER,
    ) -> None:
        super().__init__(message)
        self.server_message = server_message
        self.retry_after = retry_after
        self.failure = failure

    @classmethod
    def explained(
        cls,
        failure: Failure,
        what: str,
        words: str = "",
        *,
        fix: str = "",
        retry_after: float | None = None,
    ) -> Self:
        """The error whose message reads ``<what>: <words>; <fix>``.

        ``what`` says what failed, naming the server ("could not connect to SMTP server
        smtp.council.example:587"); ``words`` are the server's or TLS library's own (kept
        alone in ``server_message``, white space collapsed); ``fix`` is what a person does
        about it, where there is something to do. Never pass credentials or message content.
        """
        words = " ".join(words.split())
        message = what
        if words:
            message += f": {words.rstrip('.')}"
        if fix:
            message += f"; {fix}"
        return cls(message, server_message=words, retry_after=retry_after, failure=failure)


class TransientGatewayError(GatewayError):
    """The message was certainly not accepted and trying again may work (timeouts, 429, 5xx)."""

    error_class = "transient"


class AmbiguousGatewayError(GatewayError):
    """The message may have been accepted (answer lost after the server had it).

    Never resend blindly: look the Message-ID up in Sent Items first, or record the request
    as unconfirmed for a person to check.
    """

    error_class = "ambiguous"


class PermanentGatewayError(GatewayError):
    """The gateway refused the message or the credentials; trying again will not help."""

    error_class = "permanent"


class LogError(OperationalError):
    """The dispatch log cannot be opened, read or written."""


class HandedOver(NamedTuple):
    """A request that reached the gateway before the log failed (see SendLogError)."""

    partner: str
    request_ref: str
    message_id: str
    #: The outcome the log recorded ("sent", "failed", "unconfirmed"), or None: not recorded,
    #: so it may have been delivered though the log does not say so.
    recorded: str | None


class SendLogError(LogError):
    """The dispatch log failed while a case was being sent.

    ``handed_over`` lists what reached the gateway before the failure, ``not_sent`` the
    (partner, request reference) pairs that were never handed to it.
    """

    def __init__(
        self,
        message: str,
        *,
        case_ref: str,
        handed_over: Sequence[HandedOver] = (),
        not_sent: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.case_ref = case_ref
        self.handed_over = tuple(handed_over)
        self.not_sent = tuple(not_sent)
