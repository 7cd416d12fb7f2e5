"""The form check's verdict rests on bounded work, not on the machine's speed or load.

A well-formed file is decided by counted work alone (pages and decoded bytes of text
searched, objects walked, pages in the tree); the wall-clock guard is a last resort that
only a damaged or unusually bulky file arms. The large document is generated here with
reportlab, as a real exported report would be.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator

import pytest

from mash_requests.referral_form import (
    TEXT_BYTE_LIMIT,
    TEXT_PAGE_LIMIT,
    Reason,
    Verdict,
    check_form,
    reading,
    safety,
)
from mash_requests.referral_form import check as check_module
from test_referral_form import REF, broken_startxref, build_pdf, raw_pdf

SENTENCE = (
    "the multi agency safeguarding hub received a contact about the child and shared "
    "information with partner agencies who were asked for what they hold within the timescale"
)
WORDS = SENTENCE.split(" ")


def long_report(pages: int = 117, lines: int = 80, text_on_last: str = "") -> bytes:
    """A valid text-heavy PDF as a word processor exports it: ~1.8 MB for 117 pages."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=A4, pageCompression=0, invariant=1)
    for page in range(pages):
        pdf.setFont("Helvetica", 7)
        for line in range(lines):
            words = " ".join(WORDS[(line * 7 + n + page) % len(WORDS)] for n in range(22))
            pdf.drawString(30, 815 - line * 10, f"{page + 1}.{line + 1} {words}")
        if page == pages - 1 and text_on_last:
            pdf.drawString(30, 20, text_on_last)
        pdf.showPage()
    pdf.save()
    return out.getvalue()


@pytest.fixture(scope="module")
def report() -> bytes:
    """The 117-page, ~1.8 MB document without the case reference (built once)."""
    return long_report()


def test_the_generated_report_is_the_size_of_the_issue(report: bytes) -> None:
    """The generated document is the 117-page, 1.8 MB file of the issue, and well-formed."""
    assert 1_600_000 < len(report) < 2_100_000
    assert check_form(report, REF).pages == 117


def test_a_large_well_formed_file_without_the_reference_is_case_ref_missing(report: bytes) -> None:
    """The 117-page report gets case_ref_missing, naming how many of its pages were searched."""
    verdict = check_form(report, REF)
    assert verdict.reason is Reason.CASE_REF_MISSING
    searched = verdict.pages_searched
    assert searched is not None and 1 <= searched < 117
    assert f"every form field and the text of the first {searched} of 117 pages" in verdict.detail
    assert f"at most {TEXT_PAGE_LIMIT} pages and {TEXT_BYTE_LIMIT // 1024} KB" in verdict.detail


def test_the_verdict_is_the_same_with_no_time_at_all_or_all_the_time(report: bytes) -> None:
    """A guard budget of 0 s (an infinitely slow machine) and of a day give the same verdict."""
    starved = check_form(report, REF, time_limit=0.0)
    unhurried = check_form(report, REF, time_limit=86_400.0)
    assert starved == unhurried
    assert starved.reason is Reason.CASE_REF_MISSING


