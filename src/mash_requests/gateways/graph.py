"""Microsoft Graph (Exchange Online): the product's own MIME in one ``sendMail`` call.

**The flow.** A message is sent as the bytes every gateway sends (``as_bytes()``), base64
encoded, in one ``POST /users/{mailbox}/sendMail`` with ``Content-Type: text/plain``
(``202 Accepted``, no body). Nothing is left behind in the mailbox but the Sent Items copy.
Graph takes requests up to 4 MB, and base64 makes the MIME 4/3 larger, so forms of about
2.2 MB and more (or a ``413`` to ``sendMail``) go the long way: a draft carrying our
``internetMessageId``, the form through an upload session (up to 150 MB), then ``/send``.

**Our Message-ID.** Exchange maps a MIME message's ``Message-ID`` header to the item's
internet message id (Microsoft's MS-OXCMAIL conversion rules), which Graph shows as
``internetMessageId``; a draft is created with it set. Sent Items lookups rely on it.

**Drafts** (long way only) never outlive a send that failed: a draft is deleted when its
attempt certainly failed; drafts carrying our ``internetMessageId`` are looked for in Drafts
and deleted before every draft is created (an earlier attempt's, after an ambiguous ``/send``
that Sent Items then did not show) and when the answer to creating one was lost. Only a
draft whose ``/send`` is in doubt is left alone: deleting it could cancel a send.

**gateway_id** is always the *immutable* id (``Prefer: IdType="ImmutableId"``) of the
message in Sent Items, or None. The long way: the draft's immutable id, which it keeps
when it moves to Sent Items. ``sendMail`` answers no id: after the ``202`` Sent Items is
searched for the Message-ID for up to ``sent_item_wait`` seconds (a few requests); not
there by then (or ``sent_item_wait = 0``), the id is None. A lookup after a lost answer
gives the same kind of id.

How failures are classed:

- 429, and any 5xx, 408 or lost answer before anything could be sent: transient (Graph's
  ``Retry-After``, fractional too, is kept as the wait);
- any 5xx (503 included), 408, a timeout or a lost connection once ``sendMail`` or ``/send``
  may have reached Graph: ambiguous. The retry policy looks in Sent Items before any resend;
- 401 (the token refused) and 403 (no permission for the mailbox): permanent,
  ``Failure.AUTHENTICATION``: the run sends nothing more through Graph. Except once: a 401
  to a token Graph accepted before (it expired early, or was revoked) drops the cached
  token and makes the same request once more with a new one (a 401 is decided before
  Graph does anything, so nothing can be sent twice);
- 400, 404, 413 and other 4xx: permanent, with Graph's own error code and message;
- no token: see :mod:`mash_requests.gateways.entra`;
- anything else (a bug, an error requests does not class): ambiguous once the message may
  have left, permanent before; only the exception's type is kept.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn
from urllib.parse import quote, urlsplit

from mash_requests.errors import (
    AmbiguousGatewayError,
    Failure,
    GatewayError,
    PermanentGatewayError,
    TransientGatewayError,
)
from mash_requests.gateways.base import OutgoingMessage, Receipt

# The token source lives in entra.py; SMTP's XOAUTH2 imports it from here too.
from mash_requests.gateways.entra import (
    DEFAULT_AUTHORITY,
    ClientCredentials,
    TokenSource,
    connection_problem,
    retry_after,
    tls_reason,
)

if TYPE_CHECKING:
    from requests import Response

    from mash_requests._tables import Table

__all__ = [
    "DEFAULT_AUTHORITY",
    "DEFAULT_BASE_URL",
    "ClientCredentials",
    "GraphGateway",
    "Settings",
    "TokenSource",
]

DEFAULT_BASE_URL = "https://graph.microsoft.com/v1.0"
#: Graph's request limit is 4 MB; ``sendMail`` takes MIME whose base64 fits well inside it.
SENDMAIL_LIMIT = 4_000_000
#: On the long way, attachments below this go inline (base64 makes ~4 MB, the request limit).
INLINE_LIMIT = 3_000_000
#: Graph refuses attachments above 150 MB, even through an upload session.
UPLOAD_LIMIT = 150 * 1024 * 1024
#: Upload-session chunks must be multiples of 320 KiB and at most 4 MB.
CHUNK_SIZE = 10 * 320 * 1024
#: Ids that stay the same when a message moves from Drafts to Sent Items.
IMMUTABLE_IDS = {"Prefer": 'IdType="ImmutableId"'}
#: Default seconds to wait for a sendMail message to show in Sent Items (for its id): three
#: searches, 0.5, 1.5 and 3 s after the 202. Under the per-mailbox rate limit (30 a minute,
#: 2 s a message) this costs a run little; a busy mailbox that files later gets no id.
DEFAULT_SENT_ITEM_WAIT = 3.0
#: The first wait before searching Sent Items after a 202; each next wait is this much longer.
SENT_ITEM_STEP = 0.5


@dataclass(frozen=True)
class Settings:
    """The ``[gateway.graph]`` table, validated."""

    kind: ClassVar[str] = "graph"

    mailbox: str
    credentials: ClientCredentials
    base_url: str = DEFAULT_BASE_URL
    timeout: float = 60
    #: Seconds to look for a sendMail message in Sent Items for its id; 0: do not look.
    sent_item_wait: float = DEFAULT_SENT_ITEM_WAIT

    @classmethod
    def from_table(cls, table: Table) -> Settings:
        """Validate ``[gateway.graph]``; reads the client secret, no network."""
        mailbox = table.required_string("mailbox")
        if "@" not in mailbox:
            raise table.error("mailbox", f"expected the sending address, got {mailbox!r}")
        credentials = ClientCredentials.from_table(table)
        base_url = (table.string("base_url", DEFAULT_BASE_URL) or DEFAULT_BASE_URL).rstrip("/")
        if not base_url.startswith("https://"):
            raise table.error("base_url", f"must be an https:// URL, got {base_url!r}")
        timeout = table.number("timeout", 60, minimum=1)
        sent_item_wait = table.number("sent_item_wait", DEFAULT_SENT_ITEM_WAIT, minimum=0)
        table.reject_unknown()
        return cls(
            mailbox=mailbox,
            credentials=credentials,
            base_url=base_url,
            timeout=timeout,
            sent_item_wait=sent_item_wait,
        )

    @property
    def scope(self) -> str:
        """``https://<graph host>/.default``: the national clouds have their own hosts."""
        parts = urlsplit(self.base_url)
        return f"{parts.scheme}://{parts.netloc}/.default"

    def open(self) -> GraphGateway:
        """The gateway; the token and connections are fetched on first use."""
        return GraphGateway(self, TokenSource(self.credentials, self.scope, timeout=self.timeout))


class _AnswerLost(TransientGatewayError):
    """Transient, but the request may have reached Graph: a draft may have been made."""


def _error_words(response: Response) -> str:
    """``<status> <code>: <message>`` from Graph's error JSON (``error`` or ``Error``)."""
    words = f"{response.status_code} {response.reason or ''}".strip()
    try:
        body = response.json()
    except ValueError:
        return words
    error = body.get("error") or body.get("Error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = error.get("code") or ""
        message = error.get("message") or ""
        inner = error.get("innerError") or error.get("innererror")
        if not message and isinstance(inner, dict):
            message = inner.get("message") or ""
        detail = ": ".join(str(part) for part in (code, message) if part)
        if detail:
            words = f"{response.status_code} {detail}"
    return " ".join(words.split())[:500]


def _error_code(response: Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    error = body.get("error") or body.get("Error") if isinstance(body, dict) else None
    return str(error.get("code") or "") if isinstance(error, dict) else ""


class GraphGateway:
    """Sends as one mailbox through Microsoft Graph (see the module doc for the flow)."""

    name = "graph"

    def __init__(
        self,
        settings: Settings,
        tokens: TokenSource,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        import requests

        self.settings = settings
        self._tokens = tokens
        self._sleep = sleep
        self._session = requests.Session()
        # Set when a Sent Items search after a 202 was refused for good (e.g. no Mail.Read
        # permission): the remaining sends of the run do not ask again.
        self._no_sent_item_lookup: str | None = None
        # Whether Graph has accepted the access token in hand: a 401 then means that token
        # expired or was revoked, not that the app's credentials are wrong.
        self._token_worked = False

    @property
    def _user(self) -> str:
        return f"{self.settings.base_url}/users/{quote(self.settings.mailbox, safe='@')}"

    # -- HTTP ------------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        url: str,
        step: str,
        *,
        sending: bool = False,
        authorized: bool = True,
        accept: tuple[int, ...] = (),
        **kwargs: Any,
    ) -> Response:
        """One HTTP request; any failure becomes a gateway error saying which step failed.

        ``sending`` marks ``sendMail`` and ``/send``: once such a request may have reached
        Graph, a lost answer or a server error means the message may have gone (ambiguous).
        A status in ``accept`` is returned for the caller to handle instead of raised.
        """
        import requests
        from urllib3.exceptions import NewConnectionError

        headers = dict(kwargs.pop("headers", {}))
        if authorized:
            headers["Authorization"] = f"Bearer {self._tokens.token()}"
            headers.update(IMMUTABLE_IDS)
        host = urlsplit(url).hostname or url
        try:
            response = self._session.request(
                method, url, headers=headers, timeout=self.settings.timeout, **kwargs
            )
        except requests.RequestException as exc:
            reason = tls_reason(exc) if isinstance(exc, requests.exceptions.SSLError) else None
            if reason is not None:
                # The handshake failed: nothing was sent, and waiting will not change it.
                raise PermanentGatewayError(
                    f"the TLS certificate of {host} is not trusted ({reason}); if a proxy "
                    "inspects TLS, set REQUESTS_CA_BUNDLE to its CA",
                    server_message=reason,
                    failure=Failure.TLS,
                ) from exc
            never_sent = isinstance(exc, requests.ConnectTimeout) or (
                isinstance(exc, requests.ConnectionError)
                and isinstance(
                    getattr(exc.args[0] if exc.args else None, "reason", None), NewConnectionError
                )
            )
            problem = connection_problem(exc)
            if never_sent:
                raise TransientGatewayError(
                    f"cannot reach Graph at {host} for {step} ({problem}); check base_url, "
                    "and that this machine can reach it (set HTTPS_PROXY where a proxy is "
                    "needed)",
                    server_message=problem,
                    failure=Failure.CONNECTION,
                ) from exc
            if sending:
                raise AmbiguousGatewayError(
                    f"Graph at {host} gave no answer to {step} ({problem}): the message may "
                    "have been sent; it is looked up in Sent Items before any resend",
                    server_message=problem,
                    failure=Failure.CONNECTION,
                ) from exc
            raise _AnswerLost(
                f"Graph at {host} gave no answer to {step} ({problem})",
                server_message=problem,
                failure=Failure.CONNECTION,
            ) from exc
        except Exception as exc:
            # A bug or an error requests does not class; its text is not kept (it may
            # quote the request).
            kind = type(exc).__name__
            if sending:
                raise AmbiguousGatewayError(
                    f"Graph failed unexpectedly on {step} ({kind}): the message may have been "
                    "sent; it is looked up in Sent Items before any resend",
                    server_message=kind,
                ) from exc
            raise PermanentGatewayError(
                f"Graph failed unexpectedly on {step} ({kind}); nothing was sent",
                server_message=kind,
            ) from exc
        if response.status_code == 401 and authorized and self._token_worked:
            # The token Graph took before is refused now: Graph did nothing with the request
            # (it checks the token first), so ask for a new token and make it once more. A
            # second refusal is the app's credentials, and permanent as on the first request.
            self._token_worked = False
            self._tokens.forget()
            return self._request(
                method, url, step, sending=sending, accept=accept, headers=headers, **kwargs
            )
        if response.status_code >= 400 and response.status_code not in accept:
            raise self._failure(step, response, sending=sending)
        if authorized and response.status_code < 400:
            self._token_worked = True
        return response

    def _failure(self, step: str, response: Response, *, sending: bool) -> GatewayError:
        status = response.status_code
        words = _error_words(response)
        hint = retry_after(response.headers.get("Retry-After"))
        s = self.settings
        if status == 429:
            # Throttling is decided before the request reaches the mailbox: nothing was done.
            return TransientGatewayError(
                f"Graph is throttling mailbox {s.mailbox} and deferred {step} ({words})",
                server_message=words,
                retry_after=hint,
            )
        if status >= 500 or status == 408:
            if sending:
                return AmbiguousGatewayError(
                    f"Graph answered {step} with {words}: the message may have been sent; it "
                    "is looked up in Sent Items before any resend",
                    server_message=words,
                    retry_after=hint,
                )
            # Nothing was sent, but the step may have been done (a draft made) before a
            # front end gave up waiting.
            return _AnswerLost(
                f"Graph could not complete {step} ({words})",
                server_message=words,
                retry_after=hint,
            )
        if status == 401:
            return PermanentGatewayError(
                f"Graph refused the access token of app {s.credentials.client_id} for "
                f"{step} ({words}); check tenant_id, client_id and the client secret, and "
                "that the app registration is in the mailbox's tenant",
                server_message=words,
                failure=Failure.AUTHENTICATION,
            )
        if status == 403:
            return PermanentGatewayError(
                f"Graph denied app {s.credentials.client_id} access to mailbox {s.mailbox} "
                f"for {step} ({words}); grant the app the Mail.Send and Mail.ReadWrite "
                "application permissions with admin consent (and, where an application "
                "access policy applies, this mailbox)",
                server_message=words,
                failure=Failure.AUTHENTICATION,
            )
        if status == 404 and _error_code(response) == "ErrorItemNotFound":
            return PermanentGatewayError(
                f"Graph found no such message for {step} ({words}); it was deleted meanwhile",
                server_message=words,
            )
        if status == 404:
            return PermanentGatewayError(
                f"Graph found no mailbox {s.mailbox} for {step} ({words}); check mailbox: "
                "it must be an Exchange Online mailbox in the app's tenant",
                server_message=words,
            )
        when = "" if sending else f" when {step}"
        if status == 413:
            return PermanentGatewayError(
                f"Graph refused the message as too large{when} ({words}); ask the mailbox's "
                "administrators for its message size limit, or attach a smaller form",
                server_message=words,
                failure=Failure.MESSAGE,
            )
        if status == 400:
            code = _error_code(response)
            failure = Failure.RECIPIENT if "Recipient" in code else Failure.MESSAGE
            advice = (
                "check the partner's addresses in the partner directory"
                if failure is Failure.RECIPIENT
                else "Graph's words say why; check the partner's addresses and the form's "
                "size, or ask the mailbox's administrators"
            )
            return PermanentGatewayError(
                f"Graph refused the message{when} ({words}); {advice}",
                server_message=words,
                failure=failure,
            )
        return PermanentGatewayError(
            f"Graph refused {step} ({words})", server_message=words, failure=Failure.SERVER
        )

    # -- sending ---------------------------------------------------------------------------

    def send(self, message: OutgoingMessage) -> Receipt:
        """Hand the message to Graph once (sendMail, else the long way); classified failures."""
        form = message.attachment
        if len(form.data) > UPLOAD_LIMIT:
            raise PermanentGatewayError(
                f"Graph refused the message before sending: the form is {len(form.data)} "
                f"bytes and Graph takes attachments up to {UPLOAD_LIMIT} bytes",
                server_message="attachment too large",
                failure=Failure.MESSAGE,
            )
        # The MIME carries the form in base64 (4/3) and is base64 encoded again: a form
        # above 9/16 of the limit cannot fit, and is not encoded twice to find that out.
        fits = len(form.data) * 16 <= SENDMAIL_LIMIT * 9
        mime = base64.b64encode(message.as_bytes()) if fits else b""
        if fits and len(mime) <= SENDMAIL_LIMIT:
            response = self._request(
                "POST",
                f"{self._user}/sendMail",
                "sending the message",
                sending=True,
                accept=(413,),
                data=mime,
                headers={"Content-Type": "text/plain"},
            )
            if response.status_code != 413:
                return self._receipt_after_send_mail(message)
            # Too large as Graph measures it: refused before anything was sent.
        return self._send_by_draft(message)

    def _receipt_after_send_mail(self, message: OutgoingMessage) -> Receipt:
        """The 202 gives no id: look for the sent item, a bounded number of times."""
        accepted = f"202 Accepted for {self.settings.mailbox}"
        found, why = self._sent_item_soon(message.message_id)
        if found is not None:
            return Receipt(
                gateway=self.name,
                message_id=message.message_id,
                gateway_id=found.gateway_id,
                detail=f"{accepted}; {found.detail}",
            )
        return Receipt(
            gateway=self.name,
            message_id=message.message_id,
            gateway_id=None,
            detail=f"{accepted}; {why}, so no item id is recorded",
        )

    def _sent_item_soon(self, message_id: str) -> tuple[Receipt | None, str]:
        """Sent Items searched after waits of 0.5, 1, 1.5 … s until ``sent_item_wait`` is spent."""
        budget = self.settings.sent_item_wait
        if self._no_sent_item_lookup is not None:
            return None, self._no_sent_item_lookup
        if budget <= 0:
            return None, "sent_item_wait = 0: Sent Items is not searched"
        waited, step = 0.0, SENT_ITEM_STEP
        while waited < budget:
            pause = min(step, budget - waited)
            self._sleep(pause)
            waited += pause
            step += SENT_ITEM_STEP
            try:
                found = self.find_sent(message_id)
            except PermanentGatewayError as exc:
                self._no_sent_item_lookup = f"Sent Items cannot be searched ({exc.server_message})"
                return None, self._no_sent_item_lookup
            except GatewayError as exc:
                return None, f"Sent Items could not be searched ({exc.server_message})"
            if found is not None:
                return found, f"found in Sent Items after {waited:g} s"
        return None, f"not in Sent Items within {budget:g} s"

    def _send_by_draft(self, message: OutgoingMessage) -> Receipt:
        """Draft, attach (inline or upload session), /send; no draft outlives a failure."""
        self._delete_drafts_of(message.message_id)
        try:
            response = self._request(
                "POST", f"{self._user}/messages", "creating the draft", json=_draft(message)
            )
            draft_id = str(_json(response, "creating the draft").get("id") or "")
            if not draft_id:
                raise _AnswerLost(
                    "Graph created a draft but gave no id for it",
                    server_message=f"{response.status_code} without an id",
                )
        except _AnswerLost as exc:
            # Graph may have made the draft: find it by our Message-ID and delete it.
            self._reraise(exc, self._delete_drafts_quietly(message.message_id))
        draft_url = f"{self._user}/messages/{quote(draft_id, safe='')}"
        try:
            self._attach(draft_url, message)
            self._request("POST", f"{draft_url}/send", "sending the draft", sending=True)
        except (TransientGatewayError, PermanentGatewayError) as exc:
            # Certainly not sent: the draft (the child's details in it) must not stay.
            self._reraise(exc, self._delete_quietly(draft_url))
        return Receipt(
            gateway=self.name,
            message_id=message.message_id,
            gateway_id=draft_id,
            detail=f"202 Accepted for {self.settings.mailbox}; sent from a draft whose "
            "immutable id is the Sent Items copy's",
        )

    def _attach(self, draft_url: str, message: OutgoingMessage) -> None:
        form = message.attachment
        if len(form.data) < INLINE_LIMIT:
            self._request(
                "POST",
                f"{draft_url}/attachments",
                "attaching the form",
                json={
                    "@odata.type": "#microsoft.graph.fileAttachment",
                    "name": form.filename,
                    "contentType": form.content_type,
                    "contentBytes": base64.b64encode(form.data).decode("ascii"),
                },
            )
            return
        response = self._request(
            "POST",
            f"{draft_url}/attachments/createUploadSession",
            "opening an upload session for the form",
            json={
                "AttachmentItem": {
                    "attachmentType": "file",
                    "name": form.filename,
                    "size": len(form.data),
                    "contentType": form.content_type,
                }
            },
        )
        upload_url = str(_json(response, "opening an upload session").get("uploadUrl") or "")
        if not upload_url.startswith("https://"):
            raise TransientGatewayError(
                "Graph opened an upload session without an https uploadUrl",
                server_message="no https uploadUrl",
            )
        total = len(form.data)
        for start in range(0, total, CHUNK_SIZE):
            chunk = form.data[start : start + CHUNK_SIZE]
            end = start + len(chunk) - 1
            # The upload URL carries its own token: an Authorization header is refused.
            self._request(
                "PUT",
                upload_url,
                f"uploading bytes {start}-{end} of the form",
                authorized=False,
                data=chunk,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"bytes {start}-{end}/{total}",
                },
            )

    # -- drafts ----------------------------------------------------------------------------

    def _drafts_of(self, message_id: str) -> list[str]:
        """Immutable ids of the drafts carrying this Message-ID."""
        response = self._request(
            "GET",
            f"{self._user}/mailFolders('Drafts')/messages",
            "searching Drafts",
            params={"$filter": _message_id_filter(message_id), "$select": "id"},
        )
        found = _json(response, "searching Drafts").get("value") or []
        return [str(item["id"]) for item in found if isinstance(item, dict) and item.get("id")]

    def _delete(self, draft_url: str) -> None:
        # 404: already gone (sent, or deleted by an earlier try).
        self._request("DELETE", draft_url, "deleting the unsent draft", accept=(404,))

    def _delete_drafts_of(self, message_id: str) -> None:
        """Delete earlier attempts' drafts of this message; fails like any step (transient)."""
        for draft_id in self._drafts_of(message_id):
            self._delete(f"{self._user}/messages/{quote(draft_id, safe='')}")

    def _delete_drafts_quietly(self, message_id: str) -> str | None:
        try:
            self._delete_drafts_of(message_id)
        except GatewayError as exc:
            return _cleanup_failed(self.settings.mailbox, exc)
        return None

    def _delete_quietly(self, draft_url: str) -> str | None:
        """Delete the draft; None when done, else the sentence saying it is still there."""
        try:
            self._delete(draft_url)
        except GatewayError as exc:
            return _cleanup_failed(self.settings.mailbox, exc)
        return None

    @staticmethod
    def _reraise(error: GatewayError, problem: str | None) -> NoReturn:
        """Raise ``error``, with the sentence about a draft that could not be deleted."""
        if problem is None:
            raise error
        again = type(error)(
            f"{error}; {problem}",
            server_message=error.server_message,
            retry_after=error.retry_after,
            failure=error.failure,
        )
        raise again from error.__cause__ or error

    # -- looking up ------------------------------------------------------------------------

    def find_sent(self, message_id: str) -> Receipt | None:
        """Look the Message-ID up in the mailbox's Sent Items; the id is the immutable one."""
        response = self._request(
            "GET",
            f"{self._user}/mailFolders('SentItems')/messages",
            "searching Sent Items",
            params={
                "$filter": _message_id_filter(message_id),
                "$select": "id,internetMessageId,sentDateTime",
            },
        )
        found = _json(response, "searching Sent Items").get("value") or []
        if not found:
            return None
        item = found[0]
        return Receipt(
            gateway=self.name,
            message_id=message_id,
            gateway_id=str(item.get("id", "")) or None,
            detail=f"found in Sent Items of {self.settings.mailbox}, sent "
            f"{item.get('sentDateTime', 'at an unknown time')}",
        )

    def check(self) -> str:
        """Get a token and read the Sent Items folder; sends nothing."""
        response = self._request(
            "GET",
            f"{self._user}/mailFolders('SentItems')",
            "reading Sent Items",
            params={"$select": "id,displayName,totalItemCount"},
        )
        count = _json(response, "reading Sent Items").get("totalItemCount", "?")
        return (
            f"graph: token for client {self.settings.credentials.client_id} accepted; "
            f"mailbox {self.settings.mailbox} reachable ({count} messages in Sent Items)"
        )

    def close(self) -> None:
        self._session.close()


def _cleanup_failed(mailbox: str, exc: GatewayError) -> str:
    return (
        f"an unsent draft could not be deleted ({exc.server_message or 'no answer'}): delete "
        f"it from the Drafts folder of {mailbox}"
    )


def _message_id_filter(message_id: str) -> str:
    """An OData filter on internetMessageId; a quote in the literal is doubled."""
    return f"internetMessageId eq '{message_id.replace(chr(39), chr(39) * 2)}'"


def _json(response: Response, step: str) -> dict[str, Any]:
    """The JSON object of a success response; anything else is a lost answer (transient)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        # The step may have been done: an answer that cannot be read is a lost answer.
        raise _AnswerLost(
            f"Graph answered {step} with {response.status_code} but no JSON object",
            server_message=f"{response.status_code} {response.reason or ''}".strip(),
        )
    return body


def _draft(message: OutgoingMessage) -> dict[str, Any]:
    """The draft message resource: our Message-ID and X- headers, HTML body, Reply-To,
    importance and the From display name."""
    draft: dict[str, Any] = {
        "subject": message.subject,
        "body": {"contentType": "HTML", "content": message.html_body},
        "toRecipients": [{"emailAddress": {"address": r}} for r in message.recipients],
        "internetMessageId": message.message_id,
        "internetMessageHeaders": [
            {"name": name, "value": value}
            for name, value in message.extra_headers
            if name.lower().startswith("x-")
        ],
    }
    if message.reply_to:
        # internetMessageHeaders takes X- headers only; Reply-To is a property of its own.
        draft["replyTo"] = [
            {"emailAddress": {"address": address}} for address in message.reply_to_addresses
        ]
    # The same importance and display name as the MIME sendMail carries on the short way:
    # a RED request is high importance however large its form.
    draft["importance"] = "high" if message.importance == "high" else "normal"
    if message.sender_name:
        draft["from"] = {"emailAddress": {"address": message.sender, "name": message.sender_name}}
    return draft
