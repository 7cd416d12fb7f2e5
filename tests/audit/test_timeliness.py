"""Timeliness of partners' answers: the evidence report's figures, per agency and month."""

from __future__ import annotations

import re
import time as pytime
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from audit_helpers import prepared, sent
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mash_requests.audit import Event, EventKind, EventStore, StoredEvent
from mash_requests.audit.report import build_report, render_html
from mash_requests.audit.timeliness import timeliness
from mash_requests.case import Rag
from mash_requests.deadlines import Timescales

# Monday 2 March 2026, 09:00 UTC (GMT: London time is UTC until 29 March).
MON = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 4, 20, 12, 0, tzinfo=UTC)

ELAPSED = Timescales(
    hours={Rag.RED: 4, Rag.AMBER: 24, Rag.GREEN: 72},
    working_hours=frozenset(),
    day_start=time(9),
    day_end=time(17),
    working_days=frozenset(range(5)),
    holidays=frozenset(),
    timezone=ZoneInfo("Europe/London"),
    holidays_region=None,
)
WORKING_AMBER = Timescales(**{**ELAPSED.__dict__, "working_hours": frozenset({Rag.AMBER})})


class Log:
    """Events as a store hands them back, each at the time given."""

    def __init__(self) -> None:
        self.events: list[StoredEvent] = []

    def add(self, when: datetime, event: Event) -> None:
        self.events.append(
            StoredEvent(len(self.events) + 1, when, event, prev_hash="0" * 64, hash="1" * 64)
        )

    def request(
        self,
        case: str,
        partner: str,
        when: datetime,
        *,
        rag: str = "amber",
        hours: float = 24,
    ) -> str:
        """A request prepared and sent at ``when``, due ``hours`` (elapsed) later."""
        ref = f"{case}-{partner}"
        fields = {"partner": partner, "request_ref": ref, "request_key": f"key-{ref}"}
        due = (when + timedelta(hours=hours)).isoformat()
        self.add(when, prepared(case, details={"rag": rag, "due": due}, **fields))
        self.add(when, sent(case, **fields))
        return ref

    def follow_up(self, when: datetime, kind: EventKind, ref: str, partner: str) -> None:
        self.add(when, Event(kind, ref.rsplit("-", 1)[0], request_ref=ref, partner=partner))


def test_each_request_is_answered_in_time_late_bounced_overdue_or_not_due() -> None:
    """Per agency: requests, answered, in time of those due, overdue now, bounced, chasers."""
    log = Log()
    a = log.request("C-1", "police", MON)
    b = log.request("C-2", "police", MON)
    c = log.request("C-3", "police", MON)
    d = log.request("C-4", "health", MON)
    e = log.request("C-5", "health", NOW - timedelta(hours=1))  # due tomorrow
    log.follow_up(MON + timedelta(hours=5), EventKind.REPLIED, a, "police")  # in time
    log.follow_up(MON + timedelta(hours=30), EventKind.CHASED, b, "police")
    log.follow_up(MON + timedelta(hours=50), EventKind.REPLIED, b, "police")  # late
    log.follow_up(MON + timedelta(hours=30), EventKind.CHASED, c, "police")  # overdue now
    log.follow_up(MON + timedelta(hours=1), EventKind.BOUNCED, d, "health")
    log.follow_up(MON + timedelta(hours=2), EventKind.AUTO_REPLY, e, "health")  # never counts
    result = timeliness(log.events, timescales=ELAPSED, now=NOW)

    police = result.by_partner["police"]
    assert (police.requests, police.answered, police.in_time, police.decided) == (3, 2, 1, 3)
    assert police.categories == {
        "in_time": 1,
        "late": 1,
        "bounced": 0,
        "overdue": 1,
        "not_due": 0,
        "other": 0,
    }
    assert (police.overdue, police.bounced, police.chasers) == (1, 0, 2)
    assert police.in_time_rate == pytest.approx(1 / 3)
    assert sorted(police.hours) == [5.0, 50.0]
    health = result.by_partner["health"]
    assert (health.requests, health.answered, health.bounced, health.overdue) == (2, 0, 1, 0)
    assert health.categories["not_due"] == 1
    assert health.in_time_rate == 0.0  # the bounced one was due; the other is not yet
    assert list(result.by_month) == ["2026-03", "2026-04"]
    assert result.totals.requests == 5


