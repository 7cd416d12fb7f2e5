"""Which requests are open: sent (or being sent) and not yet answered, folded from the log.

The fold reads the log's events in ``seq`` order and keeps one entry per request key: its
latest *cycle* (a resend starts a new one, with a new request reference). A cycle opens with
``prepared``; ``sent`` or a reconciliation that found it in Sent Items marks it sent,
``unconfirmed`` marks it unconfirmed; ``failed`` or a reconciliation that did not find it
closes it (nothing was sent). A ``replied`` event for any reference of the key, recorded
after the cycle opened, answers it and closes it; ``bounced`` for the cycle's own reference
flags it; ``chased`` with outcome ``sent`` counts a reminder. Automatic replies, read
receipts and unmatched messages change nothing.

A log of a million events takes tens of seconds to fold in full in Python, yet only a few
hundred requests are open at any time. Two things keep ``overdue`` fast:

- Without a usable cache, a store that offers ``open_request_events`` (both built-in stores
  do: :mod:`mash_requests.audit._open_requests`) picks out in SQL the request keys that may
  still be open and returns all of their events; the same fold reads only those. The SQL
  only leaves out keys the fold would certainly close, so the result is the whole fold's.
- The fold's state after event ``seq`` N (the open requests only) is kept in
  ``<data_dir>/cache/`` with N and the hash of event N; the next call checks that event N
  still has that hash and folds only the events after it (or, more than
  :data:`CATCH_UP_EVENTS` behind, reads the store's selection again). The state is the same
  whether built from the first event or continued from the cache: one fold, one result. A
  cache that does not match the log (another log, a restored backup, a damaged or edited
  file) is ignored; its checksum is an HMAC under the log's key when the log has one, so it
  cannot be forged without the key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from itertools import islice
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from mash_requests.audit.events import EventFilter, EventKind, EventStore, StoredEvent

log = logging.getLogger(__name__)

#: Kinds that change which requests are open.
TRACKED_KINDS = (
    EventKind.PREPARED,
    EventKind.SENT,
    EventKind.FAILED,
    EventKind.UNCONFIRMED,
    EventKind.RECONCILED,
    EventKind.REPLIED,
    EventKind.BOUNCED,
    EventKind.CHASED,
)

CACHE_FORMAT = "mash-requests open-requests 1"

#: A cache further behind the log than this many events is not continued when the store can
#: select the open requests itself (10,000 events take about a quarter of a second to fold).
CATCH_UP_EVENTS = 10_000


@runtime_checkable
class OpenRequestSource(Protocol):
    """A store that can pick out the events of the requests that may still be open."""

    def open_request_events(self, kinds: Sequence[str]) -> tuple[int, str, list[StoredEvent]]:
        """The seq and hash of the last event of ``kinds`` (0 and "" for none) and, in seq
        order, every event of ``kinds`` of each request key that may still be open: every
        key but those whose latest ``prepared`` reference has a ``replied`` or ``failed``
        after it and was prepared only once. One snapshot."""
        ...

    def head_seq(self) -> int:
        """The highest ``seq`` stored (0 for an empty log)."""
        ...


@dataclass(slots=True)
class OpenRequest:
    """One request key's latest cycle, not answered yet."""

    request_key: str
    request_ref: str
    case_ref: str
    partner: str | None
    #: The ``rag`` and ``due`` (ISO 8601) of its ``prepared`` event, where the log has them.
    rag: str | None
    due: str | None
    prepared_at: str
    #: pending (prepared, no outcome yet), sent, or unconfirmed.
    outcome: str = "pending"
    sent_at: str | None = None
    bounced: bool = False
    bounce_status: str | None = None
    chasers: int = 0
    last_chased_at: str | None = None
    message_id: str | None = None
    #: Earlier references of the same key (resends): a reply to any of them answers it.
    earlier_refs: list[str] = field(default_factory=list)


#: OpenRequest's fields in order, for the cache (a slotted class has no ``__dict__``).
_OPEN_REQUEST_FIELDS = tuple(f.name for f in fields(OpenRequest))


