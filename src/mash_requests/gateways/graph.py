"""Microsoft Graph (Exchange Online): draft, attach, send; Sent Items lookup by Message-ID.

The flow: POST a draft carrying our own ``internetMessageId`` (so the message can be found
later), the ``X-MASH-Request-Ref`` header and ``replyTo`` (where partners' replies go);
attach the form (inline below 3 MB, through an upload session up to 150 MB); POST ``/send``
(``202 Accepted``).

How failures are classed:

- 429, 503, 408, and any 5xx or lost connection while making or filling the draft:
  transient (an unsent draft is harmless; it is deleted, best effort);
- 429 on the final ``/send``: transient. Throttling is decided before the request reaches
  the mailbox, so nothing was sent;
- any 5xx (503 included), 408, a timeout or a lost connection on the final ``/send``:
  ambiguous: Graph may have taken the message. A 503 or 408 is not proof that it did not:
  it can come from a front end that gave up waiting on a mailbox server that went on to
  send it. The retry policy looks in Sent Items (after any ``Retry-After``) before
  resending, which costs a wait; treating them as transient could deliver twice;
- 400, 401, 403, 404, 413 and other 4xx: permanent, with Graph's own ``error.message``;
- no token (bad secret, unknown client or tenant): permanent, with MSAL's error code;
- anything else (a bug, an error requests does not class): ambiguous on the final
  ``/send``, permanent before; only the exception's type is kept.

Also home of the OAuth2 client-credentials token source (msal) that the SMTP gateway uses
for XOAUTH2: one app registration, one way of getting a token.
"""

from __future__ import annotations

import base64
import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote, urlsplit

from mash_requests.errors import (
    AmbiguousGatewayError,
    GatewayError,
    PermanentGatewayError,
    TransientGatewayError,
)
from mash_requests.gateways.base import OutgoingMessage, Receipt

if TYPE_CHECKING:
    from requests import Response

    from mash_requests._tables import Table

DEFAULT_AUTHORITY = "https://login.microsoftonline.com"


@dataclass(frozen=True)
class ClientCredentials:
    """An Entra ID app registration for the OAuth2 client-credentials grant.

    Read from the gateway's table: ``tenant_id``, ``client_id``, ``client_secret_env`` or
    ``client_secret_file``, and optionally ``authority``.
    """

    tenant_id: str
    client_id: str
    client_secret: str = field(repr=False)
    authority: str = DEFAULT_AUTHORITY

    @classmethod
    def from_table(cls, table: Table) -> ClientCredentials:
        """Read the four keys; leaves reject_unknown() to the caller that owns the table."""
        tenant_id = table.required_string("tenant_id")
        client_id = table.required_string("client_id")
        secret = table.secret("client_secret")
        assert secret is not None
        authority = table.string("authority", DEFAULT_AUTHORITY) or DEFAULT_AUTHORITY
        if not authority.startswith("https://"):
            raise table.error("authority", f"must be an https:// URL, got {authority!r}")
        return cls(
            tenant_id=tenant_id,
            client_id=client_id,
            client_secret=secret,
            authority=authority.rstrip("/"),
        )


class TokenSource:
    """Access tokens for one scope from msal, cached by msal until they near expiry.

    Failures become gateway errors that name MSAL's error code and never the secret:
    a refused client or tenant is permanent, an unreachable identity service transient.
    """

    def __init__(self, credentials: ClientCredentials, scope: str, *, timeout: float) -> None:
        self.credentials = credentials
        self.scope = scope
        self.timeout = timeout
        self._app: Any = None

    def _application(self) -> Any:
        if self._app is None:
            import msal
            import requests

            c = self.credentials
            try:
                self._app = msal.ConfidentialClientApplication(
                    c.client_id,
                    authority=f"{c.authority}/{c.tenant_id}",
                    client_credential=c.client_secret,
                    timeout=self.timeout,
                )
            except requests.RequestException as exc:
                raise TransientGatewayError(
                    f"cannot reach the identity service {c.authority}: {type(exc).__name__}",
                    server_message=type(exc).__name__,
                ) from exc
            except ValueError as exc:
                # msal says "Unable to get authority configuration for …" for a bad tenant.
                raise PermanentGatewayError(
                    f"the identity service does not know tenant {c.tenant_id!r} at "
                    f"{c.authority}; check tenant_id and authority",
                    server_message=str(exc).splitlines()[0][:300],
                ) from exc
        return self._app

    def token(self) -> str:
        """An access token; raises PermanentGatewayError / TransientGatewayError if none."""
        import requests

        try:
            result = self._application().acquire_token_for_client(scopes=[self.scope])
        except GatewayError:
            raise
        except requests.RequestException as exc:
            raise TransientGatewayError(
                f"cannot reach the identity service {self.credentials.authority}: "
                f"{type(exc).__name__}",
                server_message=type(exc).__name__,
            ) from exc
        except Exception as exc:
            # A bug, or an error msal does not class; nothing was sent.
            raise PermanentGatewayError(
                f"no access token for client {self.credentials.client_id} in tenant "
                f"{self.credentials.tenant_id}: unexpected {type(exc).__name__}",
                server_message=type(exc).__name__,
            ) from exc
        token = result.get("access_token") if isinstance(result, dict) else None
        if isinstance(token, str) and token:
            return token
        error = str(result.get("error", "unknown_error")) if isinstance(result, dict) else ""
        description = str(result.get("error_description", "")) if isinstance(result, dict) else ""
        # The first line of an AADSTS description names the problem; later lines are ids.
        words = f"{error}: {description.splitlines()[0] if description else ''}".strip(": ")
        error_class = (
            TransientGatewayError
            if error in ("temporarily_unavailable", "server_error")
            else PermanentGatewayError
        )
        raise error_class(
            f"no access token for client {self.credentials.client_id} in tenant "
            f"{self.credentials.tenant_id}: {words}",
            server_message=words,
        )