def test_an_answer_counts_from_when_it_was_received_not_when_it_was_recorded() -> None:
    """An answer that came in time but was fetched or typed in days later is in time, and
    its hours run to when it came; one dated before the request (a sender's clock behind)
    counts from the send, never negative."""
    log = Log()
    a = log.request("C-1", "police", MON)
    b = log.request("C-2", "police", MON)

    def answer(recorded: datetime, received: datetime, ref: str) -> None:
        details = {"received_at": received.isoformat(), "channel": "phone"}
        event = Event(
            EventKind.REPLIED,
            ref.rsplit("-", 1)[0],
            request_ref=ref,
            partner="police",
            details=details,
        )
        log.add(recorded, event)

    answer(MON + timedelta(days=5), MON + timedelta(hours=20), a)  # typed in days later
    answer(MON + timedelta(hours=3), MON - timedelta(hours=2), b)  # dated before the send
    police = timeliness(log.events, timescales=ELAPSED, now=NOW).by_partner["police"]
    assert police.categories["in_time"] == 2 and police.categories["late"] == 0
    assert sorted(police.hours) == [0.0, 20.0]


def test_median_and_90th_percentile_in_working_hours_where_configured() -> None:
    """AMBER counted in working hours: an answer on Tuesday 10:00 to a request sent on
    Monday 16:00 took 2 working hours, not 18."""
    log = Log()
    refs = [log.request(f"C-{i}", "police", MON + timedelta(hours=7)) for i in range(10)]
    for index, ref in enumerate(refs):
        # Answered Tuesday 10:00, 11:00, … 19:00: 1 working hour on Monday, then 1 to 8 on
        # Tuesday (the working day ends at 17:00, so 18:00 and 19:00 add nothing).
        answer = MON + timedelta(days=1, hours=1) + timedelta(hours=index)
        log.follow_up(answer, EventKind.REPLIED, ref, "police")
    working = timeliness(log.events, timescales=WORKING_AMBER, now=NOW).totals
    elapsed = timeliness(log.events, timescales=ELAPSED, now=NOW).totals
    assert working.hours == pytest.approx([2, 3, 4, 5, 6, 7, 8, 9, 9, 9])
    assert (working.median_hours, working.p90_hours) == pytest.approx((6.5, 9.0))
    assert elapsed.hours == pytest.approx([18 + i for i in range(10)])
    assert (elapsed.median_hours, elapsed.p90_hours) == pytest.approx((22.5, 26.0))


def test_a_resend_counts_once_and_a_reply_to_the_first_answers_it() -> None:
    """A request sent again counts once, from its latest sending, keeping the earlier
    bounce; a reply quoting the first reference answers the resend."""
    log = Log()
    first = log.request("C-1", "police", MON)
    log.follow_up(MON + timedelta(hours=1), EventKind.BOUNCED, first, "police")
    key = {"partner": "police", "request_key": f"key-{first}"}
    again = first + "-2"
    due = (MON + timedelta(hours=26)).isoformat()
    later = MON + timedelta(hours=2)
    log.add(later, prepared("C-1", request_ref=again, details={"rag": "amber", "due": due}, **key))
    log.add(later, sent("C-1", request_ref=again, **key))
    log.follow_up(MON + timedelta(hours=6), EventKind.REPLIED, first, "police")
    totals = timeliness(log.events, timescales=ELAPSED, now=NOW).totals
    assert (totals.requests, totals.answered, totals.in_time, totals.bounced) == (1, 1, 1, 1)
    assert totals.hours == [4.0]


def test_only_requests_sent_in_the_period_count() -> None:
    """A request sent before ``since`` is not counted, even if answered in the period."""
    log = Log()
    before = log.request("C-0", "police", MON - timedelta(days=3))
    log.request("C-1", "police", MON + timedelta(days=1))
    log.follow_up(MON + timedelta(hours=30), EventKind.REPLIED, before, "police")
    result = timeliness(log.events, timescales=ELAPSED, now=NOW, since=MON)
    assert (result.totals.requests, result.totals.answered) == (1, 0)


