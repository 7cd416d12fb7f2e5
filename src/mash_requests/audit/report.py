"""The evidence report: one self-contained HTML file for steering groups and auditors.

It answers the scrutiny recommendation — *"Ensure that the MASH referral form is attached to
requests for information to all partner agencies"* — with figures from the dispatch log:
per partner agency and per month, the requests sent, the share sent with a verified referral
form attached (sent events carrying the form's SHA-256), refusals with their reasons,
failures, retries and the median time from prepared to sent; a chart; and the result of
verifying the hash chain, with its head hash so a later reader can check the same log.

This module computes the figures and the chart's geometry; the words and the look are in
the Jinja template ``report.html.j2``, which a council can override like the request
templates (``[mash] templates``) to brand and word it. No external assets: inline CSS and an
inline SVG chart, so the file can be mailed, archived and printed to PDF as it is. Every
value is HTML-escaped by the template engine (autoescape). Times are UTC.
"""

from __future__ import annotations

import dataclasses
import functools
import statistics
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from mash_requests.audit._files import atomic_write_text
from mash_requests.audit.chain import format_time
from mash_requests.audit.events import (
    FOLLOW_UP_KINDS,
    EventFilter,
    EventKind,
    EventStore,
    StoredEvent,
)
from mash_requests.audit.verify import VerifyResult, start_verification
from mash_requests.errors import LogError

if TYPE_CHECKING:
    from mash_requests.audit.timeliness import AnswerFold, TimelinessTally
    from mash_requests.deadlines import Timescales
    from mash_requests.rendering import Renderer

#: How far before the period the report looks for ``prepared`` events, so a request
#: prepared just before the period and sent in it still has a prepared -> sent time.
PREPARED_LOOKBACK = timedelta(days=7)

NO_PARTNER = "(no partner)"
#: How the report names the group of refusals that named no partner (a case refused whole).
NO_PARTNER_LABEL = "No partner named (case refused as a whole)"

#: Refusal codes that are not refusals of a request: the request was already sent, or
#: another run was sending it at that moment. Nothing was lost; the report counts them
#: apart ("not sent again") so they never inflate the refusals.
HELD_REASONS = frozenset({"duplicate", "in_flight_elsewhere"})

#: Plain English beside each refusal code the product records (a ``rejected`` event's
#: ``reason``): the referral-form check's verdicts, then the other refusals.
REASON_TEXT: dict[str, str] = {
    # The referral-form check (mash_requests.referral_form.Reason)
    "wrong_case": "another case's form",
    "case_ref_missing": "the form does not show the case reference",
    "not_pdf": "the form is not a PDF",
    "unreadable": "the form could not be read",
    "form_unreadable": "the form could not be read",
    "encrypted": "the form is password-protected",
    "no_pages": "the form has no pages",
    "active_content": "the form contains scripts or actions",
    "embedded_file": "the form carries an embedded file",
    "too_large": "the form is larger than allowed",
    "no_form": "no referral form",
    # The case, the partners, the templates
    "invalid_case": "the case file is not valid",
    "invalid_input": "invalid input",
    "usage": "asked in a way that cannot be followed",
    "template_error": "a request template is broken",
    "recipient_refused": "an address the partner directory does not allow",
    "reply_to_refused": "the worker's reply address is not allowed",
    "unknown_partner": "a partner not in the directory",
    "no_partners": "no partner agencies named",
    "no_directory": "no partner directory configured",
    # Batch files
    "batch_invalid": "the batch file has invalid rows",
    "batch_unreadable": "the batch file could not be read",
    "encoding": "the batch file is not in the expected encoding",
    # Reminders (chase)
    "not_chaseable": "a request that cannot be chased (unknown, unsent, answered or bounced)",
    "form_for_several_cases": "one form given for reminders of several cases",
    # Not refusals of a request (HELD_REASONS)
    "duplicate": "already sent; not sent twice",
    "in_flight_elsewhere": "being sent by another run at the time",
    "unspecified": "no reason recorded",
}

K = TypeVar("K")

# Okabe–Ito: distinguishable with the common colour-vision deficiencies, and in greyscale print.
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#F0E442",
    "#000000",
)