class OpenRequests:
    """The fold's state: open requests by key, and every reference of each to its key."""

    def __init__(self) -> None:
        self.by_key: dict[str, OpenRequest] = {}
        self.key_of_ref: dict[str, str] = {}
        #: The seq and hash of the last event folded (0 and "" before any).
        self.seq = 0
        self.hash = ""

    def apply(self, stored: StoredEvent) -> None:
        """Fold one event (the next in seq order)."""
        self.seq = stored.seq
        self.hash = stored.hash
        event = stored.event
        kind = event.kind
        ref = event.request_ref
        if ref is None:
            return
        if kind is EventKind.PREPARED:
            key = event.request_key or ref
            earlier = self.by_key.get(key)
            refs = [*earlier.earlier_refs, earlier.request_ref] if earlier else []
            due = event.details.get("due")
            rag = event.details.get("rag")
            self.by_key[key] = OpenRequest(
                request_key=key,
                request_ref=ref,
                case_ref=event.case_ref,
                partner=event.partner,
                rag=rag if isinstance(rag, str) else None,
                due=due if isinstance(due, str) else None,
                prepared_at=stored.recorded_at.isoformat(),
                message_id=event.message_id,
                earlier_refs=refs[-20:],
            )
            self.key_of_ref[ref] = key
            return
        known = self.key_of_ref.get(ref)
        current = self.by_key.get(known) if known is not None else None
        if current is None:
            return  # a request already answered or closed
        own = current.request_ref == ref
        if kind is EventKind.REPLIED:
            self._close(current)
        elif not own:
            return  # an outcome, bounce or chaser of an earlier cycle
        elif kind is EventKind.SENT or (
            kind is EventKind.RECONCILED and event.details.get("outcome") == "sent"
        ):
            current.outcome = "sent"
            current.sent_at = current.sent_at or stored.recorded_at.isoformat()
        elif kind is EventKind.UNCONFIRMED:
            current.outcome = "unconfirmed"
        elif kind in (EventKind.FAILED, EventKind.RECONCILED):
            self._close(current)  # certainly not sent: nothing to answer
        elif kind is EventKind.BOUNCED:
            current.bounced = True
            status = event.details.get("status")
            current.bounce_status = status if isinstance(status, str) else None
        elif kind is EventKind.CHASED and event.details.get("outcome", "sent") == "sent":
            # A reminder's steps are all chased events; the one with outcome "sent" is the
            # reminder that reached the partner (see mash_requests.replies.chase).
            current.chasers += 1
            current.last_chased_at = stored.recorded_at.isoformat()

    def _close(self, current: OpenRequest) -> None:
        del self.by_key[current.request_key]
        for ref in (*current.earlier_refs, current.request_ref):
            self.key_of_ref.pop(ref, None)

    def fold(self, events: Iterable[StoredEvent]) -> None:
        for stored in events:
            self.apply(stored)

    # -- the cache --------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "hash": self.hash,
            # What dataclasses.asdict gives (the fields in order, lists copied), ten times
            # faster. OpenRequest has slots, so no vars(): its fields by name.
            "requests": [
                {
                    **{name: getattr(request, name) for name in _OPEN_REQUEST_FIELDS},
                    "earlier_refs": list(request.earlier_refs),
                }
                for request in self.by_key.values()
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OpenRequests:
        state = cls()
        state.seq = int(data["seq"])
        state.hash = str(data["hash"])
        for item in data["requests"]:
            request = OpenRequest(**item)
            state.by_key[request.request_key] = request
            for ref in (*request.earlier_refs, request.request_ref):
                state.key_of_ref[ref] = request.request_key
        return state


def open_requests(
    store: EventStore,
    *,
    cache_dir: Path | None = None,
    location: str = "",
    hmac_key: bytes | None = None,
) -> OpenRequests:
    """The open requests of the log, continuing from the cache in ``cache_dir`` if it holds.

    Without a usable cache, the store's own selection is folded where it offers one
    (:class:`OpenRequestSource`), else the whole log. The cache is written back (best
    effort: a folder that cannot be written only costs speed next time).
    """
    path = _cache_path(cache_dir, location) if cache_dir is not None else None
    state = _load(path, store, location, hmac_key) if path is not None else None
    start = state.seq if state is not None else 0
    if isinstance(store, OpenRequestSource) and (
        state is None or store.head_seq() - state.seq > CATCH_UP_EVENTS
    ):
        state = from_selection(store)
    else:
        if state is None:
            state = OpenRequests()
        state.fold(store.events(EventFilter(kinds=TRACKED_KINDS, after_seq=state.seq or None)))
    if path is not None and (state.seq != start or not path.exists()):
        _save(path, state, location, hmac_key)
    return state


def from_selection(store: OpenRequestSource) -> OpenRequests:
    """The fold of the store's selection: what folding the whole log gives (see the module)."""
    seq, hash_, events = store.open_request_events([str(kind) for kind in TRACKED_KINDS])
    state = OpenRequests()
    state.fold(events)
    # Where the whole fold would have stopped: the log's last event of a tracked kind.
    state.seq, state.hash = seq, hash_
    return state


def _cache_path(cache_dir: Path, location: str) -> Path:
    digest = hashlib.sha256(location.encode("utf-8")).hexdigest()[:16]
    return cache_dir / f"open-requests-{digest}.json"


def _checksum(payload: bytes, hmac_key: bytes | None) -> str:
    if hmac_key is not None:
        return hmac.new(hmac_key, b"open-requests\x00" + payload, hashlib.sha256).hexdigest()
    return hashlib.sha256(payload).hexdigest()


def _load(
    path: Path, store: EventStore, location: str, hmac_key: bytes | None
) -> OpenRequests | None:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        payload = json.dumps(document["state"], sort_keys=True).encode("utf-8")
        expected = _checksum(payload, hmac_key)
        if (
            document.get("format") != CACHE_FORMAT
            or document.get("log") != location
            or not hmac.compare_digest(str(document.get("checksum", "")), expected)
        ):
            raise ValueError("not this log's cache, or damaged")
        state = OpenRequests.from_json(document["state"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.info("open-requests cache %s not used (%s); reading the whole log", path, exc)
        return None
    if state.seq == 0:
        return state
    # The event the cache ends with must still be in the log, unchanged.
    events = store.events(EventFilter(after_seq=state.seq - 1))
    try:
        head = next(islice(events, 1), None)
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()
    if head is None or head.seq != state.seq or head.hash != state.hash:
        log.info("open-requests cache %s does not match the log; reading the whole log", path)
        return None
    return state


def _save(path: Path, state: OpenRequests, location: str, hmac_key: bytes | None) -> None:
    from mash_requests.audit._files import atomic_write_text

    data = state.to_json()
    payload = json.dumps(data, sort_keys=True).encode("utf-8")
    document = {
        "format": CACHE_FORMAT,
        "log": location,
        "checksum": _checksum(payload, hmac_key),
        "state": data,
    }
    try:
        atomic_write_text(path, json.dumps(document, sort_keys=True))
    except OSError as exc:
        log.info("open-requests cache %s not written: %s", path, os.strerror(exc.errno or 0))