def test_report_counts_answers_recorded_after_the_period(store: EventStore) -> None:
    """build_report reads answers recorded after ``until`` for requests sent before it,
    and the report shows the agency's timeliness by name."""
    now = datetime.now(UTC)
    due = (now + timedelta(hours=24)).isoformat()
    fields = {"request_ref": "C-1-police", "request_key": "key-C-1-police"}
    store.append_many([prepared("C-1", details={"rag": "amber", "due": due}, **fields)])
    store.append(sent("C-1", **fields))
    end = datetime.now(UTC)
    store.append(Event(EventKind.REPLIED, "C-1", partner="police", **fields))  # type: ignore[arg-type]
    data = build_report(store, until=end, partner_names={"police": "Eastshire Police"})
    assert data.timeliness is not None
    police = data.timeliness.by_partner["police"]
    assert (police.requests, police.answered, police.in_time) == (1, 1, 1)
    page = render_html(data)
    assert 'id="timeliness-chart"' in page
    assert "Eastshire Police: 1 of 1 (100%) answered within the timescale" in page
    assert "100% in time (1 of 1 due)" in page
    assert not re.search(r"\b(src|href)\s*=", page)  # still self-contained
    assert "<script" not in page and "<link" not in page


def test_working_hours_skip_bank_holidays_as_the_deadline_does() -> None:
    """Sent Thursday 2 April 2026 16:00 (London), answered Tuesday 7 April 10:00: Good
    Friday and Easter Monday are bank holidays in England, so 2 working hours, and the
    answer came before the 24-working-hour deadline."""
    scales = Timescales(**{**WORKING_AMBER.__dict__, "holidays_region": "ENG"})
    london = ZoneInfo("Europe/London")
    sent_at = datetime(2026, 4, 2, 16, 0, tzinfo=london)
    log = Log()
    ref = log.request("C-1", "police", sent_at, hours=0)
    log.events[0] = StoredEvent(
        1,
        sent_at,
        prepared(
            "C-1",
            partner="police",
            request_ref=ref,
            request_key=f"key-{ref}",
            details={"rag": "amber", "due": scales.due(Rag.AMBER, sent_at).isoformat()},
        ),
        prev_hash="0" * 64,
        hash="1" * 64,
    )
    log.follow_up(datetime(2026, 4, 7, 10, 0, tzinfo=london), EventKind.REPLIED, ref, "police")
    totals = timeliness(log.events, timescales=scales, now=NOW).totals
    assert totals.hours == pytest.approx([2.0])
    assert totals.in_time == 1


def test_without_recorded_answers_the_report_says_so(store: EventStore) -> None:
    """A log with no reply, bounce or reminder does not claim every request unanswered: the
    timeliness section says answers are not recorded and how to record them."""
    due = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    fields = {"request_ref": "C-1-police", "request_key": "key-C-1-police"}
    store.append_many([prepared("C-1", details={"rag": "red", "due": due}, **fields)])
    store.append(sent("C-1", **fields))
    data = build_report(store)
    assert data.timeliness is None
    page = render_html(data)
    assert 'id="timeliness-none"' in page
    assert "records no answers from partners for this\nperiod" in page
    assert 'id="timeliness-chart"' not in page


_KINDS = [EventKind.PREPARED, EventKind.SENT, EventKind.FAILED, EventKind.UNCONFIRMED]
_KINDS += [EventKind.REPLIED, EventKind.BOUNCED, EventKind.CHASED, EventKind.AUTO_REPLY]


@settings(max_examples=40, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.integers(0, 3), st.sampled_from(_KINDS), st.integers(0, 3), st.integers(1, 30)
        ),
        max_size=30,
    ),
    since_hours=st.integers(0, 400),
)
def test_the_cheap_feed_counts_what_the_whole_fold_counts(
    steps: list[tuple[int, EventKind, int, int]], since_hours: int
) -> None:
    """The report's cheap feed (every event of its read, untracked kinds skipped) gives the
    same timeliness as folding every event, whatever the log holds, before ``since`` too."""
    from mash_requests.audit.timeliness import AnswerFold, count

    log = Log()
    when = MON
    refs: dict[int, list[str]] = {}
    for key_no, kind, pick, gap in steps:
        when += timedelta(hours=gap)
        key = f"key-{key_no}"
        if kind is EventKind.PREPARED or key_no not in refs:
            ref = f"C-{key_no}-police-{len(refs.get(key_no, []))}"
            refs.setdefault(key_no, []).append(ref)
            due = (when + timedelta(hours=24)).isoformat()
            fields = {"partner": "police", "request_ref": ref, "request_key": key}
            log.add(when, prepared(f"C-{key_no}", details={"rag": "amber", "due": due}, **fields))
            continue
        own = (
            refs[key_no][-1]
            if kind is not EventKind.REPLIED
            else refs[key_no][pick % len(refs[key_no])]
        )
        log.add(
            when,
            Event(kind, f"C-{key_no}", request_ref=own, partner="police", request_key=key),
        )
    since = MON + timedelta(hours=since_hours)
    whole = AnswerFold(since)
    cheap = AnswerFold(since)
    for stored in log.events:
        whole.apply(stored)
        cheap.feed(stored)
    assert count(cheap, ELAPSED, NOW) == count(whole, ELAPSED, NOW)