# -- the Graph gateway --------------------------------------------------------------------

DEFAULT_BASE_URL = "https://graph.microsoft.com/v1.0"
#: Attachments below this go inline in one POST (base64 makes ~4 MB, Graph's request limit).
INLINE_LIMIT = 3_000_000
#: Graph refuses attachments above 150 MB, even through an upload session.
UPLOAD_LIMIT = 150 * 1024 * 1024
#: Upload-session chunks must be multiples of 320 KiB and at most 4 MB.
CHUNK_SIZE = 10 * 320 * 1024


@dataclass(frozen=True)
class Settings:
    """The ``[gateway.graph]`` table, validated."""

    kind: ClassVar[str] = "graph"

    mailbox: str
    credentials: ClientCredentials
    base_url: str = DEFAULT_BASE_URL
    timeout: float = 60

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
        table.reject_unknown()
        return cls(mailbox=mailbox, credentials=credentials, base_url=base_url, timeout=timeout)

    @property
    def scope(self) -> str:
        """``https://<graph host>/.default``: the national clouds have their own hosts."""
        parts = urlsplit(self.base_url)
        return f"{parts.scheme}://{parts.netloc}/.default"

    def open(self) -> GraphGateway:
        """The gateway; the token and connections are fetched on first use."""
        return GraphGateway(self, TokenSource(self.credentials, self.scope, timeout=self.timeout))


