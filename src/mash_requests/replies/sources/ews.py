"""Exchange Web Services (exchangelib): on-premises Exchange, Exchange Online until 2027.

``FindItem`` on the folder with a ``DateTimeReceived >= …`` restriction, paged
(``IndexedPageItemView``, until ``IncludesLastItemInRange``), asking only for each item's
id, ``InternetMessageId`` and ``DateTimeReceived``; then ``GetItem`` with ``MimeContent`` for
the messages not yet recorded, a few at a time. Nothing in the mailbox is changed.

The connection (credentials, version, FailFast policy, timeout) and the error classes are
the EWS gateway's own (:mod:`mash_requests.gateways.ews`), so a reader and a sender of the
same mailbox behave the same: a refused login or an untrusted certificate is permanent;
``ErrorServerBusy`` (with its ``BackOffMilliseconds``), 429, 5xx and lost connections are
transient and retried under ``[retry]``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from mash_requests.replies.sources.base import RawMessage, call_with_retry

if TYPE_CHECKING:
    from mash_requests._tables import Table
    from mash_requests.gateways.ews import EwsGateway
    from mash_requests.gateways.ews import Settings as EwsGatewaySettings
    from mash_requests.retry import RetryPolicy

T = TypeVar("T")

#: Items per FindItem page and per GetItem request.
PAGE_SIZE = 100
GET_CHUNK = 10


@dataclass(frozen=True)
class Settings:
    """The ``[replies.ews]`` table: the EWS gateway's keys, plus ``folder``."""

    kind: ClassVar[str] = "ews"

    ews: EwsGatewaySettings
    #: ``inbox``, or a folder under it: ``inbox/MASH replies``.
    folder: str = "inbox"

    @classmethod
    def from_table(cls, table: Table) -> Settings:
        """Validate ``[replies.ews]`` (endpoint, version, auth, username, password …)."""
        from mash_requests.gateways.ews import Settings as EwsGatewaySettings

        folder = (table.string("folder", "inbox") or "inbox").strip("/")
        parts = folder.split("/")
        if parts[0].lower() != "inbox" or any(not part.strip() for part in parts):
            raise table.error(
                "folder",
                f"expected 'inbox' or a folder under it like 'inbox/Replies', got {folder!r}",
            )
        return cls(ews=EwsGatewaySettings.from_table(table), folder=folder)

    @property
    def identity(self) -> str:
        where = self.ews.endpoint or "autodiscover"
        return f"ews:{where}/{self.ews.mailbox}/{self.folder}"

    def open(self, policy: RetryPolicy) -> EwsSource:
        return EwsSource(self, policy)


class EwsSource:
    """Reads one mailbox folder through EWS."""

    name = "ews"

    def __init__(
        self,
        settings: Settings,
        policy: RetryPolicy,
        *,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self._sleep = sleep
        self._gateway: EwsGateway = settings.ews.open()

    def _call(self, step: str, action: Callable[[Any], T]) -> T:
        """Run ``action(account)`` under the retry policy, errors as the gateway classes them."""

        def attempt() -> T:
            # The gateway's own connection and error translation (one way to reach EWS).
            return self._gateway.call_with_account(step, action)

        if self._sleep is None:
            return call_with_retry(attempt, self.policy)
        return call_with_retry(attempt, self.policy, sleep=self._sleep)

    def _folder(self, account: Any) -> Any:
        folder = account.inbox
        for name in self.settings.folder.split("/")[1:]:
            folder = folder / name
        return folder

    def messages(
        self, since: datetime | None, known: Callable[[str], bool]
    ) -> Iterator[RawMessage]:
        """New messages received since ``since``, oldest first."""
        from mash_requests.replies.classify import normalise_message_id

        def listing(account: Any) -> list[tuple[str, str | None]]:
            from exchangelib import EWSDateTime

            query = self._folder(account).all()
            if since is not None:
                start = EWSDateTime.from_datetime(since.astimezone(UTC))
                query = query.filter(datetime_received__gte=start)
            query = query.only("message_id", "datetime_received").order_by("datetime_received")
            query.page_size = PAGE_SIZE
            found = []
            for item in query:
                if isinstance(item, Exception):
                    raise item
                found.append((item.id, item.changekey, item.message_id))
            return [(f"{i}\x00{c}", m) for i, c, m in found]

        wanted = []
        for handle, message_id in self._call("listing messages", listing):
            normalised = normalise_message_id(message_id)
            if normalised is None or not known(normalised):
                wanted.append(tuple(handle.split("\x00", 1)))
        for start in range(0, len(wanted), GET_CHUNK):
            chunk = wanted[start : start + GET_CHUNK]

            def download(account: Any, chunk: list[tuple[str, ...]] = chunk) -> list[Any]:
                from exchangelib.errors import ErrorItemNotFound

                items = []
                for item in account.fetch(
                    ids=chunk, only_fields=["mime_content", "datetime_received"]
                ):
                    if isinstance(item, ErrorItemNotFound):
                        continue  # deleted or moved since it was listed: nothing to read
                    if isinstance(item, Exception):
                        raise item
                    items.append(item)
                return items

            for item in self._call("downloading messages", download):
                received = item.datetime_received
                yield RawMessage(
                    data=bytes(item.mime_content or b""),
                    # An EWSDateTime refuses datetime's own UTC: go through the timestamp.
                    received_at=(
                        datetime.fromtimestamp(received.timestamp(), UTC) if received else None
                    ),
                    where=f"item {str(item.id)[:24]}…",
                )

    def close(self) -> None:
        self._gateway.close()
