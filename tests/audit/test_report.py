"""The evidence report: its figures, its chart, and an HTML file that stands on its own."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from audit_helpers import RawLog, prepared, sent

from mash_requests.audit import Event, EventKind, EventStore, StoredEvent
from mash_requests.audit.report import (
    ReportData,
    build_report,
    render_html,
    tally,
    write_report,
)
from mash_requests.audit.verify import verify_chain

T0 = datetime(2026, 3, 30, 9, 0, tzinfo=UTC)


def at(seq: int, when: datetime, event: Event) -> StoredEvent:
    """An event as a store would hand it back, recorded at ``when``."""
    return StoredEvent(seq=seq, recorded_at=when, event=event, prev_hash="0" * 64, hash="1" * 64)


def request(case: str, partner: str, when: datetime, **sent_fields: object) -> list[Event]:
    """prepared at ``when``; sent 30 s later (returned as pairs with their times)."""
    return [
        prepared(case, partner=partner, request_ref=f"{case}-{partner}"),
        sent(case, partner=partner, request_ref=f"{case}-{partner}", **sent_fields),
    ]


def timeline(*items: tuple[datetime, Event]) -> list[StoredEvent]:
    return [at(i + 1, when, event) for i, (when, event) in enumerate(items)]


def sample() -> list[StoredEvent]:
    """Sends in March and May, refusals in April, for police and health: every kind of figure."""
    p1, s1 = request("C-1", "police", T0)
    p2, s2 = request("C-2", "health", T0, form_sha256=None)
    p3, s3 = request("C-3", "police", T0)
    return timeline(
        (T0, p1),
        (T0 + timedelta(seconds=30), s1),
        (T0, p2),
        (T0 + timedelta(seconds=90), s2),
        (
            T0 + timedelta(days=2),
            Event(EventKind.REJECTED, "C-9", partner="police", reason="wrong_case"),
        ),
        (
            T0 + timedelta(days=2),
            Event(EventKind.REJECTED, "C-8", partner="police", reason="wrong_case"),
        ),
        (T0 + timedelta(days=2), Event(EventKind.REJECTED, "C-7", reason="form_missing")),
        (T0 + timedelta(days=40), p3),
        (
            T0 + timedelta(days=40, seconds=1),
            Event(
                EventKind.ATTEMPT_FAILED,
                "C-3",
                partner="police",
                request_ref="C-3-police",
                wait_seconds=2.0,
            ),
        ),
        (
            T0 + timedelta(days=41),
            Event(EventKind.ATTEMPT_FAILED, "C-4", partner="health", request_ref="C-4-health"),
        ),
        (T0 + timedelta(days=40, seconds=10), s3),
        (
            T0 + timedelta(days=41),
            Event(EventKind.FAILED, "C-4", partner="health", request_ref="C-4-health"),
        ),
        (
            T0 + timedelta(days=41),
            Event(EventKind.UNCONFIRMED, "C-5", partner="health", request_ref="C-5-health"),
        ),
        (
            T0 + timedelta(days=42),
            Event(
                EventKind.RECONCILED,
                "C-5",
                partner="health",
                request_ref="C-5-health",
                form_sha256="cd" * 32,
                details={"outcome": "sent"},
            ),
        ),
    )


# -- figures ---------------------------------------------------------------------------------


def test_totals_count_each_kind() -> None:
    """Sent (with reconciled-as-sent), with form, refused, failed, unconfirmed, retries.

    A failed attempt with no wait (the last try) is not a retry.
    """
    totals = tally(sample()).totals
    assert (totals.sent, totals.with_form) == (4, 3)
    assert (totals.refused, totals.failed, totals.unconfirmed, totals.retries) == (3, 1, 1, 1)
    assert totals.refusal_reasons == {"wrong_case": 2, "form_missing": 1}
    assert totals.attachment_rate_text == "75.0% (3 of 4)"


def test_median_prepared_to_sent() -> None:
    """The median runs over the sent requests' prepared -> sent times."""
    totals = tally(sample()).totals
    assert sorted(totals.durations) == [10.0, 30.0, 90.0]
    assert totals.median_seconds == 30.0