def _moment() -> datetime:
    """Now, a little apart from the events appended just before and just after."""
    pytime.sleep(0.002)
    moment = datetime.now(UTC)
    pytime.sleep(0.002)
    return moment


def _request(store: EventStore, case: str, partner: str = "police", ref: str = "") -> str:
    """A request prepared and sent now (due in a day); its reference."""
    ref = ref or f"{case}-{partner}"
    fields = {"partner": partner, "request_ref": ref, "request_key": f"key-{case}-{partner}"}
    due = (datetime.now(UTC) + timedelta(hours=24)).isoformat()
    store.append_many([prepared(case, details={"rag": "amber", "due": due}, **fields)])
    store.append(sent(case, **fields))
    return ref


def _follow_up(store: EventStore, kind: EventKind, ref: str, **details: str) -> None:
    case = ref.split("-police")[0]
    store.append(Event(kind, case, request_ref=ref, partner="police", details=details))


def test_follow_ups_after_the_period_count_for_requests_sent_in_it(store: EventStore) -> None:
    """A reply, a bounce and a reminder recorded after the period count for the requests
    sent in it, a reply quoting a resent request's first reference too; the requests sent
    after the period do not count, nor do their answers change anything."""
    since = _moment()
    answered = _request(store, "C-1")
    flagged = _request(store, "C-2")
    first = _request(store, "C-3")
    again = _request(store, "C-3", ref="C-3-police-2")  # resent: a new reference, same key
    until = _moment()
    _follow_up(store, EventKind.REPLIED, answered)
    _follow_up(store, EventKind.BOUNCED, flagged)
    _follow_up(store, EventKind.CHASED, flagged, outcome="sent")
    _follow_up(store, EventKind.REPLIED, first)  # answers the resend
    later = _request(store, "C-4")
    _follow_up(store, EventKind.REPLIED, later)
    data = build_report(store, since=since, until=until)
    assert data.timeliness is not None
    totals = data.timeliness.totals
    assert (totals.requests, totals.answered, totals.in_time) == (3, 2, 2)
    assert (totals.bounced, totals.chasers, totals.categories["bounced"]) == (1, 1, 1)
    assert again != first
    # What folding every event of the log gives (nothing after the period resends here).
    whole = timeliness(
        store.events(),
        timescales=Timescales.defaults(),
        now=data.generated_at,
        since=since,
        until=until,
    )
    assert data.timeliness == whole


def test_a_request_sent_before_the_period_answered_in_it_does_not_count(
    store: EventStore,
) -> None:
    """Timeliness is of the requests sent in the period: one sent before it and answered in
    it is not counted (its answer neither), whether answered in the period or after it."""
    before = _request(store, "C-1")
    also_before = _request(store, "C-2")
    since = _moment()
    _follow_up(store, EventKind.REPLIED, before)  # answered in the period
    in_period = _request(store, "C-3")
    until = _moment()
    _follow_up(store, EventKind.REPLIED, also_before)  # answered after the period
    data = build_report(store, since=since, until=until)
    assert data.timeliness is not None
    totals = data.timeliness.totals
    assert (totals.requests, totals.answered, totals.hours) == (1, 0, [])
    assert totals.categories["not_due"] == 1
    assert list(data.timeliness.by_partner) == ["police"]
    assert in_period == "C-3-police"