@dataclass
class Figures:
    """The counts for one group of events (all, a partner, a month, or a partner-month)."""

    #: Requests sent: ``sent`` events, plus reconciliations that found the message sent.
    sent: int = 0
    #: Of those, how many carried the referral form's SHA-256 (it was checked and attached).
    with_form: int = 0
    #: Genuine refusals: requests stopped before sending because something was wrong.
    refused: int = 0
    refusal_reasons: Counter[str] = field(default_factory=Counter)
    #: Refusals that refused nothing: the request was already sent, or another run was
    #: sending it (:data:`HELD_REASONS`). Counted apart from ``refused``.
    held: int = 0
    held_reasons: Counter[str] = field(default_factory=Counter)
    failed: int = 0
    unconfirmed: int = 0
    #: Retries: ``attempt_failed`` events with a wait, i.e. followed by another try.
    retries: int = 0
    #: Seconds from the request's first ``prepared`` to its ``sent``.
    durations: list[float] = field(default_factory=list)

    @property
    def attachment_rate(self) -> float | None:
        return self.with_form / self.sent if self.sent else None

    @property
    def attachment_rate_text(self) -> str:
        rate = self.attachment_rate
        if rate is None:
            return "n/a"
        return f"{_percent(rate)} ({self.with_form:,} of {self.sent:,})"

    @property
    def median_seconds(self) -> float | None:
        return statistics.median(self.durations) if self.durations else None


@dataclass
class ReportData:
    """Everything the report shows, computed once."""

    title: str
    since: datetime | None
    until: datetime | None
    generated_at: datetime
    location: str
    verification: VerifyResult
    tally: Tally
    #: The protective marking, shown at the top and bottom (``[mash] marking``).
    marking: str = "OFFICIAL-SENSITIVE"
    mash_name: str = "MASH"
    #: Partner key -> name from the partner directory; a key not there is shown as it is.
    partner_names: Mapping[str, str] = field(default_factory=dict)
    #: How long agencies took to answer the requests sent in the period; None when the log
    #: records no replies, bounces or reminders from the period on (answers not recorded).
    timeliness: TimelinessTally | None = None

    @property
    def totals(self) -> Figures:
        return self.tally.totals

    def partner_label(self, key: str) -> str:
        """The partner's name from the directory, else its key."""
        if key == NO_PARTNER:
            return NO_PARTNER_LABEL
        return self.partner_names.get(key, key)


@dataclass
class Tally:
    """The figures of a stream of events, grouped every way the report shows them."""

    totals: Figures = field(default_factory=Figures)
    by_partner: dict[str, Figures] = field(default_factory=dict)
    by_month: dict[str, Figures] = field(default_factory=dict)
    by_partner_month: dict[tuple[str, str], Figures] = field(default_factory=dict)

    @property
    def months(self) -> list[str]:
        """Every month from the first to the last with events, gaps included, in order."""
        return _month_range(self.by_month)


def tally(
    events: Iterable[StoredEvent],
    *,
    since: datetime | None = None,
    also: Callable[[StoredEvent], None] | None = None,
) -> Tally:
    """Count events (in seq order) recorded at or after ``since``.

    Earlier ``prepared`` events are only remembered, so a request prepared before the period
    and sent in it still has its prepared -> sent time. ``also`` is called with every event
    first (the report's one read of the period also feeds the timeliness fold).
    """
    result = Tally()
    prepared_at: dict[str, datetime] = {}
    for stored in events:
        if also is not None:
            also(stored)
        event = stored.event
        at = stored.recorded_at
        if event.kind is EventKind.PREPARED:
            if event.request_ref is not None:
                prepared_at.setdefault(event.request_ref, at)
            continue
        if event.kind in FOLLOW_UP_KINDS:
            continue  # replies and reminders are not steps of sending
        if since is not None and at < since:
            continue
        partner = event.partner or NO_PARTNER
        utc = at.astimezone(UTC)
        month = f"{utc.year:04d}-{utc.month:02d}"
        groups = (
            result.totals,
            _group(result.by_partner, partner),
            _group(result.by_month, month),
            _group(result.by_partner_month, (partner, month)),
        )
        kind = event.kind
        sent = kind is EventKind.SENT or (
            kind is EventKind.RECONCILED and event.details.get("outcome") == "sent"
        )
        duration: float | None = None
        if sent:
            start = prepared_at.pop(event.request_ref, None) if event.request_ref else None
            if start is not None and kind is EventKind.SENT:
                duration = (at - start).total_seconds()
        for figures in groups:
            if sent:
                figures.sent += 1
                if event.form_sha256:
                    figures.with_form += 1
                if duration is not None:
                    figures.durations.append(duration)
            elif kind is EventKind.REJECTED:
                reason = event.reason or "unspecified"
                if reason in HELD_REASONS:
                    figures.held += 1
                    figures.held_reasons[reason] += 1
                else:
                    figures.refused += 1
                    figures.refusal_reasons[reason] += 1
            elif kind is EventKind.FAILED:
                figures.failed += 1
            elif kind is EventKind.UNCONFIRMED:
                figures.unconfirmed += 1
            elif kind is EventKind.ATTEMPT_FAILED and event.wait_seconds is not None:
                # A failed attempt with a wait was followed by another try; the last failed
                # attempt (no wait) ended in a failure or unconfirmed, counted there.
                figures.retries += 1
    result.by_partner = dict(sorted(result.by_partner.items()))
    result.by_month = dict(sorted(result.by_month.items()))
    return result