def test_groups_by_partner_and_month() -> None:
    """Figures split per partner, per month, and per partner-month."""
    result = tally(sample())
    assert list(result.by_partner) == ["(no partner)", "health", "police"]
    assert (result.by_partner["police"].sent, result.by_partner["police"].refused) == (2, 2)
    assert result.by_partner["health"].attachment_rate == 0.5
    assert list(result.by_month) == ["2026-03", "2026-04", "2026-05"]
    assert result.by_month["2026-05"].sent == 2  # C-3 sent, C-5 reconciled as sent
    assert result.by_partner_month[("health", "2026-05")].sent == 1


def test_months_fill_gaps() -> None:
    """The chart's months run from first to last without gaps, across a year end."""
    events = timeline(
        (datetime(2025, 11, 3, tzinfo=UTC), sent("C-1")),
        (datetime(2026, 2, 3, tzinfo=UTC), sent("C-2")),
    )
    assert tally(events).months == ["2025-11", "2025-12", "2026-01", "2026-02"]


def test_events_before_since_only_supply_prepared_times() -> None:
    """A request prepared before the period and sent in it counts once, with its duration."""
    events = timeline(
        (T0 - timedelta(hours=1), prepared("C-1")),
        (T0 - timedelta(minutes=30), sent("C-0", request_ref="C-0-police")),
        (T0 + timedelta(minutes=5), sent("C-1")),
    )
    totals = tally(events, since=T0).totals
    assert totals.sent == 1
    assert totals.durations == [3900.0]


# -- the document ----------------------------------------------------------------------------


def data_for(store: EventStore, events: list[StoredEvent]) -> ReportData:
    return ReportData(
        title="Testbury MASH",
        since=None,
        until=None,
        generated_at=T0,
        location="test",
        verification=verify_chain(store),
        tally=tally(events),
    )


def test_html_is_self_contained(store: EventStore) -> None:
    """No external resource: no src/href attributes, no stylesheet links, no scripts."""
    page = render_html(data_for(store, sample()))
    assert not re.search(r"\b(src|href)\s*=", page)
    assert "<link" not in page
    assert "<script" not in page
    assert "<svg" in page
    assert "@media print" in page


def test_unconfirmed_sends_are_not_said_to_need_checking_still(store: EventStore) -> None:
    """The count is of sends unconfirmed when made, which a person may have checked or sent
    again since: the page says so, and where the ones still unconfirmed are listed."""
    page = render_html(data_for(store, sample()))
    assert "need checking" not in page
    assert "unconfirmed when sent" in page
    assert (
        "audit query --outcome\nunconfirmed" in page or "audit query --outcome unconfirmed" in page
    )


def test_everything_from_the_log_is_escaped(store: EventStore) -> None:
    """Partner names and reasons from the log are HTML-escaped, in tables and the chart."""
    hostile = '<script>alert("x")</script>'
    events = timeline(
        (T0, sent("C-1", partner=hostile)),
        (T0, Event(EventKind.REJECTED, "C-2", partner=hostile, reason="<img onerror=x>")),
    )
    page = render_html(data_for(store, events))
    assert "<script" not in page
    assert "<img" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page


def test_chart_has_a_bar_per_partner_month_and_the_rate_line(store: EventStore) -> None:
    """The SVG stacks one bar per partner-month with sends, and plots the monthly rate."""
    page = render_html(data_for(store, sample()))
    assert page.count('class="bar"') == 4  # police Mar, health Mar, police May, health May
    assert page.count('class="rate-dot"') == 2  # March and May; April had no sends
    assert 'class="rate-line"' in page