def test_the_verdict_is_the_same_when_the_clock_races(
    report: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a clock that jumps an hour at every reading, the verdict is unchanged."""
    expected = check_form(report, REF)
    hours: Iterator[int] = itertools.count(step=3600)
    monkeypatch.setattr(reading, "_clock", lambda: float(next(hours)))
    assert check_form(report, REF) == expected


def test_a_well_formed_file_never_reads_the_clock_after_starting(
    report: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checking a well-formed file reads the guard's clock once, to start it, and never again."""
    readings: list[float] = []

    def clock() -> float:
        readings.append(0.0)
        return 0.0

    monkeypatch.setattr(reading, "_clock", clock)
    check_form(report, REF)
    assert len(readings) == 1


def test_the_reference_past_the_text_budget_is_not_found_but_within_it_is() -> None:
    """The byte budget, not the clock, decides which pages are searched."""
    data = long_report(pages=30, text_on_last=f"Case reference {REF}")
    within: Verdict = check_form(data, REF, text_byte_limit=10 * 1024 * 1024)
    beyond = check_form(data, REF)
    assert within.accepted
    assert within.found_in == "page 30"
    assert within.pages_searched == 30
    assert beyond.reason is Reason.CASE_REF_MISSING
    assert beyond.pages_searched is not None and beyond.pages_searched < 30


def test_a_short_form_is_searched_whole_and_says_so() -> None:
    """A two-page form without the reference says every field and all its pages were searched."""
    verdict = check_form(build_pdf(("MASH Referral Form", "Page two")), REF)
    assert verdict.reason is Reason.CASE_REF_MISSING
    assert "searched every form field and the text of all 2 pages" in verdict.detail
    assert verdict.pages_searched == 2


def test_a_reference_in_a_field_searches_no_page_text() -> None:
    """When a field binds the form, pages_searched is 0: no page text was needed."""
    verdict = check_form(build_pdf(fields={"case_reference": REF}), REF)
    assert verdict.accepted
    assert verdict.pages_searched == 0


def test_more_objects_than_the_bound_is_too_complex_to_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past MAX_OBJECTS the walk stops: unreadable, too complex to check, whatever the clock."""
    monkeypatch.setattr(safety, "MAX_OBJECTS", 200)
    items = " ".join(f"<< /N {n} >>" for n in range(300))
    data = build_pdf((f"Case {REF}",), catalog="/Junk 100 0 R", objects={100: f"[{items}]"})
    verdict = check_form(data, REF, time_limit=86_400.0)
    assert verdict.reason is Reason.UNREADABLE
    assert "too complex to check" in verdict.detail
    assert "more than 200 objects" in verdict.detail


def test_a_page_tree_claiming_too_many_pages_is_refused_unread() -> None:
    """A /Count above MAX_PAGES is refused before pypdf reads the page tree."""
    data = raw_pdf(
        {
            1: "<< /Type /Catalog /Pages 2 0 R >>",
            2: "<< /Type /Pages /Kids [3 0 R] /Count 999999 >>",
            3: "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 9 9] >>",
        }
    )
    verdict = check_form(data, REF)
    assert verdict.reason is Reason.UNREADABLE
    assert f"more than {check_module.MAX_PAGES:,} pages" in verdict.detail


def test_a_damaged_file_arms_the_guard() -> None:
    """A file pypdf must repair is checked under the guard: with no time left, too complex."""
    assert check_form(broken_startxref(), REF).accepted
    verdict = check_form(broken_startxref(), REF, time_limit=0.0)
    assert verdict.reason is Reason.UNREADABLE
    assert "too complex to check" in verdict.detail


def test_misplaced_objects_arm_the_guard_and_are_bounded() -> None:
    """References to objects not where the xref says arm the guard before pypdf scans."""
    refs = " ".join(f"{n} 0 R" for n in range(100_000, 100_050))
    data = build_pdf((f"Case {REF}",), catalog="/Junk 100 0 R", objects={100: f"[{refs}]"})
    assert check_form(data, REF, time_limit=86_400.0).accepted
    assert check_form(data, REF, time_limit=0.0).reason is Reason.UNREADABLE


def test_a_page_drawing_one_form_xobject_over_and_over_is_bounded() -> None:
    """Text extraction runs out of operators, not time, on a page that redraws an XObject."""
    from test_referral_form import stream

    drawing = b"BT /F1 9 Tf " + b"(filler text) Tj " * 2000 + b"ET"
    content = b"q /X1 Do Q " * 500 + f"BT /F1 9 Tf 72 72 Td (Case {REF}) Tj ET".encode()
    data = build_pdf(
        objects={
            10: "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 11 0 R "
            "/Resources << /Font << /F1 3 0 R >> /XObject << /X1 100 0 R >> >> >>",
            11: stream(content),
            100: stream(
                drawing,
                "/Type /XObject /Subtype /Form /BBox [0 0 595 842] "
                "/Resources << /Font << /F1 3 0 R >> >> ",
            ),
        }
    )
    starved = check_form(data, REF, time_limit=0.0)
    assert starved == check_form(data, REF, time_limit=86_400.0)
    assert starved.reason is Reason.CASE_REF_MISSING
    assert "page 1's text could not be read or is too large to search" in starved.detail
