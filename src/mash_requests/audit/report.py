"""The evidence report: one self-contained HTML file for steering groups and auditors.

It answers the scrutiny recommendation — *"Ensure that the MASH referral form is attached to
requests for information to all partner agencies"* — with figures from the dispatch log:
per partner agency and per month, the requests sent, the share sent with a verified referral
form attached (sent events carrying the form's SHA-256), refusals with their reasons,
failures, retries and the median time from prepared to sent; a chart; and the result of
verifying the hash chain, with its head hash so a later reader can check the same log.

No external assets: inline CSS and an inline SVG chart, so the file can be mailed, archived
and printed to PDF as it is. Every value from the log is HTML-escaped. Times are UTC.
"""

from __future__ import annotations

import html
import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

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

#: How far before the period the report looks for ``prepared`` events, so a request
#: prepared just before the period and sent in it still has a prepared -> sent time.
PREPARED_LOOKBACK = timedelta(days=7)

NO_PARTNER = "(no partner)"

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
    refused: int = 0
    refusal_reasons: Counter[str] = field(default_factory=Counter)
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

    @property
    def totals(self) -> Figures:
        return self.tally.totals


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


def tally(events: Iterable[StoredEvent], *, since: datetime | None = None) -> Tally:
    """Count events (in seq order) recorded at or after ``since``.

    Earlier ``prepared`` events are only remembered, so a request prepared before the period
    and sent in it still has its prepared -> sent time.
    """
    result = Tally()
    prepared_at: dict[str, datetime] = {}
    for stored in events:
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
                figures.refused += 1
                figures.refusal_reasons[event.reason or "unspecified"] += 1
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
) -> ReportData:
    """Verify the log and tally the events recorded in [since, until).

    The chain is verified whatever the period, in worker processes while this one tallies
    the period, from the most recent verified head stored in the log on (the result says
    what was verified now and what earlier, and when: see
    :func:`~mash_requests.audit.verify.start_verification`). To make several
    reports from one verification, pass the ``verification`` that ``verify_chain(store)``
    returned just before: the reports then state that result, head and count included.
    """
    # Resumes after the newest verified head stored in the log (and stores the new one):
    # the result says what was verified now and what earlier, and when.
    running = (
        start_verification(store, walk_first_here=False, resume=True, record=True)
        if verification is None
        else None
    )
    try:
        read_from = since - PREPARED_LOOKBACK if since is not None else None
        figures = tally(store.events(EventFilter(since=read_from, until=until)), since=since)
        if running is not None:
            verification = running.result()
        assert verification is not None
        if not verification.ok:  # count only the events that verify (rare: a second read)
            covered = EventFilter(since=read_from, until=until, upto_seq=verification.head_seq)
            figures = tally(store.events(covered), since=since)
    finally:
        if running is not None:
            running.close()
    return ReportData(
        title=title,
        since=since,
        until=until,
        generated_at=datetime.now(UTC),
        location=str(getattr(store, "location", "")),
        verification=verification,
        tally=figures,
    )


def write_report(data: ReportData, path: Path) -> None:
    """Render and write the report atomically; LogError names the file if it cannot."""
    try:
        atomic_write_text(path, render_html(data))
    except OSError as exc:
        raise LogError(f"report {path}: cannot write: {exc.strerror}") from exc


# -- rendering -------------------------------------------------------------------------------


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


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


def _reasons(reasons: Counter[str]) -> str:
    return ", ".join(f"{_e(reason)}&nbsp;×{n}" for reason, n in reasons.most_common()) or "–"


def _rate_cell(figures: Figures) -> str:
    rate = figures.attachment_rate
    if rate is None:
        return '<td class="num">–</td>'
    warn = ' class="num warn"' if rate < 1 else ' class="num"'
    return f"<td{warn}>{_e(_percent(rate))}</td>"


def _figures_row(label: str, figures: Figures) -> str:
    return (
        f'<tr><th scope="row">{_e(label)}</th>'
        f'<td class="num">{figures.sent:,}</td>'
        f'<td class="num">{figures.with_form:,}</td>'
        f"{_rate_cell(figures)}"
        f'<td class="num">{figures.refused:,}</td>'
        f'<td class="num">{figures.failed:,}</td>'
        f'<td class="num">{figures.unconfirmed:,}</td>'
        f'<td class="num">{figures.retries:,}</td>'
        f'<td class="num">{_e(_duration(figures.median_seconds))}</td>'
        f'<td class="reasons">{_reasons(figures.refusal_reasons)}</td></tr>'
    )