def test_empty_period_says_so(store: EventStore) -> None:
    """A period with no events shows that plainly instead of an empty chart."""
    page = render_html(data_for(store, []))
    assert "No requests were sent in this period." in page
    assert "No events in this period." in page


def test_build_report_includes_verification_and_head(store: EventStore) -> None:
    """The report states the chain is intact and gives the head hash."""
    store.append_many([prepared(), sent()])
    head = store.append(sent("C-2"))
    data = build_report(store)
    page = render_html(data)
    assert data.verification.ok
    assert "Intact." in page
    assert head.hash in page
    assert data.totals.sent == 2


def test_build_report_on_broken_log_says_broken(store: EventStore, raw: RawLog) -> None:
    """A broken chain is stated at the top, with where and how."""
    store.append_many([prepared(), sent(), sent("C-2")])
    raw.set_column(2, "partner", "health")
    page = render_html(build_report(store))
    assert "BROKEN at event 2 (changed)" in page


def test_build_report_verified_by_workers_says_the_same(
    store: EventStore, raw: RawLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When worker processes verify the log (as for large logs) while the report tallies, the
    report states the same result, break included."""
    from mash_requests.audit import _parallel

    store.append_many([prepared(), sent(), prepared("C-2"), sent("C-2"), sent("C-3")])
    raw.set_column(4, "partner", "health")
    expected = verify_chain(store, workers=1, check_database=False)
    monkeypatch.setattr(_parallel, "PARALLEL_MIN_EVENTS", 0)
    monkeypatch.setattr(_parallel, "default_workers", lambda: 2)
    data = build_report(store)
    assert data.verification == expected
    assert "BROKEN at event 4 (changed)" in render_html(data)


def test_build_report_can_reuse_a_verification(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given the result of verify_chain, build_report does not verify again and states it."""
    from mash_requests.audit import report

    store.append_many([prepared(), sent()])
    result = verify_chain(store)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("verified again")

    monkeypatch.setattr(report, "start_verification", refuse)
    data = build_report(store, verification=result)
    assert data.verification is result
    assert f"All {result.count:,} events in the log verify" in render_html(data)


def test_build_report_keeps_to_the_period(store: EventStore) -> None:
    """Only events recorded in [since, until) are counted."""
    store.append_many([prepared(), sent()])
    future = datetime.now(UTC) + timedelta(days=1)
    assert build_report(store, since=future).totals.sent == 0
    assert build_report(store, until=future).totals.sent == 1


def test_write_report_is_readable_by_others(store: EventStore, tmp_path: Path) -> None:
    """The report is written whole with ordinary permissions (not a temp file's 0600)."""
    path = tmp_path / "out" / "report.html"
    write_report(build_report(store), path)
    assert path.read_text(encoding="utf-8").endswith("</html>\n")
    assert path.stat().st_mode & 0o044 == 0o044 or pytest.skip("restrictive umask")
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]


# -- what the report says, for people --------------------------------------------------------


def named(store: EventStore, events: list[StoredEvent], **fields: object) -> ReportData:
    data = data_for(store, events)
    values: dict[str, object] = {
        "partner_names": {"police": "Eastshire Police", "health": "Eastshire ICB"},
        "marking": "OFFICIAL-SENSITIVE",
        **fields,
    }
    return dataclasses.replace(data, **values)  # type: ignore[arg-type]


def test_partners_are_shown_by_name(store: EventStore) -> None:
    """Tables, the chart's legend and its bar titles name partners from the directory; a
    key no longer in the directory is shown as it is."""
    events = [*sample(), at(99, T0, sent("C-9", partner="housing", request_ref="C-9-h"))]
    page = render_html(named(store, events))
    assert '<th scope="row">Eastshire Police</th>' in page
    assert '<th scope="row">Eastshire ICB</th>' in page
    assert '<th scope="row">housing</th>' in page
    assert 'class="legend">Eastshire Police</text>' in page
    assert "Mar 2026, Eastshire ICB: 1 sent" in page
    assert '<th scope="row">police</th>' not in page