def _retry_after(response: Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: rare from Graph; the backoff applies instead
    return seconds if seconds >= 0 else None


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


class GraphGateway:
    """Sends as one mailbox through Microsoft Graph: draft, attach, send.

    Sending a draft (not ``sendMail``) lets us set ``internetMessageId`` to our own
    Message-ID, upload forms over 3 MB, and find the message in Sent Items afterwards.
    """

    name = "graph"

    def __init__(self, settings: Settings, tokens: TokenSource) -> None:
        import requests

        self.settings = settings
        self._tokens = tokens
        self._session = requests.Session()

    @property
    def _user(self) -> str:
        return f"{self.settings.base_url}/users/{quote(self.settings.mailbox, safe='@')}"

    def _request(
        self,
        method: str,
        url: str,
        step: str,
        *,
        sending: bool = False,
        authorized: bool = True,
        **kwargs: Any,
    ) -> Response:
        """One HTTP request; any failure becomes a gateway error saying which step failed.

        ``sending`` marks the final /send: once its request may have reached Graph, a lost
        answer or a gateway error means the message may have gone (ambiguous).
        """
        import requests
        from urllib3.exceptions import NewConnectionError

        headers = dict(kwargs.pop("headers", {}))
        if authorized:
            headers["Authorization"] = f"Bearer {self._tokens.token()}"
        try:
            response = self._session.request(
                method, url, headers=headers, timeout=self.settings.timeout, **kwargs
            )
        except requests.RequestException as exc:
            never_sent = isinstance(exc, requests.ConnectTimeout) or (
                isinstance(exc, requests.ConnectionError)
                and isinstance(
                    getattr(exc.args[0] if exc.args else None, "reason", None), NewConnectionError
                )
            )
            problem = "timed out" if isinstance(exc, requests.Timeout) else type(exc).__name__
            if sending and not never_sent:
                raise AmbiguousGatewayError(
                    f"Graph gave no answer to {step} ({problem}); the message may have been "
                    "sent: look in Sent Items before resending",
                    server_message=problem,
                ) from exc
            raise TransientGatewayError(
                f"Graph could not be reached for {step} ({problem})", server_message=problem
            ) from exc
        except Exception as exc:
            # A bug or an error requests does not class; its text is not kept (it may
            # quote the request).
            kind = type(exc).__name__
            if sending:
                raise AmbiguousGatewayError(
                    f"Graph failed unexpectedly on {step} ({kind}); the message may have been "
                    "sent: look in Sent Items before resending",
                    server_message=kind,
                ) from exc
            raise PermanentGatewayError(
                f"Graph failed unexpectedly on {step} ({kind}); nothing was sent",
                server_message=kind,
            ) from exc
        if response.status_code >= 400:
            raise self._failure(step, response, sending=sending)
        return response

    def _failure(self, step: str, response: Response, *, sending: bool) -> GatewayError:
        status = response.status_code
        words = _error_words(response)
        hint = _retry_after(response)
        if status == 429 or (status in (408, 503) and not sending):
            # Throttled, or unavailable before the message could be sent: nothing was done.
            return TransientGatewayError(
                f"Graph deferred {step}: {words}", server_message=words, retry_after=hint
            )
        if status >= 500 or status == 408:
            if sending:
                return AmbiguousGatewayError(
                    f"Graph answered {step} with {words}; the message may have been sent: "
                    "look in Sent Items before resending",
                    server_message=words,
                    retry_after=hint,
                )
            return TransientGatewayError(
                f"Graph failed {step}: {words}", server_message=words, retry_after=hint
            )
        advice = {
            401: "; check tenant_id, client_id and the client secret",
            403: "; the app needs the Mail.Send and Mail.ReadWrite application permissions "
            "(and access to this mailbox)",
            404: f"; check that mailbox {self.settings.mailbox} exists",
            413: "; the message is too large for Graph",
        }.get(status, "")
        return PermanentGatewayError(f"Graph refused {step}: {words}{advice}", server_message=words)

    def send(self, message: OutgoingMessage) -> Receipt:
        """Create the draft, attach the form, send it; one try, classified failures."""
        form = message.attachment
        if len(form.data) > UPLOAD_LIMIT:
            raise PermanentGatewayError(
                f"the form is {len(form.data)} bytes; Graph takes attachments up to "
                f"{UPLOAD_LIMIT} bytes"
            )
        draft = _json(
            self._request(
                "POST", f"{self._user}/messages", "creating the draft", json=_draft(message)
            ),
            "creating the draft",
        )
        draft_id = str(draft.get("id") or "")
        if not draft_id:
            raise TransientGatewayError("Graph created a draft but gave no id for it")
        draft_url = f"{self._user}/messages/{quote(draft_id, safe='')}"
        try:
            self._attach(draft_url, message)
            self._request("POST", f"{draft_url}/send", "sending the draft", sending=True)
        except (TransientGatewayError, PermanentGatewayError):
            # Certainly not sent: remove the draft so retries do not pile up drafts.
            self._delete_quietly(draft_url)
            raise
        return Receipt(
            gateway=self.name,
            message_id=message.message_id,
            gateway_id=draft_id,
            detail=f"202 Accepted for {self.settings.mailbox}",
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
            raise TransientGatewayError("Graph opened an upload session without an https uploadUrl")
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

    def _delete_quietly(self, draft_url: str) -> None:
        # An orphan draft is harmless (it was never sent), so a failure here is ignored.
        with contextlib.suppress(GatewayError):
            self._request("DELETE", draft_url, "deleting the unsent draft")

    def find_sent(self, message_id: str) -> Receipt | None:
        """Look the Message-ID up in the mailbox's Sent Items."""
        literal = message_id.replace("'", "''")
        response = self._request(
            "GET",
            f"{self._user}/mailFolders('SentItems')/messages",
            "searching Sent Items",
            params={
                "$filter": f"internetMessageId eq '{literal}'",
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


def _json(response: Response, step: str) -> dict[str, Any]:
    """The JSON object of a success response; anything else is a transient failure."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise TransientGatewayError(
            f"Graph answered {step} with {response.status_code} but no JSON object",
            server_message=f"{response.status_code} {response.reason or ''}".strip(),
        )
    return body


def _draft(message: OutgoingMessage) -> dict[str, Any]:
    """The draft message resource: our Message-ID and X- headers, HTML body, Reply-To."""
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
        draft["replyTo"] = [{"emailAddress": {"address": message.reply_to}}]
    return draft
