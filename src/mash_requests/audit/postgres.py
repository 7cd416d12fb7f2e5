"""The dispatch log in PostgreSQL (psycopg 3, the ``postgres`` extra): being written."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime

from mash_requests.audit.events import Event, EventFilter, StoredEvent
from mash_requests.errors import LogError


class PostgresEventStore:
    """Placeholder until the PostgreSQL store lands; refuses to open."""

    def __init__(self, dsn: str, *, hmac_key: bytes | None = None) -> None:
        raise LogError('[log] backend = "postgres" is not available yet; use "sqlite"')

    def append(self, event: Event) -> StoredEvent:
        raise NotImplementedError

    def append_many(self, events: Sequence[Event]) -> list[StoredEvent]:
        raise NotImplementedError

    def events(self, where: EventFilter | None = None) -> Iterator[StoredEvent]:
        raise NotImplementedError

    def last_outcome(self, request_key: str) -> StoredEvent | None:
        raise NotImplementedError

    def count_sent_since(self, sender: str, since: datetime) -> int:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError
