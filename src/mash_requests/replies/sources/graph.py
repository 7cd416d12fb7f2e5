"""Microsoft Graph (Exchange Online): list the folder's messages, download each new one's MIME.

``GET /users/{mailbox}/mailFolders/{folder}/messages`` with ``$filter=receivedDateTime ge
…``, ``$orderby=receivedDateTime`` and ``$select=id,internetMessageId,receivedDateTime``,
following ``@odata.nextLink`` page by page; then ``GET /users/{mailbox}/messages/{id}/$value``
(the message's MIME) for each message whose Message-ID is not yet recorded. Nothing in the
mailbox is changed. The app needs the ``Mail.Read`` application permission (an application
access policy can limit it to this mailbox).

Failures: 429 (with ``Retry-After``, fractional too), 5xx, 408 and lost connections are
transient and retried under ``[retry]``; 401 (credentials), 403 (permission), 404 (mailbox or
folder) and other 4xx are permanent, with Graph's own words; no token is permanent with
MSAL's error code (the same token source as the Graph gateway).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from mash_requests.errors import (
    Failure,
    GatewayError,
    PermanentGatewayError,
    TransientGatewayError,
)
from mash_requests.replies.sources.base import RawMessage, call_with_retry

if TYPE_CHECKING:
    from requests import Response

    from mash_requests._tables import Table
    from mash_requests.gateways.graph import Settings as GraphGatewaySettings
    from mash_requests.gateways.graph import TokenSource
    from mash_requests.retry import RetryPolicy

#: Messages per page (Graph allows up to 1000 for messages; 100 keeps answers small).
PAGE_SIZE = 100


@dataclass(frozen=True)
class Settings:
    """The ``[replies.graph]`` table: the Graph gateway's keys, plus ``folder``."""

    kind: ClassVar[str] = "graph"

    graph: GraphGatewaySettings
    #: A well-known folder name (``inbox``) or a folder id.
    folder: str = "inbox"

    @classmethod
    def from_table(cls, table: Table) -> Settings:
        """Validate ``[replies.graph]`` (mailbox, tenant_id, client_id, client secret …)."""
        from mash_requests.gateways.graph import Settings as GraphGatewaySettings

        folder = table.string("folder", "inbox") or "inbox"
        if not folder.replace("-", "").replace("_", "").replace("=", "").isalnum():
            raise table.error(
                "folder", f"expected a folder name such as 'inbox' or an id, got {folder!r}"
            )
        return cls(graph=GraphGatewaySettings.from_table(table), folder=folder)

    @property
    def identity(self) -> str:
        return f"graph:{self.graph.base_url}/users/{self.graph.mailbox}/mailFolders/{self.folder}"

    def open(self, policy: RetryPolicy) -> GraphSource:
        from mash_requests.gateways.graph import TokenSource

        tokens = TokenSource(self.graph.credentials, self.graph.scope, timeout=self.graph.timeout)
        return GraphSource(self, tokens, policy)


