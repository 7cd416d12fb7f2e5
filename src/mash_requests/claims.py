"""Claims on requests, and their settlement: who may send a request, and what became of it.

A request's *key* is (case reference, contact id, partner, form SHA-256). What the dispatch
log says of a key is its :class:`Standing`:

- ``new``, or ``retryable`` (it failed, was not found in Sent Items, or was never handed
  to the gateway by a run that died): a run may claim it;
- ``sent`` (sent, or found in Sent Items) and ``unconfirmed`` (may have been delivered):
  only with a resend reason;
- ``in_flight``: claimed by a run and without an outcome yet.

**Runs.** Every run that sends holds a lock of its own (:mod:`mash_requests.audit.runs`)
and names it in each event it writes (``details["run"]``, ``details["run_lock"]``). A
request in flight whose run still holds its lock belongs to that run, however long it
takes: it is never second-guessed. Where the run's lock is released (the process died, even
by ``kill -9``), the request is *abandoned* and the next run settles it at once. Only a run
that could take no lock is judged by a lease (``retry.max_seconds`` + 120 s after its last
event); so are requests logged before runs had locks.

**Handing over.** The invariant that makes settling exact, kept by :meth:`Claims.hand_over`
and the one call site of the gateway in :mod:`mash_requests.dispatch`:

    A message is handed to the gateway only after a ``handing_over`` event for its request
    is durable in the log, written by the run that claimed it while that run still holds
    its lock and the request is still its own.

So a request whose last event is ``prepared`` certainly never reached the gateway: an
abandoned one is settled ``reconciled`` with outcome ``not_sent`` and sent again. One whose
last event is ``handing_over`` or ``attempt_failed`` may have reached it: where the gateway
can look in Sent Items (outbox, EWS, Graph; the same mailbox), it is looked up, after
``retry.lookup_delay`` and again that long after, and the finding recorded; elsewhere (SMTP)
it is recorded ``unconfirmed`` for a person. The invariant holds whatever overlaps with the
send (the log commit of the previous request's outcome may): it speaks only of the mark.

**Claiming.** A run claims the requests of a case by appending their ``prepared`` events
in one transaction whose precondition re-reads every key under the log's write lock, so
two runs can never both decide to send one request. Each settlement and each handing-over
mark is appended under the same lock with the precondition that the key's last event is
still the one it was decided on, so a run that lost its lock can never send a request that
another run has taken over, and two runs never settle one request twice.

Everything here reads and writes the log; the gateway is used only to look in Sent Items.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from mash_requests.audit.events import (
    Event,
    EventKind,
    EventStore,
    JSONScalar,
    StoredEvent,
    cross_check_keys,
)
from mash_requests.audit.runs import ADVISORY, FILE, RunLocks

if TYPE_CHECKING:
    from mash_requests.config import Settings
    from mash_requests.gateways.base import Gateway


#: The fields that identify a request, copied from its earlier events onto later ones.
REQUEST_FIELDS = (
    "case_ref", "request_ref", "request_key", "partner", "recipients", "sender", "message_id",
    "form_filename", "form_sha256", "form_size", "form_pages", "form_found_in", "template",
    "template_version",
)  # fmt: skip

#: Event kinds that leave a request in flight (no outcome yet).
IN_FLIGHT_KINDS = frozenset({EventKind.PREPARED, EventKind.HANDING_OVER, EventKind.ATTEMPT_FAILED})


class State(StrEnum):
    """What the log says of a request key."""

    NEW = "new"
    #: Sent, or found in Sent Items.
    SENT = "sent"
    #: May have been delivered; a person must check before it goes again.
    UNCONFIRMED = "unconfirmed"
    #: Claimed by a run, no outcome yet.
    IN_FLIGHT = "in_flight"
    #: Failed, not found in Sent Items, or never handed over by a run that died.
    RETRYABLE = "retryable"


@dataclass(frozen=True)
class Standing:
    """A request key's state, with the event that decides it."""

    key: str
    state: State
    last: StoredEvent | None = None
    #: In flight, and its run is known to be dead (or its lease is over): settle it.
    abandoned: bool = False
    #: In flight, and the message may have reached the gateway (it was handed over).
    handed_over: bool = False
    #: In flight under a lease (its run has no lock): when the lease ends.
    lease_end: datetime | None = None

    @property
    def earlier(self) -> tuple[str, datetime] | None:
        """The request a resend of this key replaces (its reference and when it was sent or
        left unconfirmed), or None when nothing may have been delivered."""
        if self.state not in (State.SENT, State.UNCONFIRMED) or self.last is None:
            return None
        ref = self.last.event.request_ref
        return (ref, self.last.recorded_at) if ref else None

    def blocks(self, resend_reason: str | None) -> bool:
        """Whether this standing stops a run from claiming the key."""
        if self.state is State.IN_FLIGHT:
            return True
        return self.state in (State.SENT, State.UNCONFIRMED) and not resend_reason