def test_no_empty_no_partner_legend_entry(store: EventStore) -> None:
    """Refusals that named no partner have a table row in words, but no colour and no
    legend entry in the chart, which shows requests sent."""
    page = render_html(named(store, sample()))
    legend = re.findall(r'class="legend">([^<]*)</text>', page)
    assert legend == ["Eastshire ICB", "Eastshire Police", "form attached (%)"]
    assert '<th scope="row">No partner named (case refused as a whole)</th>' in page
    assert "(no partner)" not in page


def test_reasons_read_in_plain_english_beside_their_codes(store: EventStore) -> None:
    """Each refusal reason shows its words and its code: "another case's form" for
    wrong_case."""
    page = render_html(named(store, sample()))
    assert "another case&#39;s form <code>wrong_case</code>&nbsp;×2" in page


def test_duplicates_and_concurrent_runs_are_not_refusals(store: EventStore) -> None:
    """A refusal because the request was already sent, or another run was sending it, is
    counted as "not sent again", apart from genuine refusals."""
    events = timeline(
        (T0, Event(EventKind.REJECTED, "C-1", partner="police", reason="duplicate")),
        (T0, Event(EventKind.REJECTED, "C-1", partner="police", reason="in_flight_elsewhere")),
        (T0, Event(EventKind.REJECTED, "C-2", partner="police", reason="wrong_case")),
    )
    result = tally(events)
    police = result.by_partner["police"]
    assert (police.refused, police.held) == (1, 2)
    assert police.refusal_reasons == {"wrong_case": 1}
    assert police.held_reasons == {"duplicate": 1, "in_flight_elsewhere": 1}
    page = render_html(named(store, events))
    assert "not sent again: already sent; not sent twice <code>duplicate</code>" in page


def test_the_marking_is_at_the_top_and_the_bottom(store: EventStore) -> None:
    """The protective marking is the first and the last thing in the report's body."""
    page = render_html(named(store, sample(), marking="OFFICIAL-SENSITIVE PERSONAL"))
    body = page[page.index("<body>") + len("<body>") : page.index("</body>")].strip()
    assert body.startswith('<p class="marking" id="marking-top">OFFICIAL-SENSITIVE PERSONAL</p>')
    assert body.endswith('<p class="marking" id="marking-bottom">OFFICIAL-SENSITIVE PERSONAL</p>')


#: Codes in the source that are never a refusal's reason: reconciliations ("interrupted",
#: "not_found"), a failure taken over by another run, unmatched replies.
NOT_REFUSAL_CODES = {
    "interrupted",
    "not_found",
    "taken over by another run",
    "unknown_request",
    "no_reference",
    "accepted",
}


def _codes_the_product_records() -> set[str]:
    import mash_requests
    from mash_requests.referral_form import Reason as FormReason

    package = Path(mash_requests.__file__).parent
    codes = {str(reason) for reason in FormReason}
    for source in package.rglob("*.py"):
        text = source.read_text(encoding="utf-8")
        codes.update(re.findall(r'\breason="([^"]+)"', text))
        codes.update(re.findall(r'default_reason = "([^"]+)"', text))
        codes.update(re.findall(r'"(in_flight_elsewhere|duplicate)"', text))
    return codes - NOT_REFUSAL_CODES


def test_every_refusal_code_has_words() -> None:
    """Every reason code found in the product's source (form verdicts, error defaults,
    explicit codes) has plain English in the report: a new code without words fails."""
    from mash_requests.audit.report import REASON_TEXT

    codes = _codes_the_product_records()
    assert {"wrong_case", "no_form", "duplicate", "invalid_case"} <= codes
    assert sorted(codes - set(REASON_TEXT)) == []
    assert REASON_TEXT["wrong_case"] == "another case's form"