_TABLE_HEAD = (
    '<thead><tr><th scope="col">{first}</th>'
    '<th scope="col" class="num">Sent</th>'
    '<th scope="col" class="num">With form</th>'
    '<th scope="col" class="num">Form attached</th>'
    '<th scope="col" class="num">Refused</th>'
    '<th scope="col" class="num">Failed</th>'
    '<th scope="col" class="num">Unconfirmed</th>'
    '<th scope="col" class="num">Retries</th>'
    '<th scope="col" class="num">Median prepared→sent</th>'
    '<th scope="col">Refusal reasons</th></tr></thead>'
)


def _table(first: str, rows: Iterable[tuple[str, Figures]], caption: str) -> str:
    body = "".join(_figures_row(label, figures) for label, figures in rows)
    if not body:
        body = '<tr><td colspan="10" class="empty">No events in this period.</td></tr>'
    return (
        f"<table><caption>{_e(caption)}</caption>{_TABLE_HEAD.format(first=_e(first))}"
        f"<tbody>{body}</tbody></table>"
    )


def _partner_month_tables(data: ReportData) -> str:
    sections = []
    for partner in data.tally.by_partner:
        rows = [
            (_month_label(month), data.tally.by_partner_month[(partner, month)])
            for month in data.tally.months
            if (partner, month) in data.tally.by_partner_month
        ]
        sections.append(
            f'<section class="partner"><h3>{_e(partner)}</h3>'
            f"{_table('Month', rows, f'{partner} by month')}</section>"
        )
    return "".join(sections)


def render_chart(data: ReportData) -> str:
    """Inline SVG: requests sent per month, stacked by agency, with the attachment rate line."""
    months = data.tally.months
    partners = list(data.tally.by_partner)
    width, height = 900, 340
    left, right, top, bottom = 56, 56, 20, 64
    plot_w, plot_h = width - left - right, height - top - bottom
    svg = [
        f'<svg id="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="100%" role="img" aria-labelledby="chart-title chart-desc">',
        '<title id="chart-title">Requests sent per month by partner agency, '
        "with the share sent with the referral form attached</title>",
        '<desc id="chart-desc">Stacked bars: requests sent per month, one colour per agency. '
        "Line: percentage of sent requests with a verified referral form attached.</desc>",
    ]
    peak = max((data.tally.by_month[m].sent for m in months if m in data.tally.by_month), default=0)
    if peak == 0:
        svg.append(
            f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" class="axis">'
            "No requests were sent in this period.</text></svg>"
        )
        return "".join(svg)
    step = _nice_step(peak)
    top_value = step * -(-peak // step)
    # Axes and grid
    for i in range(int(top_value // step) + 1):
        value = i * step
        y = top + plot_h - plot_h * value / top_value
        svg.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="axis">{value:,}</text>'
        )
    for pct in (0, 50, 100):
        y = top + plot_h - plot_h * pct / 100
        svg.append(
            f'<text x="{left + plot_w + 6}" y="{y + 4:.1f}" class="axis rate-axis">{pct}%</text>'
        )
    svg.append(
        f'<text transform="translate(14 {top + plot_h / 2}) rotate(-90)" text-anchor="middle" '
        'class="axis">Requests sent</text>'
        f'<text transform="translate({width - 12} {top + plot_h / 2}) rotate(90)" '
        'text-anchor="middle" class="axis rate-axis">Form attached</text>'
    )
    slot = plot_w / len(months)
    bar_w = max(2.0, min(48.0, slot * 0.7))
    points: list[tuple[float, float, str]] = []
    label_every = max(1, -(-len(months) // 18))
    for index, month in enumerate(months):
        x_mid = left + slot * (index + 0.5)
        y = top + plot_h
        for p_index, partner in enumerate(partners):
            figures = data.tally.by_partner_month.get((partner, month))
            if not figures or not figures.sent:
                continue
            h = plot_h * figures.sent / top_value
            y -= h
            colour = PALETTE[p_index % len(PALETTE)]
            svg.append(
                f'<rect class="bar" x="{x_mid - bar_w / 2:.1f}" y="{y:.1f}" width="{bar_w:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{_e(_month_label(month))}, '
                f"{_e(partner)}: {figures.sent:,} sent, {_e(figures.attachment_rate_text)} "
                "with form</title></rect>"
            )
        if index % label_every == 0:
            svg.append(
                f'<text x="{x_mid:.1f}" y="{top + plot_h + 16}" text-anchor="middle" '
                f'class="axis">{_e(_month_label(month))}</text>'
            )
        month_figures = data.tally.by_month.get(month)
        if month_figures and month_figures.attachment_rate is not None:
            ry = top + plot_h - plot_h * month_figures.attachment_rate
            points.append((x_mid, ry, month_figures.attachment_rate_text))
    if points:
        path = " ".join(
            f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y, _) in enumerate(points)
        )
        svg.append(f'<path d="{path}" class="rate-line"/>')
        for x, y, text in points:
            svg.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" class="rate-dot">'
                f"<title>Form attached: {_e(text)}</title></circle>"
            )
    # Legend
    lx, ly = left, height - 22
    for p_index, partner in enumerate(partners):
        colour = PALETTE[p_index % len(PALETTE)]
        svg.append(
            f'<rect x="{lx}" y="{ly - 9}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{lx + 14}" y="{ly}" class="legend">{_e(partner)}</text>'
        )
        lx += 24 + 7 * len(partner)
    svg.append(
        f'<line x1="{lx}" x2="{lx + 18}" y1="{ly - 4}" y2="{ly - 4}" class="rate-line"/>'
        f'<text x="{lx + 22}" y="{ly}" class="legend">form attached (%)</text>'
    )
    svg.append("</svg>")
    return "".join(svg)


def _nice_step(peak: int) -> int:
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000):
        if peak / step <= 6:
            return step
    return int(10 ** len(str(peak // 6)))


_CSS = """
:root { --ink: #1a1a1a; --muted: #5a5a5a; --rule: #d0d0d0; --ok: #0a6b2d; --bad: #a00000; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Arial, sans-serif; color: var(--ink);
       margin: 2rem auto; max-width: 1100px; padding: 0 1.5rem; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; }
h2 { font-size: 1.2rem; margin: 2rem 0 .5rem; border-bottom: 2px solid var(--ink); }
h3 { font-size: 1rem; margin: 1.25rem 0 .25rem; }
.meta { color: var(--muted); margin: 0 0 1rem; }
.verify { border: 2px solid; padding: .75rem 1rem; margin: 1rem 0; }
.verify.ok { border-color: var(--ok); } .verify.broken { border-color: var(--bad); }
.verify strong.ok { color: var(--ok); } .verify strong.broken { color: var(--bad); }
.hash { font-family: ui-monospace, Menlo, Consolas, monospace; word-break: break-all; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: .75rem; }
.card { border: 1px solid var(--rule); padding: .6rem .8rem; }
.card .value { font-size: 1.5rem; font-weight: 600; display: block; }
.card .label { color: var(--muted); font-size: .85rem; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0 1rem; font-size: .9rem; }
caption { text-align: left; color: var(--muted); font-size: .8rem; padding-bottom: .25rem; }
th[scope="row"] { white-space: nowrap; }
th, td { border-bottom: 1px solid var(--rule); padding: .3rem .45rem; text-align: left;
         vertical-align: top; }
thead th { border-bottom: 2px solid var(--ink); font-weight: 600; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.warn { color: var(--bad); font-weight: 600; }
.reasons { font-size: .85rem; }
.empty { color: var(--muted); text-align: center; }
svg .grid { stroke: #e3e3e3; stroke-width: 1; }
svg .axis, svg .legend { font: 11px system-ui, Arial, sans-serif; fill: #333; }
svg .rate-axis { fill: var(--bad); }
svg .rate-line { fill: none; stroke: var(--bad); stroke-width: 2; }
svg .rate-dot { fill: #fff; stroke: var(--bad); stroke-width: 2; }
.notes { color: var(--muted); font-size: .85rem; }
.notes dt { font-weight: 600; color: var(--ink); }
@page { size: A4 landscape; margin: 14mm; }
@media print {
  body { margin: 0; max-width: none; padding: 0; font-size: 10.5pt; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  h2 { break-after: avoid; }
  table, figure, .verify, .cards { break-inside: auto; }
  tr, .card, svg { break-inside: avoid; }
  thead { display: table-header-group; }
  section.partner { break-inside: avoid-page; }
}
"""


def _at_event(seq: int | None) -> str:
    # None: a problem beside the chain (a forged verified head, foreign metadata rows).
    return "" if seq is None else f" at event {seq}"


def render_html(data: ReportData) -> str:
    """The complete report as one HTML document (no external resources)."""
    start = format_time(data.since)[:10] if data.since else "the first event"
    end = format_time(data.until - timedelta(microseconds=1))[:10] if data.until else "the last"
    period = f"{start} to {end}"
    v = data.verification
    if v.ok and v.earlier is not None:
        coverage = ". ".join(line[0].upper() + line[1:] for line in v.coverage_lines())
        verdict = (
            f'<strong class="ok">Intact.</strong> {v.count:,} events. {_e(coverage)}. '
            "None was found changed, removed, inserted or reordered."
        )
    elif v.ok:
        verdict = (
            f'<strong class="ok">Intact.</strong> All {v.count:,} events in the log verify: '
            "none was changed, removed, inserted or reordered."
        )
    else:
        verdict = (
            f'<strong class="broken">BROKEN{_at_event(v.broken_seq)} ({_e(v.problem)}).</strong> '
            f"{_e(v.detail)}. {v.count:,} events verified before it. The figures below may "
            "not be trustworthy: investigate before relying on them."
        )
    t = data.totals
    cards = [
        (f"{t.sent:,}", "requests sent"),
        (
            _percent(t.attachment_rate) if t.attachment_rate is not None else "n/a",
            f"sent with the referral form attached ({t.with_form:,} of {t.sent:,})",
        ),
        (f"{t.refused:,}", "refused before sending"),
        (f"{t.failed:,}", "failed"),
        (f"{t.unconfirmed:,}", "unconfirmed (need checking)"),
        (f"{t.retries:,}", "retries"),
        (_duration(t.median_seconds), "median prepared → sent"),
    ]
    cards_html = "".join(
        f'<div class="card"><span class="value">{_e(value)}</span>'
        f'<span class="label">{_e(label)}</span></div>'
        for value, label in cards
    )
    month_rows = [
        (_month_label(m), data.tally.by_month[m])
        for m in data.tally.months
        if m in data.tally.by_month
    ]
    return f"""<!DOCTYPE html>
<html lang="en-GB">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(data.title)}</title>
<style>{_CSS}</style>
</head>
<body>
<header>
<h1>{_e(data.title)}</h1>
<p class="meta">Evidence from the dispatch log, {_e(period)} (UTC).
Generated {_e(format_time(data.generated_at)[:19].replace("T", " "))} UTC from
{_e(data.location)}.</p>
</header>

<section class="verify {"ok" if v.ok else "broken"}" id="verification">
<p>{verdict}</p>
<p>Head of the chain: event {v.head_seq:,}, hash <span class="hash">{_e(v.head_hash)}</span></p>
</section>

<h2>Totals</h2>
<div class="cards" id="totals">{cards_html}</div>

<h2>Requests per month</h2>
<figure>{render_chart(data)}</figure>

<h2>By partner agency</h2>
{_table("Partner agency", data.tally.by_partner.items(), "Per partner agency, whole period")}

<h2>By month</h2>
{_table("Month", month_rows, "Per month, all partner agencies")}

<h2>By partner agency and month</h2>
{_partner_month_tables(data)}

<h2>How to read this report</h2>
<dl class="notes">
<dt>Sent</dt><dd>Requests the mail gateway accepted (and unconfirmed sends later found in
Sent Items), counted in the month they were recorded.</dd>
<dt>Form attached</dt><dd>The share of sent requests whose log entry carries the SHA-256 of
a referral form that passed the check (right case, readable, no active content) and was
attached. Anything under 100% is shown in red.</dd>
<dt>Refused</dt><dd>Requests stopped before sending (for example no form, wrong case's form,
address not in the partner directory), with the reason codes.</dd>
<dt>Retries</dt><dd>Attempts the gateway did not accept and that were tried again
(the last failed attempt of a failed request is counted under Failed, not here).</dd>
<dt>Median prepared → sent</dt><dd>Time from the request being built and logged to the
gateway accepting it.</dd>
<dt>What the log holds</dt><dd>References, partner agencies, addresses, times, gateway ids
and form fingerprints. It never holds message bodies or the child's details.</dd>
</dl>
</body>
</html>
"""


__all__ = [
    "Figures",
    "ReportData",
    "Tally",
    "build_report",
    "render_chart",
    "render_html",
    "tally",
    "write_report",
]