class Conflict(Exception):
    """A key was taken between preflight and claim (or while a run waited); decide afresh.

    Not an error a caller sees: the dispatcher reads the log again and decides with what
    is there now.
    """

    def __init__(self, keys: Sequence[str]) -> None:
        super().__init__(", ".join(keys))
        self.keys = tuple(keys)


class LimitReached(Exception):
    """The mailbox's per-minute limit is used up: nothing was appended; wait and try again."""


@dataclass(frozen=True)
class SendingLimit:
    """A mailbox's per-minute sending limit (``[rate_limit] per_minute``), shared by every
    process using the log.

    Checked inside the transaction that appends a hand-over mark, under the log's write
    lock: the marks of the last minute are counted there, so a message is handed over only
    if fewer than ``per_minute`` were handed over before it, by this run or any other, and
    no two runs can take the last place at once.
    """

    sender: str
    per_minute: int
    clock: Callable[[], datetime]

    @classmethod
    def of(
        cls, settings: Settings, gateway_kind: str, clock: Callable[[], datetime]
    ) -> SendingLimit | None:
        """The limit of the config's mailbox through this gateway; None for the outbox: a
        local folder has no sending limit."""
        if gateway_kind == "outbox":
            return None
        return cls(settings.sender, settings.rate_limit_per_minute, clock)

    def check(self, store: EventStore) -> None:
        """Raise LimitReached when another message now would exceed the limit."""
        since = self.clock() - timedelta(seconds=60)
        if store.count_handed_over_since(self.sender, since, at_most=self.per_minute) >= (
            self.per_minute
        ):
            raise LimitReached


