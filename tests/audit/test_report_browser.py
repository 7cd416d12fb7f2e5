"""The evidence report as a person sees it: opened in headless Chromium, and printed to PDF."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from audit_helpers import prepared, sent

from mash_requests.audit import Event, EventKind, StoredEvent
from mash_requests.audit.report import ReportData, tally, write_report
from mash_requests.audit.sqlite import SQLiteEventStore
from mash_requests.audit.timeliness import timeliness
from mash_requests.audit.verify import verify_chain
from mash_requests.deadlines import Timescales

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium; "
        ".ci/run installs it)",
    ),
]

PARTNERS = ("police", "health", "education", "probation")
NAMES = {
    "police": "Eastshire Police",
    "health": "Eastshire Health Safeguarding Team (NHS ICB)",
    "education": "Eastshire Schools",
    "probation": "Probation Service",
}


def six_months() -> list[StoredEvent]:
    """Requests to four partners over six months; a few sent without the form in March."""
    events: list[StoredEvent] = []
    start = datetime(2026, 1, 6, 9, 0, tzinfo=UTC)
    for day in range(0, 168, 3):  # 6 Jan to 21 Jun
        for index, partner in enumerate(PARTNERS):
            if (day + index) % 4 == 0:
                continue
            case = f"MASH-2026-{day:04d}"
            ref = f"{case}-{partner}"
            when = start + timedelta(days=day, minutes=index * 7)
            without_form = 60 <= day < 90 and index == 1
            due = (when + timedelta(hours=24)).isoformat()
            follow_ups = []
            if (day + index) % 5 == 0:
                follow_ups.append((3600 * 30, Event(EventKind.CHASED, case, request_ref=ref)))
            elif (day + index) % 7 == 0:
                follow_ups.append((600, Event(EventKind.BOUNCED, case, request_ref=ref)))
            else:  # answered: health late, the others within the day
                hours = 30 + day % 10 if partner == "health" else 4 + index * 3 + day % 5
                follow_ups.append((3600 * hours, Event(EventKind.REPLIED, case, request_ref=ref)))
            for offset, event in (
                (
                    0,
                    prepared(
                        case,
                        partner=partner,
                        request_ref=ref,
                        request_key=f"key-{ref}",
                        details={"due": due, "rag": "amber"},
                    ),
                ),
                (
                    42 + index,
                    sent(
                        case,
                        partner=partner,
                        request_ref=ref,
                        request_key=f"key-{ref}",
                        form_sha256=None if without_form else "ab" * 32,
                    ),
                ),
                *follow_ups,
            ):
                events.append(
                    StoredEvent(
                        seq=len(events) + 1,
                        recorded_at=when + timedelta(seconds=offset),
                        event=event,
                        prev_hash="0" * 64,
                        hash="1" * 64,
                    )
                )
    events.append(
        StoredEvent(
            seq=len(events) + 1,
            recorded_at=start + timedelta(days=30),
            event=Event(
                EventKind.REJECTED, "MASH-2026-0999", partner="police", reason="wrong_case"
            ),
            prev_hash="0" * 64,
            hash="1" * 64,
        )
    )
    return events


@pytest.fixture
def report_file(tmp_path: Path) -> Path:
    store = SQLiteEventStore(tmp_path / "log.sqlite3")
    try:
        store.append_many([prepared(), sent()])
        data = ReportData(
            title="Testbury MASH: requests for information",
            since=None,
            until=None,
            generated_at=datetime.now(UTC),
            location=str(store.path),
            verification=verify_chain(store),
            tally=tally(six_months()),
            marking="OFFICIAL-SENSITIVE",
            partner_names=NAMES,
            timeliness=timeliness(
                six_months(), timescales=Timescales.defaults(), now=datetime(2026, 7, 1, tzinfo=UTC)
            ),
        )
    finally:
        store.close()
    path = tmp_path / "report.html"
    write_report(data, path)
    return path


def test_report_renders_chart_and_figures_in_chromium(report_file: Path) -> None:
    """In Chromium the chart is visible with its bars and rate line, and the figures render."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--headless", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(report_file.as_uri())

            chart = page.locator("svg#chart")
            assert chart.is_visible()
            box = chart.bounding_box()
            assert box is not None and box["width"] > 600 and box["height"] > 200
            bars = page.locator("svg#chart rect.bar")
            assert bars.count() == 6 * len(PARTNERS)  # six months, four agencies
            assert all(bars.nth(i).bounding_box()["height"] > 1 for i in range(bars.count()))  # type: ignore[index]
            assert page.locator("svg#chart path.rate-line").is_visible()
            assert page.locator("svg#chart circle.rate-dot").count() == 6

            assert "Intact." in page.locator("#verification").inner_text()
            totals = page.locator("#totals").inner_text()
            assert "requests sent" in totals
            assert "sent with the referral form attached" in totals
            assert "%" in totals
            police_row = page.locator("table").nth(0).locator("tr", has_text="Eastshire Police")
            assert police_row.locator("td").nth(0).inner_text().strip().isdigit()
            reasons = police_row.locator("td.reasons").inner_text()
            assert "another case's form wrong_case ×1" in reasons.replace("\xa0", " ")

            legend = page.locator("svg#chart text.legend").all_text_contents()
            assert legend == [NAMES[key] for key in sorted(NAMES)] + ["form attached (%)"]
            top, bottom = page.locator("#marking-top"), page.locator("#marking-bottom")
            assert top.inner_text() == bottom.inner_text() == "OFFICIAL-SENSITIVE"
            top_box, bottom_box = top.bounding_box(), bottom.bounding_box()
            assert top_box is not None and bottom_box is not None
            assert top_box["y"] < 40
            page_height = page.evaluate("document.documentElement.scrollHeight")
            assert bottom_box["y"] + bottom_box["height"] > page_height - 80

            chart = page.locator("svg#timeliness-chart")
            assert chart.is_visible()
            box = chart.bounding_box()
            assert box is not None and box["width"] > 600 and box["height"] > 150
            labels = page.locator("svg#timeliness-chart text.legend").all_text_contents()
            assert labels[0] == "All agencies"
            assert labels[2] == NAMES["education"]  # label, rate, label, rate, …
            assert "in time (" in labels[1]
            segments = page.locator("svg#timeliness-chart rect.segment")
            assert segments.count() >= 5 * 3
            widths = [segments.nth(i).bounding_box()["width"] for i in range(segments.count())]  # type: ignore[index]
            assert all(width > 0 for width in widths)
            health = page.locator("table.timeliness").nth(0).locator("tr", has_text=NAMES["health"])
            cells = health.locator("td").all_inner_texts()
            assert cells[2].startswith("0%")  # every answer from health came late
            assert cells[3].endswith(" h") and cells[4].endswith(" h")

            for chart_id in ("chart", "timeliness-chart"):  # no label cut off at either side
                frame = page.locator(f"svg#{chart_id}").bounding_box()
                assert frame is not None
                texts = page.locator(f"svg#{chart_id} text")
                for index in range(texts.count()):
                    text_box = texts.nth(index).bounding_box()
                    assert text_box is not None
                    assert frame["x"] - 1 <= text_box["x"]
                    assert text_box["x"] + text_box["width"] <= frame["x"] + frame["width"] + 1
                    assert text_box["y"] + text_box["height"] <= frame["y"] + frame["height"] + 1

            page.screenshot(path=str(ARTIFACTS / "audit-report.png"), full_page=True)
            pdf = page.pdf(path=str(ARTIFACTS / "audit-report.pdf"), prefer_css_page_size=True)
            assert pdf.startswith(b"%PDF")
            page.emulate_media(media="print")
            assert page.locator("svg#chart").is_visible()
        finally:
            browser.close()