def test_answers_only_after_the_period_are_answers_recorded(store: EventStore) -> None:
    """A log whose only answer came after the period still records answers: the report
    shows timeliness (not "answers not recorded") and counts that answer."""
    since = _moment()
    ref = _request(store, "C-1")
    until = _moment()
    _follow_up(store, EventKind.REPLIED, ref)
    data = build_report(store, since=since, until=until)
    assert data.timeliness is not None
    assert (data.timeliness.totals.requests, data.timeliness.totals.answered) == (1, 1)


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.integers(0, 3), st.sampled_from(_KINDS), st.integers(0, 4), st.integers(1, 30)
        ),
        max_size=40,
    ),
    until_hours=st.integers(0, 600),
)
@example(  # key 0 prepares R-0 then R-1; key 1 prepares R-1 too and sends it; after the
    # period a reply to R-0 closes key 0, dropping R-1, so the reply to R-1 answers nothing
    steps=[
        (0, EventKind.PREPARED, 0, 1),
        (0, EventKind.PREPARED, 1, 1),
        (1, EventKind.PREPARED, 1, 1),
        (1, EventKind.SENT, 1, 1),
        (0, EventKind.REPLIED, 0, 20),
        (1, EventKind.REPLIED, 1, 1),
    ],
    until_hours=10,
)
def test_only_the_awaited_references_later_events_matter(
    steps: list[tuple[int, EventKind, int, int]], until_hours: int
) -> None:
    """Applying after the period only the events of the references the fold still awaits
    gives the figures that applying every reply, bounce and reminder after it gives, also
    when two keys prepared the same reference (references are short and may repeat)."""
    from mash_requests.audit.timeliness import AnswerFold, count

    log = Log()
    when = MON
    pool = [f"R-{n}" for n in range(5)]  # few references, shared between keys at random
    for key_no, kind, pick, gap in steps:
        when += timedelta(hours=gap)
        ref = pool[pick]
        fields = {"partner": "police", "request_ref": ref, "request_key": f"key-{key_no}"}
        if kind is EventKind.PREPARED:
            due = (when + timedelta(hours=24)).isoformat()
            log.add(when, prepared(f"C-{key_no}", details={"rag": "amber", "due": due}, **fields))
        else:
            log.add(when, Event(kind, f"C-{key_no}", **fields))  # type: ignore[arg-type]
    until = MON + timedelta(hours=until_hours)
    period = [stored for stored in log.events if stored.recorded_at < until]
    later = [
        stored
        for stored in log.events[len(period) :]
        if stored.event.kind in (EventKind.REPLIED, EventKind.BOUNCED, EventKind.CHASED)
    ]
    every, awaited = AnswerFold(None, until), AnswerFold(None, until)
    for stored in period:
        every.feed(stored)
        awaited.feed(stored)
    refs = awaited.awaited_refs()
    for stored in later:
        every.apply(stored)
        if stored.event.request_ref in refs:
            awaited.apply(stored)
    assert count(awaited, ELAPSED, NOW) == count(every, ELAPSED, NOW)


class _EventsOnly:
    """A store offering only ``events`` (a third-party store): the report reads it whole."""

    def __init__(self, store: EventStore) -> None:
        self.events = store.events


def test_a_store_without_narrow_reads_gives_the_same_figures(store: EventStore) -> None:
    """The report's figures are the same whether the store looks the awaited references up
    itself or the report reads every later reply, bounce and reminder through ``events``."""
    from mash_requests.audit.report import NarrowReader
    from mash_requests.audit.verify import verify_chain

    since = _moment()
    answered = _request(store, "C-1")
    flagged = _request(store, "C-2")
    _request(store, "C-3")
    until = _moment()
    _follow_up(store, EventKind.REPLIED, answered)
    _follow_up(store, EventKind.CHASED, flagged, outcome="sent")
    _follow_up(store, EventKind.REPLIED, _request(store, "C-4"))
    verification = verify_chain(store)  # type: ignore[arg-type]
    plain = _EventsOnly(store)
    assert isinstance(store, NarrowReader) and not isinstance(plain, NarrowReader)
    narrow = build_report(store, since=since, until=until, verification=verification)
    whole = build_report(plain, since=since, until=until, verification=verification)  # type: ignore[arg-type]
    assert narrow.timeliness is not None and whole.timeliness is not None
    totals = narrow.timeliness.totals
    assert (totals.requests, totals.answered, totals.chasers) == (3, 1, 1)
    assert narrow.timeliness == whole.timeliness  # nothing falls due between the two