class Claims:
    """Reads what the log says of request keys, claims them, marks them handed over, and
    settles those that runs which died left in flight.

    ``runs`` and ``gateway`` are called only when needed (the run's lock is taken at the
    first claim; the gateway only to look in Sent Items), so a dry run takes neither.
    """

    def __init__(
        self,
        settings: Settings,
        store: EventStore,
        *,
        runs: Callable[[], RunLocks],
        clock: Callable[[], datetime],
        sleep: Callable[[float], None],
        gateway: Callable[[], Gateway],
        gateway_kind: Callable[[], str],
    ) -> None:
        self.settings = settings
        self.store = store
        self._runs = runs
        self._clock = clock
        self._sleep = sleep
        self._gateway = gateway
        self._gateway_kind = gateway_kind
        self._run_details: dict[str, JSONScalar] | None = None

    # -- the run ----------------------------------------------------------------------------

    def run_details(self) -> dict[str, JSONScalar]:
        """``details`` naming this run and its lock, taking the lock on first use."""
        if self._run_details is None:
            runs = self._runs()
            run_id = runs.acquire()
            self._run_details = {"run": run_id, "run_lock": runs.kind}
        return dict(self._run_details)

    @property
    def lease_seconds(self) -> float:
        """How long a request in flight of a run without a lock belongs to it."""
        return self.settings.retry.max_seconds + 120

    # -- what the log says ------------------------------------------------------------------

    def standing(self, key: str) -> Standing:
        """What the log says of a request key now, with the liveness of its run."""
        return self._standing_of(key, self.store.last_event_for_key(key))

    def standings(self, keys: Sequence[str]) -> list[Standing]:
        """:meth:`standing` of each key, in order, from one read of the log."""
        lasts = self.store.last_events_for_keys(keys)
        return [self._standing_of(key, lasts.get(key)) for key in keys]

    def _standing_of(self, key: str, last: StoredEvent | None) -> Standing:
        if last is None:
            return Standing(key, State.NEW)
        event = last.event
        if event.kind in IN_FLIGHT_KINDS:
            handed_over = event.kind is not EventKind.PREPARED
            alive = self._run_alive(event)
            if alive is not None:
                return Standing(
                    key, State.IN_FLIGHT, last, abandoned=not alive, handed_over=handed_over
                )
            lease_end = last.recorded_at + timedelta(seconds=self.lease_seconds)
            return Standing(
                key,
                State.IN_FLIGHT,
                last,
                abandoned=self._clock() >= lease_end,
                handed_over=handed_over or "run" not in event.details,
                lease_end=lease_end,
            )
        if event.kind is EventKind.SENT:
            return Standing(key, State.SENT, last)
        if event.kind is EventKind.UNCONFIRMED:
            return Standing(key, State.UNCONFIRMED, last)
        if event.kind is EventKind.RECONCILED and event.details.get("outcome") == "sent":
            return Standing(key, State.SENT, last)
        return Standing(key, State.RETRYABLE, last)

    def _run_alive(self, event: Event) -> bool | None:
        """Whether the run that wrote ``event`` holds its lock; None: judge by a lease.

        A request logged before runs had locks carries no run: it may have been handed
        over, so a lease, then the gateway's way of settling it, decide (as they did).
        """
        run_id = event.details.get("run")
        lock = event.details.get("run_lock")
        if not isinstance(run_id, str) or lock not in (FILE, ADVISORY):
            return None
        runs = self._runs()
        if runs.family != lock:
            return None  # a log moved between backends: its old runs cannot be asked
        return runs.is_alive(run_id)

    # -- claiming ---------------------------------------------------------------------------

    def claim(
        self,
        wanted: Mapping[str, str | None],
        prepared: Sequence[Event],
        *,
        hand_over: Event | None = None,
        limit: SendingLimit | None = None,
    ) -> None:
        """Append ``prepared`` in one durable transaction unless a key is held meanwhile.

        ``wanted`` maps each request key to its resend reason (or None). The check runs
        under the log's write lock: no other run can claim these keys at the same moment.
        Raises :class:`Conflict` (nothing appended) naming the keys that are held now.

        ``hand_over``, the handing_over mark of the first request, goes in the same
        transaction, after the ``prepared`` events: what :meth:`hand_over` checks holds
        there by construction (this run's own claim, made in the same step), and this run
        must still hold its lock (LogError otherwise), and the mark must fit in ``limit``
        (:class:`LimitReached`, nothing appended, otherwise: claim without the mark).
        """

        cases = {e.request_key: e.case_ref for e in prepared if e.request_key is not None}

        def precondition() -> None:
            if hand_over is not None:
                self._runs().check_held()
            standings = self._quick_standings(list(wanted), cases)
            held = [key for key, reason in wanted.items() if standings[key].blocks(reason)]
            if held:
                raise Conflict(held)
            if hand_over is not None and limit is not None:
                limit.check(self.store)

        events = [*prepared, *([hand_over] if hand_over is not None else [])]
        self.store.append_many(events, precondition=precondition)

    def _quick_standings(
        self, keys: Sequence[str], cases: Mapping[str, str]
    ) -> dict[str, Standing]:
        """The state alone, without asking whether a run is alive (for preconditions).

        Each key's last event is also looked up without the request_key index, through the
        rows of its case (``cases``): LogError, and nothing sent, if a damaged index
        disagrees.
        """
        lasts = self.store.last_events_for_keys(keys)
        for case_ref in sorted(set(cases.values())):
            of_case = {k: lasts.get(k) for k in keys if cases.get(k) == case_ref}
            cross_check_keys(self.store, case_ref, of_case)
        standings: dict[str, Standing] = {}
        for key in keys:
            last = lasts.get(key)
            if last is not None and last.event.kind in IN_FLIGHT_KINDS:
                standings[key] = Standing(key, State.IN_FLIGHT, last)
            else:
                standings[key] = self._standing_of(key, last)
        return standings

    def hand_over(
        self, mark: Event, *, before: Sequence[Event] = (), limit: SendingLimit | None = None
    ) -> None:
        """Durably record that ``mark``'s request is about to be handed to the gateway.

        ``before`` (outcomes of this run's earlier requests, not yet committed) are
        appended ahead of the mark in the same transaction, and only if the mark is.

        Only while this run holds its lock (LogError otherwise: stop sending) and the
        request is still the one this run claimed: :class:`Conflict` if another run has
        taken it over meanwhile (it decided this run was dead), and then it must not be
        sent. See the invariant in the module docstring. With ``limit``, only if the mark
        fits in the mailbox's per-minute limit: :class:`LimitReached` otherwise, and nothing
        (``before`` neither) is appended.
        """
        assert mark.kind is EventKind.HANDING_OVER and mark.request_key is not None
        key, request_ref = mark.request_key, mark.request_ref

        def precondition() -> None:
            self._runs().check_held()
            last = self.store.last_event_for_key(key)
            if (
                last is None
                or last.event.kind is not EventKind.PREPARED
                or last.event.request_ref != request_ref
            ):
                raise Conflict([key])
            if limit is not None:
                limit.check(self.store)

        self.store.append_many([*before, mark], precondition=precondition)

    # -- settling ---------------------------------------------------------------------------

    def settle(self, standing: Standing) -> Standing:
        """Settle an abandoned request (see the module docstring); return the new standing.

        Never called for a request of a live run. Appends under the precondition that the
        key's last event is still ``standing.last``: if another run settled or claimed it
        meanwhile, nothing is appended and what the log says now is returned.
        """
        assert standing.abandoned and standing.last is not None
        last = standing.last.event
        if not standing.handed_over:
            settlement = self._event_after(
                last,
                EventKind.RECONCILED,
                reason="interrupted",
                detail="the run that prepared this request stopped before handing it to the "
                "gateway; it was never sent",
                details={"outcome": "not_sent"},
            )
        else:
            settlement = self._settle_handed_over(standing.last)
        with contextlib.suppress(Conflict):  # another run settled or claimed it meanwhile
            self.store.append(settlement, precondition=self._unchanged(standing))
        return self.standing(standing.key)

    def _settle_handed_over(self, last: StoredEvent) -> Event:
        """The settlement of a request that may have reached the gateway before its run died."""
        from mash_requests.errors import GatewayError

        event = last.event
        if not self.can_look(event):
            return self._event_after(
                event,
                EventKind.UNCONFIRMED,
                reason="interrupted",
                detail="the run sending this request stopped after handing it to the gateway, "
                "which cannot look in sent items; check the partner's mailbox before resending",
            )
        # A mail system files a message in Sent Items some time after taking it: look no
        # sooner than lookup_delay after the hand-over, and once more that long after.
        delay = self.settings.retry.lookup_delay
        ready = last.recorded_at.astimezone(UTC) + timedelta(seconds=delay)
        try:
            self._wait_until(ready)
            finding = self._find(event)
            if finding is None and delay > 0:
                self._sleep(delay)
                finding = self._find(event)
        except GatewayError as exc:
            return self._event_after(
                event,
                EventKind.UNCONFIRMED,
                reason="interrupted",
                detail="the run sending this request stopped after handing it to the gateway, "
                f"and sent items could not be searched ({exc.server_message or exc.failure}); "
                "check the mailbox before resending",
            )
        return self._event_after(
            event,
            EventKind.RECONCILED,
            gateway_id=finding,
            detail="interrupted request looked up in sent items",
            details={"outcome": "sent" if finding is not None else "not_found"},
        )

    def _wait_until(self, moment: datetime) -> None:
        while (left := (moment - self._clock()).total_seconds()) > 0:
            self._sleep(min(left, 1.0))

    def _find(self, event: Event) -> str | None:
        """The gateway id of the message found in Sent Items, or None."""
        from mash_requests.gateways.base import SentItemsLookup

        gateway = self._gateway()
        assert isinstance(gateway, SentItemsLookup) and event.message_id
        receipt = gateway.find_sent(event.message_id)
        return None if receipt is None else (receipt.gateway_id or event.message_id)

    def _unchanged(self, standing: Standing) -> Callable[[], None]:
        assert standing.last is not None
        return self._still_at(standing.key, standing.last.seq)

    def wait_for(self, keys: Sequence[str], *, until: datetime) -> None:
        """Sleep until none of ``keys`` is in flight in a live run, or until ``until``."""
        while self._clock() < until:
            if not any(
                (s := self.standing(key)).state is State.IN_FLIGHT and not s.abandoned
                for key in keys
            ):
                return
            self._sleep(0.5)

    # -- looking in Sent Items ---------------------------------------------------------------

    def can_look(self, event: Event) -> bool:
        """Whether the configured gateway can look this request up in its Sent Items."""
        from mash_requests.gateways.base import SentItemsLookup

        return bool(
            event.message_id
            and self.same_mailbox(event)
            and isinstance(self._gateway(), SentItemsLookup)
        )

    def look_up(self, requests: Sequence[StoredEvent]) -> list[str | None]:
        """Look requests left unconfirmed up in Sent Items; log a ``reconciled`` event with
        each finding, "sent" or "not_found", and return them in order.

        "not_found" lets the request be sent again, so it is said only after the two looks
        that come before any resend: a mail system files a message in Sent Items some time
        after taking it, so each request is looked for no sooner than ``lookup_delay`` after
        its last event, and one not found is looked for once more ``lookup_delay`` later.
        Requests are looked at in turn, so the waits overlap. Each finding is logged as soon
        as it is known, and only while the request's key still stands at the event looked
        at: one sent again or settled meanwhile is left as it now is (None). None too where
        the configured gateway cannot look, or is not the mailbox the request went through.
        A lookup that fails raises its GatewayError; what was found before it is logged.
        """
        delay = timedelta(seconds=self.settings.retry.lookup_delay)
        lookable = sorted(
            (i for i, stored in enumerate(requests) if self.can_look(stored.event)),
            key=lambda i: requests[i].recorded_at,
        )
        findings: list[str | None] = [None] * len(requests)

        def record(i: int, found: str | None) -> None:
            stored = requests[i]
            finding = "sent" if found is not None else "not_found"
            event = self._event_after(
                stored.event, EventKind.RECONCILED, gateway_id=found, details={"outcome": finding}
            )
            key = stored.event.request_key
            try:
                if key is None:
                    self.store.append(event)
                else:
                    self.store.append(event, precondition=self._still_at(key, stored.seq))
            except Conflict:
                return  # sent again, or settled, since it was read: that stands
            findings[i] = finding

        missing: list[tuple[int, datetime]] = []
        for i in lookable:
            self._wait_until(requests[i].recorded_at.astimezone(UTC) + delay)
            looked = self._clock()
            found = self._find(requests[i].event)
            if found is None and delay:
                missing.append((i, looked))
            else:
                record(i, found)
        for i, looked in missing:
            self._wait_until(looked + delay)
            record(i, self._find(requests[i].event))
        return findings

    def _still_at(self, key: str, seq: int) -> Callable[[], None]:
        """A precondition: the key's last event is still the one at ``seq``."""

        def precondition() -> None:
            last = self.store.last_event_for_key(key)
            if last is None or last.seq != seq:
                raise Conflict([key])

        return precondition

    def same_mailbox(self, event: Event) -> bool:
        """Whether the configured gateway is the one the request went through.

        Looking for a message in a different system's Sent Items proves nothing: after a
        gateway switch, a request may only be settled by a person.
        """
        return event.gateway == self._gateway_kind() and event.sender == self.settings.sender

    def _event_after(
        self,
        event: Event,
        kind: EventKind,
        *,
        details: Mapping[str, JSONScalar] | None = None,
        **fields: object,
    ) -> Event:
        """An event about the same request as ``event``, written by this process."""
        values: dict[str, object] = {f: getattr(event, f) for f in REQUEST_FIELDS}
        values.update(fields)
        return Event(
            kind=kind,
            gateway=event.gateway,
            operator=self.settings.operator,
            details=dict(details or {}),
            **values,  # type: ignore[arg-type]
        )