def _group(groups: dict[K, Figures], key: K) -> Figures:
    # Not setdefault(key, Figures()): that builds a Figures (a Counter and a list) per event.
    figures = groups.get(key)
    if figures is None:
        figures = groups[key] = Figures()
    return figures


def build_report(
    store: EventStore,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    title: str = "Requests for information",
    verification: VerifyResult | None = None,
    marking: str = "OFFICIAL-SENSITIVE",
    mash_name: str = "MASH",
    partner_names: Mapping[str, str] | None = None,
    timescales: Timescales | None = None,
) -> ReportData:
    """Verify the log and tally the events recorded in [since, until).

    ``marking``, ``mash_name``, ``partner_names`` (key -> name, from the partner
    directory) and ``timescales`` (for the timeliness figures; default: the built-in
    timescales) come from the config (``load_report_settings``). Answers, bounces and
    reminders recorded after ``until`` count for the requests sent in the period.

    The chain is verified whatever the period, in worker processes while this one tallies
    the period, from the most recent verified head stored in the log on (the result says
    what was verified now and what earlier, and when: see
    :func:`~mash_requests.audit.verify.start_verification`). To make several reports from
    one verification, pass the ``verification`` that ``verify_chain(store)`` returned just
    before: the reports then state that result, head and count included. A broken log's
    figures count only the events up to the last one that verifies.
    """
    from mash_requests.audit.timeliness import AnswerFold, count
    from mash_requests.deadlines import Timescales

    # Resumes after the newest verified head stored in the log (and stores the new one):
    # the result says what was verified now and what earlier, and when.
    running = (
        start_verification(store, walk_first_here=False, resume=True, record=True)
        if verification is None
        else None
    )
    read_from = since - PREPARED_LOOKBACK if since is not None else None

    def read(upto_seq: int | None) -> tuple[Tally, AnswerFold | None]:
        answers = AnswerFold(since, until) if _answers_recorded(store, read_from) else None
        where = EventFilter(since=read_from, until=until, upto_seq=upto_seq)
        # One read of the period feeds both the send figures and the answers fold.
        figures = tally(
            store.events(where), since=since, also=answers.feed if answers is not None else None
        )
        if answers is not None and until is not None:
            # Answers, bounces and reminders after the period still count for the requests
            # sent in it: the answers fold needs only these kinds from then on, and only for
            # the references of the requests still open on a sending of the period.
            for stored in _later_follow_ups(store, answers, until, upto_seq):
                answers.apply(stored)
        return figures, answers

    try:
        figures, answers = read(None)
        if running is not None:
            verification = running.result()
        assert verification is not None
        if not verification.ok:  # count only the events that verify (rare: a second read)
            figures, answers = read(verification.head_seq)
    finally:
        if running is not None:
            running.close()
    generated_at = datetime.now(UTC)
    scales = timescales or Timescales.defaults()
    return ReportData(
        title=title,
        since=since,
        until=until,
        generated_at=generated_at,
        location=str(getattr(store, "location", "")),
        verification=verification,
        tally=figures,
        marking=marking,
        mash_name=mash_name,
        partner_names=dict(partner_names or {}),
        timeliness=count(answers, scales, generated_at) if answers is not None else None,
    )


#: What the answers fold reads after the period: what answers, flags or chases a request.
_LATER_KINDS = (EventKind.REPLIED, EventKind.BOUNCED, EventKind.CHASED)


@runtime_checkable
class NarrowReader(Protocol):
    """A store that can answer the report's two narrow questions without reading on in
    ``seq`` order (both built-in stores can); any other store is read through ``events``."""

    def any_event_since(self, kinds: Sequence[str], since: datetime | None) -> bool:
        """Whether the log holds an event of ``kinds`` recorded at or after ``since``."""
        ...

    def events_of_refs(
        self,
        refs: Collection[str],
        kinds: Sequence[str],
        *,
        since: datetime,
        upto_seq: int | None = None,
    ) -> Iterator[StoredEvent]:
        """The events of ``kinds`` for these references from ``since`` on, in seq order."""
        ...


def _later_follow_ups(
    store: EventStore, answers: AnswerFold, until: datetime, upto_seq: int | None
) -> Iterator[StoredEvent]:
    """The replies, bounces and reminders recorded from ``until`` on (up to ``upto_seq``)
    that can change the figures of the period's sendings, in seq order: those of the
    references the fold still awaits (see :meth:`AnswerFold.awaited_refs`). Applying these
    gives the figures that applying every such event after the period gives."""
    refs = answers.awaited_refs()
    if not refs:
        return iter(())
    if isinstance(store, NarrowReader):
        kinds = [str(kind) for kind in _LATER_KINDS]
        return store.events_of_refs(refs, kinds, since=until, upto_seq=upto_seq)
    later = EventFilter(kinds=_LATER_KINDS, since=until, upto_seq=upto_seq)
    return (stored for stored in store.events(later) if stored.event.request_ref in refs)


#: Follow-up kinds, those most often recorded first (the existence check stops at one).
_FOLLOW_UPS_FIRST = (
    *_LATER_KINDS,
    *sorted(FOLLOW_UP_KINDS - set(_LATER_KINDS), key=str),
)


def _answers_recorded(store: EventStore, since: datetime | None) -> bool:
    """Whether the log holds any reply, bounce or reminder from ``since`` on.

    Without one, nobody is recording answers (no ``[replies]``, no ``replies record``):
    timeliness figures would call every request unanswered, which is not what the log
    shows, so the report says that answers are not recorded instead.
    """
    if isinstance(store, NarrowReader):
        return store.any_event_since([str(kind) for kind in _FOLLOW_UPS_FIRST], since)
    events = store.events(EventFilter(kinds=_FOLLOW_UPS_FIRST, since=since))
    try:
        return next(iter(events), None) is not None
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()


def write_report(data: ReportData, path: Path, *, templates_dir: Path | None = None) -> None:
    """Render (see :func:`render_html`) and write the report atomically; LogError names the
    file if it cannot be written."""
    page = render_html(data, templates_dir=templates_dir)
    try:
        atomic_write_text(path, page)
    except OSError as exc:
        raise LogError(f"report {path}: cannot write: {exc.strerror}") from exc


# -- what the template is given ------------------------------------------------------------

#: The report's template, found like the request templates: ``[mash] templates`` first, then
#: the templates shipped with the package.
REPORT_TEMPLATE = "report.html.j2"


def _percent(rate: float) -> str:
    value = rate * 100
    return f"{value:.0f}%" if value in (0, 100) else f"{value:.1f}%"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    return f"{hours / 24:.1f} days"


def _number(value: int) -> str:
    return f"{value:,}"


def _month_label(month: str) -> str:
    return datetime.strptime(month, "%Y-%m").strftime("%b %Y")


def _month_range(by_month: dict[str, Figures]) -> list[str]:
    if not by_month:
        return []
    first, last = min(by_month), max(by_month)
    year, month = int(first[:4]), int(first[5:])
    months: list[str] = []
    while True:
        key = f"{year:04d}-{month:02d}"
        months.append(key)
        if key >= last:
            return months
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


@dataclass(frozen=True)
class Reason:
    """One refusal reason as the report shows it: the code, its words, and how many."""

    code: str
    text: str
    count: int


def _reasons(reasons: Counter[str]) -> list[Reason]:
    return [Reason(code, REASON_TEXT.get(code, ""), n) for code, n in reasons.most_common()]


@dataclass(frozen=True)
class Bar:
    """One stacked segment of the chart: a partner's requests sent in one month."""

    x: float
    y: float
    width: float
    height: float
    colour: str
    title: str


@dataclass(frozen=True)
class Tick:
    """A label on an axis (or the legend) at ``x``, ``y``."""

    x: float
    y: float
    text: str
    colour: str = ""


@dataclass
class Chart:
    """The chart's geometry, in SVG user units; the template draws it."""

    width: int = 900
    height: int = 340
    left: int = 56
    right: int = 56
    top: int = 20
    bottom: int = 64
    #: No requests were sent in the period: the template says so instead of drawing.
    empty: bool = True
    grid: list[Tick] = field(default_factory=list)
    rate_ticks: list[Tick] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)
    month_labels: list[Tick] = field(default_factory=list)
    #: The attachment-rate line (an SVG path) and its points with their titles.
    rate_path: str = ""
    rate_points: list[Tick] = field(default_factory=list)
    legend: list[Tick] = field(default_factory=list)
    #: Where the rate line's legend entry starts.
    legend_rate_x: float = 0
    legend_rate_y: float = 0

    @property
    def plot_width(self) -> int:
        return self.width - self.left - self.right

    @property
    def plot_height(self) -> int:
        return self.height - self.top - self.bottom

    @property
    def baseline(self) -> int:
        return self.top + self.plot_height


def chart(data: ReportData) -> Chart:
    """The chart of requests sent per month, stacked by agency, with the attachment rate."""
    result = Chart()
    tally_ = data.tally
    months = tally_.months
    peak = max((tally_.by_month[m].sent for m in months if m in tally_.by_month), default=0)
    if peak == 0:
        return result
    result.empty = False
    # Only agencies with requests sent have a colour and a legend entry: refusals that
    # named no partner (or an agency only refused) draw no bar.
    partners = [key for key, figures in tally_.by_partner.items() if figures.sent]
    plot_w, plot_h, top = result.plot_width, result.plot_height, result.top
    step = _nice_step(peak)
    top_value = step * -(-peak // step)
    for i in range(int(top_value // step) + 1):
        value = i * step
        y = top + plot_h - plot_h * value / top_value
        result.grid.append(Tick(result.left, round(y, 1), _number(value)))
    for pct in (0, 50, 100):
        y = top + plot_h - plot_h * pct / 100
        result.rate_ticks.append(Tick(result.left + plot_w + 6, round(y + 4, 1), f"{pct}%"))
    slot = plot_w / len(months)
    bar_w = max(2.0, min(48.0, slot * 0.7))
    points: list[tuple[float, float, str]] = []
    label_every = max(1, -(-len(months) // 18))
    for index, month in enumerate(months):
        x_mid = result.left + slot * (index + 0.5)
        y = float(top + plot_h)
        for p_index, partner in enumerate(partners):
            figures = tally_.by_partner_month.get((partner, month))
            if not figures or not figures.sent:
                continue
            h = plot_h * figures.sent / top_value
            y -= h
            result.bars.append(
                Bar(
                    x=round(x_mid - bar_w / 2, 1),
                    y=round(y, 1),
                    width=round(bar_w, 1),
                    height=round(h, 1),
                    colour=PALETTE[p_index % len(PALETTE)],
                    title=f"{_month_label(month)}, {data.partner_label(partner)}: "
                    f"{figures.sent:,} sent, {figures.attachment_rate_text} with form",
                )
            )
        if index % label_every == 0:
            month_tick = Tick(round(x_mid, 1), top + plot_h + 16, _month_label(month))
            result.month_labels.append(month_tick)
        month_figures = tally_.by_month.get(month)
        if month_figures and month_figures.attachment_rate is not None:
            ry = top + plot_h - plot_h * month_figures.attachment_rate
            points.append((x_mid, ry, month_figures.attachment_rate_text))
    if points:
        result.rate_path = " ".join(
            f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y, _) in enumerate(points)
        )
        result.rate_points = [
            Tick(round(x, 1), round(y, 1), f"Form attached: {text}") for x, y, text in points
        ]
    # The legend under the plot, wrapped onto more lines when long names need them (about
    # 7 units a character at 11 px); the chart grows by a line for each.
    lx, line = float(result.left), 0
    for p_index, partner in enumerate(partners):
        label = data.partner_label(partner)
        needed = 24 + 7 * len(label)
        if lx + needed > result.width - 8 and lx > result.left:
            lx, line = float(result.left), line + 1
        result.legend.append(
            Tick(lx, result.baseline + 42 + 18 * line, label, PALETTE[p_index % len(PALETTE)])
        )
        lx += needed
    if lx + 150 > result.width - 8:
        lx, line = float(result.left), line + 1
    result.legend_rate_x = lx
    result.legend_rate_y = result.baseline + 42 + 18 * line
    result.height += 18 * line
    result.bottom += 18 * line
    return result


def _nice_step(peak: int) -> int:
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000):
        if peak / step <= 6:
            return step
    return int(10 ** len(str(peak // 6)))


#: The timeliness chart's colours per category (Okabe–Ito, as the other chart).
CATEGORY_COLOURS = {
    "in_time": "#009E73",
    "late": "#E69F00",
    "bounced": "#CC79A7",
    "overdue": "#D55E00",
    "not_due": "#56B4E9",
    "other": "#999999",
}


@dataclass(frozen=True)
class TimelinessRow:
    """One agency's bar in the timeliness chart: its segments, label and rate text."""

    y: float
    label: str
    segments: list[Bar]
    rate_text: str


@dataclass
class TimelinessChart:
    """Per agency, a bar of its requests split by where each stands; the template draws it."""

    width: int = 900
    row_height: int = 30
    label_width: int = 190
    rate_width: int = 200
    top: int = 10
    rows: list[TimelinessRow] = field(default_factory=list)
    legend: list[Tick] = field(default_factory=list)

    @property
    def bar_width(self) -> int:
        return self.width - self.label_width - self.rate_width

    @property
    def legend_y(self) -> int:
        return self.top + self.row_height * len(self.rows) + 22

    @property
    def height(self) -> int:
        return self.legend_y + 20 * ((len(self.legend) + 1) // 2) + 4


def timeliness_chart(data: ReportData) -> TimelinessChart:
    """All agencies, then each agency: its requests sent in the period as one full-width bar,
    split into answered in time, late, bounced, overdue, not due yet, other."""
    from mash_requests.audit.timeliness import CATEGORIES

    result = TimelinessChart()
    figures = data.timeliness
    if figures is None or not figures.totals.requests:
        return result
    groups = [("All agencies", figures.totals)] + [
        (data.partner_label(key), group) for key, group in figures.by_partner.items()
    ]
    # Room for the longest name (about 6.5 units a character at 11 px), within reason.
    longest = max(len(label) for label, _ in groups)
    result.label_width = min(360, max(120, round(16 + 6.5 * longest)))
    used: set[str] = set()
    for index, (label, group) in enumerate(groups):
        y = result.top + index * result.row_height
        x = float(result.label_width)
        segments: list[Bar] = []
        for category, words in CATEGORIES.items():
            n = group.categories[category]
            if not n:
                continue
            used.add(category)
            width = result.bar_width * n / group.requests
            share = _percent(n / group.requests)
            segments.append(
                Bar(
                    x=round(x, 1),
                    y=y + 4,
                    width=round(width, 1),
                    height=result.row_height - 8,
                    colour=CATEGORY_COLOURS[category],
                    title=f"{label}: {n:,} of {group.requests:,} ({share}) {words}",
                )
            )
            x += width
        rate = group.in_time_rate
        rate_text = (
            f"{_percent(rate)} in time ({group.in_time:,} of {group.decided:,} due)"
            if rate is not None
            else "none due yet"
        )
        result.rows.append(TimelinessRow(y, label, segments, rate_text))
    column = 0
    for category, words in CATEGORIES.items():
        if category in used:
            # Two columns from the left edge: the longest words fit (about 390 units).
            x = 16 + (column % 2) * 440
            y = result.top + result.row_height * len(groups) + 22 + 20 * (column // 2)
            result.legend.append(Tick(x, y, words, CATEGORY_COLOURS[category]))
            column += 1
    return result


def _hours(hours: float | None) -> str:
    return "–" if hours is None else f"{hours:,.1f} h"


@dataclass(frozen=True)
class Fact:
    """One line of the verification section: a label and its value, as text."""

    label: str
    value: str


#: Labels for the verification result's fields; a field not named here (a later version's)
#: is shown under its own name.
_FACT_LABELS = {
    "count": "Events verified",
    "head_seq": "Head of the chain: event",
    "head_hash": "Head hash",
    "broken_seq": "First broken event",
    "problem": "What happened to it",
    "detail": "Detail",
    "checkpoint": "Checked against the checkpoint",
    "outside_count": "Rows outside the chain",
    "outside_seqs": "Their seq (the first ones)",
    "table_problems": "Log table problems",
    "database": "Database check",
    "verified_from": "Verified now from event",
    "earlier": "Verified earlier (stored verified head)",
}


def verification_facts(result: VerifyResult) -> list[Fact]:
    """Every field of the verification result that has a value, as label and text.

    Generic on purpose: whatever the result records (a later version may say what was
    verified now and what earlier), the report shows it without being changed.
    """
    facts: list[Fact] = []
    for item in dataclasses.fields(result):
        if item.name == "ok":
            continue
        value = getattr(result, item.name)
        if value is None or value == "" or value == ():
            continue
        label = _FACT_LABELS.get(item.name, item.name.replace("_", " ").capitalize())
        facts.append(Fact(label, _fact_text(value)))
    return facts


def _fact_text(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, datetime):
        return format_time(value)[:19].replace("T", " ") + " UTC"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return ", ".join(
            f"{f.name.replace('_', ' ')} {_fact_text(getattr(value, f.name))}"
            for f in dataclasses.fields(value)
            if getattr(value, f.name) is not None
        )
    if isinstance(value, list | tuple):
        return "; ".join(_fact_text(v) for v in value)
    return str(value)


def _context(data: ReportData) -> dict[str, Any]:
    start = format_time(data.since)[:10] if data.since else "the first event"
    end = format_time(data.until - timedelta(microseconds=1))[:10] if data.until else "the last"
    tally_ = data.tally
    by_partner_month = []
    for partner in tally_.by_partner:
        rows = [
            (_month_label(month), tally_.by_partner_month[(partner, month)])
            for month in tally_.months
            if (partner, month) in tally_.by_partner_month
        ]
        by_partner_month.append((data.partner_label(partner), rows))
    return {
        "report": data,
        "title": data.title,
        "marking": data.marking,
        "mash_name": data.mash_name,
        "period": f"{start} to {end}",
        "generated": format_time(data.generated_at)[:19].replace("T", " "),
        "location": data.location,
        "verification": data.verification,
        "verification_facts": verification_facts(data.verification),
        "totals": data.totals,
        "chart": chart(data),
        "by_partner": [(data.partner_label(p), f) for p, f in tally_.by_partner.items()],
        "by_month": [
            (_month_label(m), tally_.by_month[m]) for m in tally_.months if m in tally_.by_month
        ],
        "by_partner_month": by_partner_month,
        "timeliness": _timeliness_context(data),
        # Formatting, as functions the template calls.
        "percent": _percent,
        "duration": _duration,
        "hours": _hours,
        "number": _number,
        "reasons": lambda figures: _reasons(figures.refusal_reasons),
        "held_reasons": lambda figures: _reasons(figures.held_reasons),
    }


def _timeliness_context(data: ReportData) -> dict[str, Any] | None:
    figures = data.timeliness
    if figures is None:
        return None
    by_partner_month = [
        (data.partner_label(partner), _month_label(month), group)
        for (partner, month), group in sorted(figures.by_partner_month.items())
    ]
    return {
        "totals": figures.totals,
        "chart": timeliness_chart(data),
        "by_partner": [(data.partner_label(p), g) for p, g in figures.by_partner.items()],
        "by_month": [(_month_label(m), g) for m, g in figures.by_month.items()],
        "by_partner_month": by_partner_month,
        "working_ratings": [rating.upper() for rating in figures.working_ratings],
    }


@functools.cache
def _renderer(templates_dir: Path | None) -> Renderer:
    from mash_requests.audit.verify import VerifyResult
    from mash_requests.rendering import Renderer

    # The marking and name are given to the report template in its context. The template
    # may call the verification's own read-only methods (summary(), coverage_lines()).
    return Renderer(
        marking="", mash_name="", override_dir=templates_dir, callable_types=(VerifyResult,)
    )


def render_html(data: ReportData, *, templates_dir: Path | None = None) -> str:
    """The complete report as one HTML document (no external resources).

    Rendered from ``report.html.j2``: from ``templates_dir`` (``[mash] templates``) when it
    holds one, else the shipped template; sandboxed and autoescaped like the requests, so
    every value from the log is HTML-escaped. TemplateError names a broken template.
    """
    return _renderer(templates_dir).render_document(REPORT_TEMPLATE, _context(data))


__all__ = [
    "HELD_REASONS",
    "REASON_TEXT",
    "REPORT_TEMPLATE",
    "Chart",
    "Figures",
    "ReportData",
    "Tally",
    "TimelinessChart",
    "build_report",
    "chart",
    "render_html",
    "tally",
    "timeliness_chart",
    "verification_facts",
    "write_report",
]