class GraphSource:
    """Reads one mailbox folder through Microsoft Graph."""

    name = "graph"

    def __init__(
        self,
        settings: Settings,
        tokens: TokenSource,
        policy: RetryPolicy,
        *,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        import requests

        self.settings = settings
        self.policy = policy
        self._tokens = tokens
        self._sleep = sleep
        self._session = requests.Session()

    @property
    def _user(self) -> str:
        graph = self.settings.graph
        return f"{graph.base_url}/users/{quote(graph.mailbox, safe='@')}"

    def _get(self, url: str, step: str, params: dict[str, str] | None = None) -> Response:
        """One GET under the retry policy; failures as gateway errors naming the step."""

        def attempt() -> Response:
            import requests

            headers = {"Authorization": f"Bearer {self._tokens.token()}"}
            try:
                response = self._session.get(
                    url, params=params, headers=headers, timeout=self.settings.graph.timeout
                )
            except requests.RequestException as exc:
                problem = "timed out" if isinstance(exc, requests.Timeout) else type(exc).__name__
                raise TransientGatewayError(
                    f"Graph could not be reached for {step} ({problem})",
                    server_message=problem,
                    failure=Failure.CONNECTION,
                ) from exc
            if response.status_code >= 400:
                raise self._failure(step, response)
            return response

        if self._sleep is None:
            return call_with_retry(attempt, self.policy)
        return call_with_retry(attempt, self.policy, sleep=self._sleep)

    def _failure(self, step: str, response: Response) -> GatewayError:
        status = response.status_code
        words = _error_words(response)
        if status in (408, 429) or status >= 500:
            return TransientGatewayError(
                f"Graph deferred {step}: {words}",
                server_message=words,
                retry_after=_retry_after(response),
                failure=Failure.SERVER,
            )
        mailbox = self.settings.graph.mailbox
        advice, failure = {
            401: ("; check tenant_id, client_id and the client secret", Failure.AUTHENTICATION),
            403: (
                f"; the app needs the Mail.Read application permission for {mailbox}",
                Failure.AUTHENTICATION,
            ),
            404: (
                f"; check that mailbox {mailbox} and folder {self.settings.folder!r} exist",
                Failure.SERVER,
            ),
        }.get(status, ("", Failure.SERVER))
        return PermanentGatewayError(
            f"Graph refused {step}: {words}{advice}", server_message=words, failure=failure
        )

    def messages(
        self, since: datetime | None, known: Callable[[str], bool]
    ) -> Iterator[RawMessage]:
        """New messages received since ``since``, oldest first, page by page."""
        from mash_requests.replies.classify import normalise_message_id

        folder = quote(self.settings.folder, safe="")
        url: str | None = f"{self._user}/mailFolders/{folder}/messages"
        first: dict[str, str] = {
            "$select": "id,internetMessageId,receivedDateTime",
            "$orderby": "receivedDateTime asc",
            "$top": str(PAGE_SIZE),
        }
        if since is not None:
            stamp = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            first["$filter"] = f"receivedDateTime ge {stamp}"
        params: dict[str, str] | None = first
        page = 0
        while url:
            page += 1
            body = _json(self._get(url, f"listing messages (page {page})", params), "listing")
            for item in body.get("value") or []:
                if not isinstance(item, dict) or not item.get("id"):
                    continue
                message_id = normalise_message_id(str(item.get("internetMessageId") or ""))
                if message_id is not None and known(message_id):
                    continue
                item_id = quote(str(item["id"]), safe="")
                mime = self._get(f"{self._user}/messages/{item_id}/$value", "downloading a message")
                yield RawMessage(
                    data=mime.content,
                    received_at=_parse_time(item.get("receivedDateTime")),
                    where=f"message {item['id']}",
                )
            link = body.get("@odata.nextLink")
            # The next link carries every query option; it must stay on Graph's host.
            url = (
                str(link)
                if isinstance(link, str) and link.startswith(self.settings.graph.base_url)
                else None
            )
            params = None

    def close(self) -> None:
        self._session.close()


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def _retry_after(response: Response) -> float | None:
    try:
        seconds = float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None  # absent, or an HTTP date: the backoff applies instead
    return seconds if seconds >= 0 else None


def _error_words(response: Response) -> str:
    """``<status> <code>: <message>`` from Graph's error JSON, else the status line."""
    words = f"{response.status_code} {response.reason or ''}".strip()
    try:
        body = response.json()
    except ValueError:
        return words
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        detail = ": ".join(str(error[k]) for k in ("code", "message") if error.get(k))
        if detail:
            words = f"{response.status_code} {detail}"
    return " ".join(words.split())[:500]


def _json(response: Response, step: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise TransientGatewayError(
            f"Graph answered {step} with {response.status_code} but no JSON object",
            server_message=f"{response.status_code}",
            failure=Failure.SERVER,
        )
    return body
