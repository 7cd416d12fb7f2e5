"""Grouped commits: a request's outcome is committed with the next request's handing_over mark.

What must still hold (README, "Grouped commits"): every mark is durable before its message
reaches the gateway; every outcome is durable before it is reported; an outcome lost with
the commit it waited for leaves its request handed over, so the next run settles it as such
(unconfirmed over SMTP), never sends it twice.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

import mash_requests
from mash_requests.audit import open_store
from mash_requests.audit.events import Event, EventKind, EventStore, StoredEvent
from mash_requests.batch import BatchProgress, send_batch
from mash_requests.dispatch import Dispatcher, Outcome
from mash_requests.errors import LogError, SendLogError
from mash_requests.gateways.base import OutgoingMessage, Receipt
from workspace import Workspace

PARTNERS = ["police", "health", "education"]


class CountingStore:
    """A store that counts its transactions, and can fail from the Nth on (a full disk)."""

    def __init__(self, store: EventStore, fail_at: int = 0) -> None:
        self._store = store
        self.transactions: list[list[EventKind]] = []
        self.fail_at = fail_at

    def append_many(self, events: Any, *, precondition: Any = None) -> list[StoredEvent]:
        if self.fail_at and len(self.transactions) + 1 >= self.fail_at:
            raise LogError("dispatch log: cannot append: disk full")
        stored = self._store.append_many(events, precondition=precondition)
        self.transactions.append([e.kind for e in events])
        return stored

    def append(self, event: Event, *, precondition: Any = None) -> StoredEvent:
        return self.append_many([event], precondition=precondition)[0]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@dataclass
class CheckingGateway:
    """Accepts every message, first checking in the log (another connection) that the
    message's handing_over mark is committed. Named smtp: it cannot look in Sent Items."""

    workspace: Workspace
    name: str = "smtp"
    sent: list[OutgoingMessage] = field(default_factory=list)

    def send(self, message: OutgoingMessage) -> Receipt:
        marks = [
            e
            for e in self.workspace.events()
            if e.kind is EventKind.HANDING_OVER and e.message_id == message.message_id
        ]
        assert len(marks) == 1, "handed to the gateway before its mark was durable"
        self.sent.append(message)
        return Receipt(gateway=self.name, message_id=message.message_id, gateway_id="250 OK")

    def close(self) -> None:
        pass


def three_partner_case(workspace: Workspace) -> mash_requests.Case:
    data = workspace.example_case()
    data["partners"] = PARTNERS
    return mash_requests.load_case(workspace.write_case(data))


def test_a_case_takes_one_commit_per_request_and_one_more(workspace: Workspace) -> None:
    """Three requests: claim with the first mark, two outcomes each with the next mark, the
    last outcome alone: four durable commits where there were seven; every mark committed
    before its message reached the gateway."""
    settings = mash_requests.load_settings(workspace.config)
    store = CountingStore(open_store(settings.log))
    gateway = CheckingGateway(workspace)
    with Dispatcher(settings, store=store, gateway=gateway) as dispatcher:  # type: ignore[arg-type]
        result = dispatcher.send_case(three_partner_case(workspace))
    assert [o.outcome for o in result.outcomes] == [Outcome.SENT] * 3
    assert len(gateway.sent) == 3
    P, H, S = EventKind.PREPARED, EventKind.HANDING_OVER, EventKind.SENT
    assert store.transactions == [[P, P, P, H], [S, H], [S, H], [S]]


def test_every_sent_counted_by_a_batch_is_in_the_log(workspace: Workspace) -> None:
    """Whenever the batch reports progress, the log already holds every sent it counts."""
    settings = mash_requests.load_settings(workspace.config)
    cases = []
    for number in range(4):
        data = workspace.example_case()
        data["contact_id"] = f"CON-{number}"
        data["partners"] = PARTNERS
        cases.append(data)
    seen: list[tuple[int, int]] = []

    def progress(state: BatchProgress) -> None:
        logged = Counter(e.kind for e in workspace.events())
        seen.append((state.counts[Outcome.SENT], logged[EventKind.SENT]))

    result = send_batch(settings, cases, progress=progress, base_dir=workspace.root / "cases")
    assert result.counts[Outcome.SENT] == 12
    assert [counted for counted, _ in seen] == [3, 6, 9, 12]
    assert all(counted <= logged for counted, logged in seen)


def test_an_outcome_lost_with_its_commit_is_settled_as_handed_over(workspace: Workspace) -> None:
    """The log fails at the commit that carries health's outcome: health was delivered but
    is not recorded. The next run records it unconfirmed and does not send it again;
    education, never handed over, is sent; police, recorded sent, is not."""
    settings = mash_requests.load_settings(workspace.config)
    case = three_partner_case(workspace)
    first = CheckingGateway(workspace)
    store = CountingStore(open_store(settings.log), fail_at=3)  # claim+mark, sent+mark, ✗
    with (
        Dispatcher(settings, store=store, gateway=first) as dispatcher,  # type: ignore[arg-type]
        pytest.raises(SendLogError) as caught,
    ):
        dispatcher.send_case(case)
    assert [(h.partner, h.recorded) for h in caught.value.handed_over] == [
        ("police", "sent"),
        ("health", None),
    ]
    assert [m["X-MASH-Request-Ref"] for m in (s.mime for s in first.sent)] == [
        h.request_ref for h in caught.value.handed_over
    ]
    # The first run is over (its lock released, as the death of its process would).
    second = CheckingGateway(workspace)
    with Dispatcher(settings, gateway=second) as dispatcher:
        again = dispatcher.send_case(case, skip_sent=True)
    assert {o.partner: o.outcome for o in again.outcomes} == {
        "police": Outcome.SKIPPED,
        "health": Outcome.UNCONFIRMED,
        "education": Outcome.SENT,
    }
    assert [s.mime["To"] for s in second.sent] == [
        ", ".join(settings.directory.get("education").addresses)
    ]
