"""The referral-form check, filling and reading, on PDFs generated here.

The builders at the top write PDFs byte by byte, so each test states exactly which structure
it exercises (script in one place, a file attachment, a cyclic tree, a field value …).
``test_referral_form_corpus.py`` runs the real-world corpus; ``test_form_cli.py`` the CLI.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import time
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mash_requests.errors import InputError
from mash_requests.referral_form import (
    CHECK_TIME_LIMIT,
    DEFAULT_FILL_MAPPING,
    DEFAULT_MAX_SIZE,
    TEXT_PAGE_LIMIT,
    Reason,
    Verdict,
    check_form,
    contains_case_ref,
    fill_form,
    form_field_names,
    read_form,
    write_form,
)

REPO = Path(__file__).resolve().parents[1]
BLANK_FORM = REPO / "examples" / "forms" / "blank-referral-form.pdf"
REF = "MASH-2026-0412"
NEIGHBOUR = "MASH-2026-0413"
#: Every check ends within the last-resort guard (plus slack for a loaded machine): hostile
#: files are stopped by bounds on work or, once they show damage, by the guard.
TIME_LIMIT = CHECK_TIME_LIMIT + 2.0


# --------------------------------------------------------------------------------------------
# Builders


def pdf_string(text: str) -> str:
    """A PDF string literal: escaped ASCII, or UTF-16BE hex for anything else."""
    if text.isascii():
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        return f"({escaped})"
    return "<FEFF" + text.encode("utf-16-be").hex().upper() + ">"


def stream(data: bytes, extra: str = "") -> bytes:
    """An uncompressed stream object body."""
    return f"<< /Length {len(data)} {extra}>>\nstream\n".encode() + data + b"\nendstream"


def raw_pdf(objects: Mapping[int, bytes | str], *, root: int = 1, trailer: str = "") -> bytes:
    """A complete PDF from numbered object bodies, with a correct xref table."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets: dict[int, int] = {}
    for number in sorted(objects):
        body = objects[number]
        offsets[number] = len(out)
        out += f"{number} 0 obj\n".encode()
        out += body.encode("latin-1") if isinstance(body, str) else body
        out += b"\nendobj\n"
    size = max(objects) + 1
    xref = len(out)
    out += f"xref\n0 {size}\n0000000000 65535 f \n".encode()
    for number in range(1, size):
        if number in offsets:
            out += f"{offsets[number]:010d} 00000 n \n".encode()
        else:
            out += b"0000000000 65535 f \n"
    out += f"trailer\n<< /Size {size} /Root {root} 0 R {trailer}>>\n".encode()
    out += f"startxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def page_content(text: str) -> bytes:
    """A content stream showing ``text``, one PDF text line per line of it."""
    lines = text.split("\n")
    ops = ["BT /F1 11 Tf 14 TL 72 740 Td"]
    for index, line in enumerate(lines):
        escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        ops.append(("T* " if index else "") + f"({escaped}) Tj")
    ops.append("ET")
    return " ".join(ops).encode("latin-1")


def build_pdf(
    pages: Sequence[str] = ("MASH Referral Form",),
    *,
    fields: Mapping[str, str] | None = None,
    acroform: bool = True,
    catalog: str = "",
    page_extra: str = "",
    annots: Sequence[str] = (),
    objects: Mapping[int, bytes | str] | None = None,
) -> bytes:
    """A PDF with one text line (or more) per page and text fields on page 1.

    Object numbers: 1 catalogue, 2 page tree, 3 font, 10+2i page i and 11+2i its content,
    5000+ field widgets, 6000+ extra annotations; ``objects`` may add any others (use
    100–999). ``catalog``, ``page_extra`` and ``annots`` are raw PDF syntax.
    """
    body: dict[int, bytes | str] = {
        3: "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
    }
    widget_refs: list[str] = []
    for index, (name, value) in enumerate((fields or {}).items()):
        number = 5000 + index
        y = 700 - 30 * index
        body[number] = (
            f"<< /Type /Annot /Subtype /Widget /FT /Tx /T {pdf_string(name)} "
            f"/V {pdf_string(value)} /Rect [200 {y} 500 {y + 20}] /F 4 /P 10 0 R "
            "/DA (/Helv 10 Tf 0 g) >>"
        )
        widget_refs.append(f"{number} 0 R")
    annot_refs = list(widget_refs)
    for index, annot in enumerate(annots):
        body[6000 + index] = annot
        annot_refs.append(f"{6000 + index} 0 R")
    kids = []
    for index, text in enumerate(pages):
        page_number, content_number = 10 + 2 * index, 11 + 2 * index
        kids.append(f"{page_number} 0 R")
        extra = page_extra if index == 0 else ""
        annot_entry = f"/Annots [{' '.join(annot_refs)}]" if index == 0 and annot_refs else ""
        body[page_number] = (
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {content_number} 0 R "
            f"{annot_entry} {extra}>>"
        )
        body[content_number] = stream(page_content(text))
    body[2] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>"
    form = ""
    if acroform and widget_refs:
        form = (
            f"/AcroForm << /Fields [{' '.join(widget_refs)}] /DA (/Helv 10 Tf 0 g) "
            "/DR << /Font << /Helv 3 0 R >> >> >>"
        )
    body[1] = f"<< /Type /Catalog /Pages 2 0 R {form} {catalog}>>"
    body.update(objects or {})
    return raw_pdf(body)


def rewrite(data: bytes, *, password: str | None = None, owner: str = "owner-secret") -> bytes:
    """The same document written again by pypdf, encrypted (AES-256) when a password is given."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    if password is not None:
        writer.encrypt(password, owner, algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def with_attachment(data: bytes) -> bytes:
    """The document with a file in its EmbeddedFiles name tree (pypdf add_attachment)."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.add_attachment("notes.txt", b"invented notes\n")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def timed_check(data: bytes, case_ref: str = REF, **options: object) -> Verdict:
    """check_form, asserting the issue's time bound."""
    started = time.perf_counter()
    verdict = check_form(data, case_ref, **options)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - started
    assert elapsed < TIME_LIMIT, f"check took {elapsed:.2f} s"
    return verdict


def filled_form(case_ref: str = REF) -> bytes:
    """A form with the case reference in its case_reference field only."""
    return build_pdf(
        ("MASH Referral Form (MARF)\nOFFICIAL-SENSITIVE",),
        fields={"case_reference": case_ref, "child_name": "Leo Hartley"},
    )


# --------------------------------------------------------------------------------------------
# The verdict value


def test_accepted_verdict_carries_the_fingerprint_of_the_bytes_checked() -> None:
    """An accepted verdict gives the SHA-256 and size of the exact bytes, the pages and where."""
    data = filled_form()
    verdict = check_form(data, REF)
    assert verdict.accepted
    assert verdict.reason is Reason.ACCEPTED
    assert verdict.sha256 == hashlib.sha256(data).hexdigest()
    assert verdict.size == len(data)
    assert verdict.pages == 1
    assert verdict.found_in == "field case_reference"


def test_refused_verdict_still_carries_the_fingerprint() -> None:
    """A refusal is fingerprinted too, so the log can say which bytes were refused."""
    data = b"not a pdf"
    verdict = check_form(data, REF)
    assert not verdict.accepted
    assert verdict.sha256 == hashlib.sha256(data).hexdigest()
    assert verdict.size == 9
    assert verdict.pages is None
    assert verdict.found_in is None


def test_to_json_gives_every_field_as_plain_values() -> None:
    """to_json has accepted, reason (a string), detail, sha256, size, pages, found_in and
    pages_searched."""
    verdict = check_form(filled_form(), REF)
    assert verdict.to_json() == {
        "accepted": True,
        "reason": "accepted",
        "detail": verdict.detail,
        "sha256": verdict.sha256,
        "size": verdict.size,
        "pages": 1,
        "found_in": "field case_reference",
        "pages_searched": 0,
    }
    assert type(verdict.to_json()["reason"]) is str


def test_reason_codes_are_the_closed_set_of_the_issue() -> None:
    """The reason codes are exactly the ten the dispatch log and API document."""
    assert {str(r) for r in Reason} == {
        "accepted", "not_pdf", "unreadable", "encrypted", "no_pages", "active_content",
        "embedded_file", "too_large", "case_ref_missing", "wrong_case",
    }  # fmt: skip


# --------------------------------------------------------------------------------------------
# Not a PDF, unreadable, never a crash


@pytest.mark.parametrize(
    "data",
    [b"", b"hello", b"%PD", b"PK\x03\x04" + b"\0" * 2000, b"\x89PNG\r\n\x1a\n" + b"x" * 100],
    ids=["empty", "text", "short-header", "zip", "png"],
)
def test_bytes_without_a_pdf_header_are_not_pdf(data: bytes) -> None:
    """Empty files and other formats are refused as not_pdf."""
    assert check_form(data, REF).reason is Reason.NOT_PDF


@pytest.mark.parametrize(
    "cut",
    [lambda d: d[:-6], lambda d: d[: len(d) // 2], lambda d: d[:1024]],
    ids=["-6", "half", "1k"],
)
def test_truncated_files_are_unreadable(cut: object) -> None:
    """A valid form cut short (the end marker lost) is refused as unreadable, in time."""
    data = cut(filled_form())  # type: ignore[operator]
    assert timed_check(data).reason is Reason.UNREADABLE


def test_truncated_detail_says_the_file_was_cut_off() -> None:
    """The sentence for a cut-off file tells the person to get a complete copy."""
    detail = check_form(filled_form()[:-6], REF).detail
    assert "cut off" in detail
    assert "complete copy" in detail


def test_a_broken_xref_is_tolerated_when_the_file_is_complete() -> None:
    """A complete file whose xref offsets are wrong is rebuilt, as viewers do, and checked."""
    assert timed_check(broken_startxref()).reason is Reason.ACCEPTED


def test_garbage_body_with_header_and_end_marker_is_unreadable() -> None:
    """Header and %%EOF around noise give unreadable, not a traceback."""
    data = b"%PDF-1.7\n" + bytes(range(256)) * 8 + b"\n%%EOF\n"
    assert timed_check(data).reason is Reason.UNREADABLE


def test_cyclic_page_tree_is_unreadable() -> None:
    """A page tree whose Kids lead back to itself is refused as unreadable, without hanging."""
    data = raw_pdf(
        {
            1: "<< /Type /Catalog /Pages 2 0 R >>",
            2: "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            3: "<< /Type /Pages /Kids [2 0 R] /Count 1 /Parent 2 0 R >>",
        }
    )
    assert timed_check(data).reason is Reason.UNREADABLE


def test_cyclic_action_chain_does_not_hang_the_walk() -> None:
    """An OpenAction whose /Next chain loops is walked once and the form is checked."""
    data = build_pdf(
        (f"Case {REF}",),
        catalog="/OpenAction 100 0 R",
        objects={
            100: "<< /S /GoTo /D [10 0 R /Fit] /Next 101 0 R >>",
            101: "<< /S /GoTo /D [10 0 R /Fit] /Next 100 0 R >>",
        },
    )
    assert timed_check(data).reason is Reason.ACCEPTED


def test_zero_pages_is_no_pages() -> None:
    """A well-formed PDF with an empty page tree is refused as no_pages."""
    data = raw_pdf(
        {1: "<< /Type /Catalog /Pages 2 0 R >>", 2: "<< /Type /Pages /Kids [] /Count 0 >>"}
    )
    verdict = timed_check(data)
    assert verdict.reason is Reason.NO_PAGES
    assert verdict.pages == 0


def test_missing_catalogue_is_unreadable() -> None:
    """A trailer whose /Root points nowhere is refused as unreadable."""
    data = raw_pdf({2: "<< /Type /Pages /Kids [] /Count 0 >>"}, root=1)
    assert timed_check(data).reason in {Reason.UNREADABLE, Reason.NO_PAGES}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1, max_size=12))
def test_fuzzed_forms_never_raise(mutations: list[tuple[int, int]]) -> None:
    """Random byte changes to a valid form give a verdict within the time bound, never a raise."""
    data = bytearray(filled_form())
    for position, value in mutations:
        data[position % len(data)] = value
    verdict = timed_check(bytes(data))
    assert isinstance(verdict.reason, Reason)
    assert verdict.detail


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_between_header_and_end_marker_never_raise(body: bytes) -> None:
    """Whatever lies between %PDF- and %%EOF, check_form returns a verdict."""
    verdict = timed_check(b"%PDF-1.4\n" + body + b"\n%%EOF\n")
    assert verdict.reason is not Reason.ACCEPTED


def broken_startxref() -> bytes:
    """A complete form whose startxref offset is wrong: pypdf warns, rebuilds and reads it."""
    data = filled_form()
    start = data.rindex(b"startxref\n") + len(b"startxref\n")
    return data[:start] + b"12" + data[data.index(b"\n", start) :]


def test_pypdf_warnings_are_relogged_at_debug_and_stop_there() -> None:
    """pypdf's records never reach the root logger; they come back as our DEBUG records."""

    class Collect(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.DEBUG)
            self.records: list[logging.LogRecord] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.records.append(record)

    root = logging.getLogger()
    handler, level = Collect(), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        check_form(broken_startxref(), REF)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    assert not [r for r in handler.records if r.name.startswith("pypdf")]
    ours = [r for r in handler.records if r.name == "mash_requests.referral_form"]
    assert any(r.getMessage().startswith("pypdf warning") for r in ours)
    assert all(r.levelno == logging.DEBUG for r in ours)


def test_nothing_reaches_the_terminal_in_a_fresh_process(tmp_path: Path) -> None:
    """Checking a file pypdf has to repair prints nothing to stderr (no logging set up)."""
    import subprocess
    import sys

    path = tmp_path / "broken.pdf"
    path.write_bytes(broken_startxref())
    script = (
        "import sys; from pathlib import Path; "
        "from mash_requests.referral_form import check_form; "
        f"print(check_form(Path(sys.argv[1]).read_bytes(), {REF!r}).reason)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "accepted"
    assert done.stderr == ""


def test_a_damaged_file_past_the_guard_is_too_complex_to_check() -> None:
    """A file pypdf must repair, once the last-resort guard runs out, is unreadable, saying so."""
    verdict = check_form(broken_startxref(), REF, time_limit=0.0)
    assert verdict.reason is Reason.UNREADABLE
    assert "too complex to check" in verdict.detail
    assert "last resort" in verdict.detail


def test_thousands_of_dangling_references_are_checked_in_time() -> None:
    """References to objects that do not exist (each a file rescan for pypdf) are bounded."""
    refs = " ".join(f"{n} 0 R" for n in range(100_000, 150_000))
    data = build_pdf((f"Case {REF}",), catalog="/Junk 100 0 R", objects={100: f"[{refs}]"})
    assert timed_check(data, time_limit=60.0).accepted


def test_wrong_offsets_for_every_object_end_in_time() -> None:
    """An xref whose every offset is wrong (a rescan per object) gets a verdict in time."""
    body: dict[int, bytes | str] = {
        1: "<< /Type /Catalog /Pages 2 0 R /Junk 4 0 R >>",
        2: "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        3: "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 9 9] >>",
        4: "[" + " ".join(f"{n} 0 R" for n in range(5, 20_005)) + "]",
    }
    body.update(dict.fromkeys(range(5, 20_005), "(filler)"))
    data = raw_pdf(body)
    head, _, table = data.partition(b"xref\n")
    shifted = re.sub(rb"(\d{10}) 00000 n ", lambda m: b"%010d 00000 n " % (int(m[1]) + 3), table)
    assert isinstance(timed_check(head + b"xref\n" + shifted).reason, Reason)


def test_lost_catalogue_in_a_large_file_is_unreadable_in_time() -> None:
    """A corrupt /Root makes pypdf hunt for the catalogue; the hunt is bounded."""
    data = bytearray(build_pdf([f"Page {n}" for n in range(1, 300)], fields={"a": REF}))
    data[data.index(b"/Type /Catalog") + 1] = ord("X")  # "/Xype": no catalogue anywhere
    assert timed_check(bytes(data)).reason is Reason.UNREADABLE


def huge_content_page(fields: Mapping[str, str] | None = None) -> bytes:
    """One page whose 80 MB of text operators compress to a few hundred kB."""
    ops = b"BT /F1 11 Tf 72 740 Td " + b"(Lorem ipsum dolor sit amet) Tj 0 -1 Td " * 2_000_000
    packed = zlib.compress(ops + b"ET")
    return build_pdf(fields=fields, objects={11: stream(packed, "/Filter /FlateDecode")})


def test_page_with_huge_content_is_not_searched_and_says_so() -> None:
    """A page with megabytes of text operators is skipped in time, and the sentence says so."""
    verdict = timed_check(huge_content_page())
    assert verdict.reason is Reason.CASE_REF_MISSING
    assert "could not be read or is too large" in verdict.detail


def test_field_binds_a_form_whose_page_content_is_huge() -> None:
    """The case-reference field is read without touching the page content."""
    assert timed_check(huge_content_page({"case_reference": REF})).accepted


# --------------------------------------------------------------------------------------------
# Size


def test_over_the_maximum_is_too_large_with_both_sizes() -> None:
    """A form over max_size is refused as too_large, and the sentence gives size and limit."""
    data = filled_form()
    verdict = check_form(data, REF, max_size=len(data) - 1)
    assert verdict.reason is Reason.TOO_LARGE
    assert "over the" in verdict.detail
    assert "form.max_size_mb" in verdict.detail


def test_sizes_just_over_the_limit_are_shown_in_bytes() -> None:
    """When MB would show size and limit alike, the sentence gives both in bytes."""
    data = filled_form()
    detail = check_form(data, REF, max_size=len(data) - 1).detail
    assert f"{len(data):,} bytes, over the {len(data) - 1:,} bytes limit" in detail


def test_exactly_the_maximum_is_allowed() -> None:
    """The limit is inclusive: a form of exactly max_size bytes is checked normally."""
    data = filled_form()
    assert check_form(data, REF, max_size=len(data)).accepted


def test_default_maximum_is_ten_megabytes() -> None:
    """Without max_size, anything over 10 MiB is refused before it is parsed."""
    assert DEFAULT_MAX_SIZE == 10 * 1024 * 1024
    data = b"%PDF-1.7\n" + b"0" * (DEFAULT_MAX_SIZE + 1024 * 1024) + b"\n%%EOF\n"
    verdict = timed_check(data)
    assert verdict.reason is Reason.TOO_LARGE
    assert verdict.size == len(data)
    assert "over the 10 MB limit" in verdict.detail


# --------------------------------------------------------------------------------------------
# Encryption


def test_form_needing_a_password_is_encrypted_without_one() -> None:
    """An AES-256 form with a user password is refused as encrypted when none is given."""
    data = rewrite(filled_form(), password="s3cret")
    verdict = timed_check(data)
    assert verdict.reason is Reason.ENCRYPTED
    assert "password" in verdict.detail


def test_form_opens_and_is_checked_with_its_password() -> None:
    """With the right password an encrypted form is checked like any other and accepted."""
    data = rewrite(filled_form(), password="s3cret")
    verdict = timed_check(data, password="s3cret")
    assert verdict.accepted
    assert verdict.sha256 == hashlib.sha256(data).hexdigest()  # the encrypted bytes, as sent


def test_owner_password_also_opens_the_form() -> None:
    """The owner password opens an encrypted form as well as the user password."""
    data = rewrite(filled_form(), password="s3cret", owner="boss")
    assert check_form(data, REF, password="boss").accepted


def test_wrong_password_is_encrypted_and_says_so() -> None:
    """A wrong password is refused as encrypted with a sentence about the password given."""
    data = rewrite(filled_form(), password="s3cret")
    verdict = timed_check(data, password="guess")
    assert verdict.reason is Reason.ENCRYPTED
    assert "does not open" in verdict.detail


def test_empty_user_password_opens_without_a_password() -> None:
    """A form encrypted with an empty user password is checked normally."""
    data = rewrite(filled_form(), password="")
    assert timed_check(data).accepted


def test_password_is_ignored_for_a_form_that_needs_none() -> None:
    """A configured password does not make an unencrypted (or empty-password) form fail."""
    assert check_form(filled_form(), REF, password="s3cret").accepted
    assert check_form(rewrite(filled_form(), password=""), REF, password="s3cret").accepted


def test_password_never_appears_in_the_verdict() -> None:
    """Neither the detail nor the JSON repeat the password."""
    data = rewrite(filled_form(), password="s3cret")
    verdict = check_form(data, REF, password="wrong-one")
    assert "wrong-one" not in str(verdict.to_json())


# --------------------------------------------------------------------------------------------
# Active content

JS = "<< /S /JavaScript /JS (app.alert\\('hi'\\)) >>"
LAUNCH = "<< /S /Launch /F (calc.exe) >>"


@pytest.mark.parametrize(
    ("options", "where"),
    [
        ({"catalog": f"/OpenAction {JS}"}, "open action"),
        ({"catalog": f"/OpenAction {LAUNCH}"}, "open action"),
        (
            {
                "catalog": "/Names << /JavaScript << /Names [(init) 100 0 R] >> >>",
                "objects": {100: JS},
            },
            "/Names /JavaScript",
        ),
        ({"catalog": f"/AA << /WC {JS} >>"}, "document's additional actions"),
        ({"page_extra": f"/AA << /O {JS} >>"}, "page 1's additional actions"),
        (
            {"annots": [f"<< /Type /Annot /Subtype /Link /Rect [0 0 10 10] /A {JS} >>"]},
            "page 1",
        ),
        (
            {"annots": [f"<< /Type /Annot /Subtype /Link /Rect [0 0 10 10] /A {LAUNCH} >>"]},
            "page 1",
        ),
        (
            {
                "annots": [
                    "<< /Type /Annot /Subtype /Widget /FT /Btn /T (go) /Rect [0 0 10 10] "
                    f"/A {JS} >>"
                ]
            },
            "page 1",
        ),
        (
            {
                "annots": [
                    "<< /Type /Annot /Subtype /Widget /FT /Tx /T (amount) /Rect [0 0 10 10] "
                    f"/AA << /K {JS} /F {JS} >> >>"
                ]
            },
            "page 1",
        ),
        (
            {"catalog": "/OpenAction << /S /GoTo /D [10 0 R /Fit] /Next 100 0 R >>",
             "objects": {100: JS}},
            "open action",
        ),
        (
            {"catalog": "/Outlines 100 0 R",
             "objects": {100: "<< /Type /Outlines /First 101 0 R /Last 101 0 R /Count 1 >>",
                         101: f"<< /Title (Go) /Parent 100 0 R /A {JS} >>"}},
            "bookmark",
        ),
        (
            {"catalog": "/OpenAction << /S /Rendition /OP 0 /JS (this.print\\(\\)) >>"},
            "open action",
        ),
    ],
    ids=[
        "openaction-js", "openaction-launch", "names-javascript", "document-aa", "page-aa",
        "link-js", "link-launch", "widget-action", "widget-aa", "next-chain", "bookmark",
        "rendition-js",
    ],
)  # fmt: skip
def test_script_anywhere_is_active_content(options: dict[str, object], where: str) -> None:
    """JavaScript or Launch in any place a viewer runs it is refused, and the place is named."""
    data = build_pdf((f"Case {REF}",), **options)  # type: ignore[arg-type]
    verdict = timed_check(data)
    assert verdict.reason is Reason.ACTIVE_CONTENT
    assert where in verdict.detail


def test_script_on_a_form_field_parent_is_active_content() -> None:
    """Actions on a non-widget parent field (reached from /AcroForm /Fields) are found."""
    data = build_pdf(
        (f"Case {REF}",),
        catalog="/AcroForm << /Fields [100 0 R] >>",
        annots=["<< /Type /Annot /Subtype /Widget /Parent 100 0 R /Rect [0 0 10 10] >>"],
        objects={100: f"<< /FT /Tx /T (total) /Kids [6000 0 R] /AA << /C {JS} >> >>"},
    )
    assert timed_check(data).reason is Reason.ACTIVE_CONTENT


def test_xfa_scripts_are_active_content() -> None:
    """An XFA form carrying <script> is refused as active content."""
    xfa = b'<xdp:xdp><template><script contentType="application/x-javascript">x</script>'
    data = build_pdf(
        (f"Case {REF}",),
        catalog="/AcroForm << /Fields [] /XFA 100 0 R >>",
        objects={100: stream(xfa + b"</template></xdp:xdp>")},
    )
    verdict = timed_check(data)
    assert verdict.reason is Reason.ACTIVE_CONTENT
    assert "XFA" in verdict.detail


@pytest.mark.parametrize(
    "options",
    [
        {"catalog": "/OpenAction [10 0 R /XYZ null null 0]"},
        {"catalog": "/OpenAction << /S /Named /N /Print >>"},
        {"catalog": "/OpenAction << /S /GoTo /D [10 0 R /Fit] >>"},
        {"annots": [
            "<< /Type /Annot /Subtype /Link /Rect [0 0 9 9] "
            "/A << /S /URI /URI (https://example.org) >> >>"
        ]},
    ],
    ids=["destination", "named-print", "goto", "uri-link"],
)  # fmt: skip
def test_destinations_and_named_actions_are_not_active_content(options: dict[str, str]) -> None:
    """A plain OpenAction destination, a Named action (Print), GoTo and URI links pass."""
    data = build_pdf((f"Case {REF}",), **options)  # type: ignore[arg-type]
    assert timed_check(data).accepted


def test_active_content_is_reported_before_a_missing_reference() -> None:
    """A scripted form is refused for its script even when its reference is also missing."""
    data = build_pdf(("No reference here",), catalog=f"/OpenAction {JS}")
    assert check_form(data, REF).reason is Reason.ACTIVE_CONTENT


# --------------------------------------------------------------------------------------------
# Embedded files


def test_file_in_the_embedded_files_tree_is_refused() -> None:
    """A file in /Names /EmbeddedFiles is refused as embedded_file."""
    verdict = timed_check(with_attachment(filled_form()))
    assert verdict.reason is Reason.EMBEDDED_FILE
    assert "EmbeddedFiles" in verdict.detail


def test_file_attachment_annotation_is_refused() -> None:
    """A FileAttachment annotation (which PdfReader.attachments does not list) is refused."""
    data = build_pdf(
        (f"Case {REF}",),
        annots=[
            "<< /Type /Annot /Subtype /FileAttachment /Rect [0 0 20 20] /Name /PushPin "
            "/FS << /Type /Filespec /F (notes.txt) /EF << /F 100 0 R >> >> >>"
        ],
        objects={100: stream(b"invented notes", "/Type /EmbeddedFile")},
    )
    verdict = timed_check(data)
    assert verdict.reason is Reason.EMBEDDED_FILE
    assert "file-attachment annotation on page 1" in verdict.detail


def test_file_attachment_annotation_without_data_is_still_refused() -> None:
    """A FileAttachment annotation is refused even when its file specification has no /EF."""
    data = build_pdf(
        (f"Case {REF}",),
        annots=["<< /Type /Annot /Subtype /FileAttachment /Rect [0 0 20 20] /FS (notes.txt) >>"],
    )
    assert timed_check(data).reason is Reason.EMBEDDED_FILE


def test_embedded_file_detail_does_not_name_the_attachment() -> None:
    """The attachment's file name (which may name a child) is not repeated in the sentence."""
    verdict = check_form(with_attachment(filled_form()), REF)
    assert "notes.txt" not in verdict.detail


# --------------------------------------------------------------------------------------------
# Case binding


def test_reference_in_the_case_reference_field_is_accepted() -> None:
    """The configured field holding the case reference binds the form to the case."""
    assert check_form(filled_form(), REF).found_in == "field case_reference"


def test_neighbouring_reference_in_the_field_is_wrong_case_naming_both() -> None:
    """A form filled for MASH-2026-0413 is wrong_case for MASH-2026-0412, naming both."""
    verdict = timed_check(filled_form(NEIGHBOUR))
    assert verdict.reason is Reason.WRONG_CASE
    assert NEIGHBOUR in verdict.detail
    assert REF in verdict.detail


def test_longer_reference_in_the_field_is_wrong_case() -> None:
    """MASH-2026-04123 in the field does not bind a form to MASH-2026-0412."""
    assert check_form(filled_form(REF + "3"), REF).reason is Reason.WRONG_CASE


def test_wrong_case_wins_over_the_reference_elsewhere() -> None:
    """The configured field holding another reference is wrong_case even if the text has ours."""
    data = build_pdf((f"Case {REF}",), fields={"case_reference": NEIGHBOUR})
    assert check_form(data, REF).reason is Reason.WRONG_CASE


def test_wrong_case_does_not_repeat_free_text_from_the_field() -> None:
    """A case_reference field holding free text (a name) is not echoed in the sentence."""
    data = build_pdf(fields={"case_reference": "Leo Hartley"})
    verdict = check_form(data, REF)
    assert verdict.reason is Reason.WRONG_CASE
    assert "Leo" not in verdict.detail


def test_reference_only_in_another_field_is_accepted() -> None:
    """With the configured field absent, any field value holding the reference binds it."""
    data = build_pdf(fields={"Text Box 1": f"Ref {REF}"})
    assert check_form(data, REF).found_in == "field Text Box 1"


def test_reference_in_page_text_is_accepted_with_the_page() -> None:
    """With no fields, the reference in the text of page 2 binds the form, found in page 2."""
    data = build_pdf(("MASH Referral Form", f"Case reference: {REF}\nChild details"))
    verdict = timed_check(data)
    assert verdict.accepted
    assert verdict.found_in == "page 2"


def test_empty_case_reference_field_falls_back_to_the_text() -> None:
    """An empty configured field is not a mismatch; the page text is searched."""
    data = build_pdf((f"Case reference: {REF}",), fields={"case_reference": "  "})
    assert check_form(data, REF).found_in == "page 1"


def test_filled_widgets_without_acroform_are_read() -> None:
    """Widgets carrying values with no /AcroForm in the catalogue still bind the form."""
    data = build_pdf(fields={"case_reference": REF}, acroform=False)
    assert check_form(data, REF).found_in == "field case_reference"


def test_widgets_without_acroform_still_give_wrong_case() -> None:
    """A neighbour's reference in a widget with no /AcroForm is still wrong_case."""
    data = build_pdf(fields={"case_reference": NEIGHBOUR}, acroform=False)
    assert check_form(data, REF).reason is Reason.WRONG_CASE


def test_qualified_field_name_matches_the_configured_field() -> None:
    """A case_reference field under a parent (page1.case_reference) is the configured field."""
    data = build_pdf(
        catalog="/AcroForm << /Fields [100 0 R] >>",
        annots=[
            f"<< /Type /Annot /Subtype /Widget /FT /Tx /T (case_reference) /V ({NEIGHBOUR}) "
            "/Parent 100 0 R /Rect [0 0 90 20] >>"
        ],
        objects={100: "<< /T (page1) /Kids [6000 0 R] >>"},
    )
    verdict = check_form(data, REF)
    assert verdict.reason is Reason.WRONG_CASE
    assert "page1.case_reference" in verdict.detail


def test_value_held_by_the_parent_field_is_read() -> None:
    """A value on the parent field (widgets as kids with no /V) binds the form."""
    data = build_pdf(
        catalog="/AcroForm << /Fields [100 0 R] >>",
        annots=["<< /Type /Annot /Subtype /Widget /Parent 100 0 R /Rect [0 0 90 20] >>"],
        objects={100: f"<< /FT /Tx /T (case_reference) /V ({REF}) /Kids [6000 0 R] >>"},
    )
    assert check_form(data, REF).found_in == "field case_reference"


def test_non_ascii_field_values_are_read() -> None:
    """UTF-16 field values are compared as text."""
    data = build_pdf(fields={"child_name": "Amira Novák", "case_reference": REF})
    assert check_form(data, REF).accepted


def test_neighbouring_reference_only_in_text_is_missing() -> None:
    """MASH-2026-04123 in the page text does not bind a form to MASH-2026-0412."""
    data = build_pdf((f"Case reference: {REF}3",))
    verdict = check_form(data, REF)
    assert verdict.reason is Reason.CASE_REF_MISSING
    assert REF in verdict.detail


def test_no_reference_anywhere_is_case_ref_missing() -> None:
    """A form with neither field nor text holding the reference is case_ref_missing."""
    data = build_pdf(("MASH Referral Form",), fields={"child_name": "Leo Hartley"})
    verdict = check_form(data, REF)
    assert verdict.reason is Reason.CASE_REF_MISSING
    assert "Leo" not in verdict.detail


def test_hyphenated_line_break_in_the_text_still_matches() -> None:
    """A reference broken over two lines at a hyphen is found in the page text."""
    data = build_pdf(("Case reference: MASH-2026-\n0412 (Amber)",))
    assert check_form(data, REF).found_in == "page 1"


def test_case_ref_field_none_treats_every_field_alike() -> None:
    """With case_ref_field=None, another reference in case_reference is not wrong_case."""
    data = build_pdf(fields={"case_reference": NEIGHBOUR, "other_ref": REF})
    verdict = check_form(data, REF, case_ref_field=None)
    assert verdict.found_in == "field other_ref"


def test_a_blank_case_reference_never_matches() -> None:
    """An empty or punctuation-only case reference refuses the form instead of matching all."""
    assert check_form(filled_form(), "").reason is Reason.CASE_REF_MISSING
    assert check_form(filled_form(), " -- ").reason is Reason.CASE_REF_MISSING


# --------------------------------------------------------------------------------------------
# Large documents


def test_five_hundred_pages_are_checked_in_time() -> None:
    """A 500-page form is walked fully (fields, actions) within the time bound."""
    data = build_pdf(
        [f"Page {n} of the assessment" for n in range(1, 501)], fields={"case_reference": REF}
    )
    verdict = timed_check(data)
    assert verdict.accepted
    assert verdict.pages == 500


def test_script_on_the_last_of_five_hundred_pages_is_found() -> None:
    """Page text is searched on the first pages only, but every page is walked for scripts."""
    pages = [f"Page {n}" for n in range(1, 501)]
    objects = {10 + 2 * 499: (
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 1009 0 R "
        f"/AA << /O {JS} >> >>"
    )}  # fmt: skip
    data = build_pdf(pages, fields={"case_reference": REF}, objects=objects)
    verdict = timed_check(data)
    assert verdict.reason is Reason.ACTIVE_CONTENT
    assert "page 500" in verdict.detail


def test_reference_beyond_the_text_page_limit_is_missing_and_says_so() -> None:
    """Text past the first TEXT_PAGE_LIMIT pages is not searched, and the sentence says so."""
    pages = [f"Page {n}" for n in range(1, 500)] + [f"Case {REF}"]
    verdict = timed_check(build_pdf(pages))
    assert verdict.reason is Reason.CASE_REF_MISSING
    assert f"first {TEXT_PAGE_LIMIT} of 500 pages" in verdict.detail
    assert verdict.pages_searched == TEXT_PAGE_LIMIT


# --------------------------------------------------------------------------------------------
# Reference matching

REFERENCES = st.from_regex(r"\A[A-Z]{2,5}-20[0-9]{2}-[0-9]{3,6}\Z")
NOISE = st.sampled_from([" ", "\n", "-\n", "  ", "\n ", "- \n"])
BEFORE = st.sampled_from(["", "Case reference: ", "Ref ", "(", "\n", "ref:", "«"])
AFTER = st.sampled_from(["", ".", " Child name", ")", "\n1. Child", ",", "\n"])
WORD_CHARS = "ABCXYZabcxyz0123456789"


@st.composite
def noisy(draw: st.DrawFn, ref: str) -> str:
    """The reference with extraction noise inside it and its letters' case changed."""
    positions = draw(st.lists(st.integers(1, len(ref) - 1), max_size=4, unique=True))
    out = ref
    for position in sorted(positions, reverse=True):
        out = out[:position] + draw(NOISE) + out[position:]
    flips = draw(st.lists(st.booleans(), min_size=len(out), max_size=len(out)))
    return "".join(c.swapcase() if flip else c for c, flip in zip(out, flips, strict=True))


@given(st.data(), REFERENCES, BEFORE, AFTER)
def test_reference_is_found_through_extraction_noise(
    data: st.DataObject, ref: str, before: str, after: str
) -> None:
    """Inserted whitespace, line breaks, line-end hyphens and case changes do not hide it."""
    text = before + data.draw(noisy(ref)) + after
    assert contains_case_ref(text, ref)


@given(REFERENCES, st.text(WORD_CHARS, min_size=1, max_size=3), BEFORE, AFTER)
def test_reference_is_not_found_inside_a_longer_one(
    ref: str, suffix: str, before: str, after: str
) -> None:
    """The reference followed by more letters or digits is another reference."""
    assert not contains_case_ref(before + ref + suffix + after, ref)


@given(st.data(), REFERENCES, st.text(WORD_CHARS, min_size=1, max_size=3))
def test_noisy_reference_is_not_found_inside_a_longer_one(
    data: st.DataObject, ref: str, suffix: str
) -> None:
    """Noise inside the reference does not let it match a longer one."""
    assert not contains_case_ref(data.draw(noisy(ref)) + suffix, ref)


@given(REFERENCES, st.text(WORD_CHARS, min_size=1, max_size=3), AFTER)
def test_reference_is_not_found_at_the_end_of_a_longer_one(
    ref: str, prefix: str, after: str
) -> None:
    """Letters or digits (or a joining dash) before the reference make it another one."""
    assert not contains_case_ref(prefix + ref + after, ref)
    assert not contains_case_ref(prefix + "-" + ref + after, ref)


@given(REFERENCES, REFERENCES)
def test_a_different_reference_never_matches(ref: str, other: str) -> None:
    """One well-formed reference never matches another."""
    if other.casefold() != ref.casefold():
        assert not contains_case_ref(f"Case reference: {other}\n", ref)


def _by_the_pattern_alone(text: str, ref: str) -> bool:
    """contains_case_ref without its quick literal search: every place the pattern finds."""
    from mash_requests.referral_form import binding

    pattern = binding._reference_pattern(ref)
    chars = [c for c in binding._normalise(ref) if not c.isspace()]
    folded = binding._normalise(text)
    return pattern is not None and any(
        not binding._continues_before(folded, m.start(1), chars[0])
        and not binding._continues_after(folded, m.end(1), chars[-1])
        for m in pattern.finditer(folded)
    )


@given(
    REFERENCES,
    st.lists(
        st.one_of(st.sampled_from(["", "-", " ", "\n", "-\n", "A", "1", "/", "."]), REFERENCES),
        max_size=6,
    ),
    st.data(),
)
def test_quick_literal_search_agrees_with_the_pattern(
    ref: str, pieces: list[str], data: st.DataObject
) -> None:
    """The literal search that spares compiling the pattern never answers otherwise."""
    pieces = [*pieces, ref, data.draw(noisy(ref))]
    text = "".join(data.draw(st.permutations(pieces)))
    assert contains_case_ref(text, ref) is _by_the_pattern_alone(text, ref)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("MASH-2024-0012", True),
        ("mash-2024-0012", True),
        ("Ref: MASH-2024-0012.", True),
        ("(MASH-2024-0012)", True),
        ("MASH–2024–0012", True),  # en dashes from a word processor
        ("MASH-2024-\n0012", True),
        ("MASH-20-\n24-0012", True),
        ("MASH-2024-0012\n3. Concerns", True),
        ("MASH-2024-00123", False),
        ("MASH-2024-0012 3", False),
        ("MASH-2024-0012-\n3", False),
        ("MASH-2024-0012A", False),
        ("MASH-2024-0012/1", False),
        ("XMASH-2024-0012", False),
        ("1-MASH-2024-0012", False),
        ("MASH-2024-001", False),
        ("MASH 2024 0012", False),
    ],
)
def test_reference_matching_examples(text: str, expected: bool) -> None:
    """Worked examples of bounded, noise-tolerant matching for MASH-2024-0012."""
    assert contains_case_ref(text, "MASH-2024-0012") is expected


# --------------------------------------------------------------------------------------------
# Filling


def blank_template() -> bytes:
    """A blank fillable form with every field of the default mapping, on one page."""
    return build_pdf(
        ("MASH Referral Form (MARF)\nOFFICIAL-SENSITIVE",),
        fields=dict.fromkeys(DEFAULT_FILL_MAPPING, ""),
    )


VALUES = {
    "case_reference": REF,
    "child_name": "Leo Hartley",
    "child_dob": "2016-04-09",
    "concerns": "Arrives hungry most days.\nUnexplained bruise.",
}


def test_filled_form_passes_the_check() -> None:
    """A form filled for a case is accepted for that case, bound by its case_reference field."""
    verdict = check_form(fill_form(blank_template(), VALUES), REF)
    assert verdict.accepted
    assert verdict.found_in == "field case_reference"


def test_filled_form_is_wrong_case_for_the_neighbouring_case() -> None:
    """The form filled for MASH-2026-0412 is refused for MASH-2026-0413."""
    assert check_form(fill_form(blank_template(), VALUES), NEIGHBOUR).reason is Reason.WRONG_CASE


def test_filled_form_holds_the_values_and_shows_them() -> None:
    """Values land in /V, NeedAppearances is set and widgets get appearance streams."""
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(fill_form(blank_template(), VALUES)))
    assert reader.get_form_text_fields()["child_name"] == "Leo Hartley"
    acroform: Any = reader.root_object["/AcroForm"]
    assert acroform["/NeedAppearances"].value is True
    annots: Any = reader.pages[0]["/Annots"]
    for annot in annots:
        widget = annot.get_object()
        if widget["/T"] in VALUES:
            assert "/N" in widget["/AP"]


def test_filling_the_example_blank_form_passes_the_check() -> None:
    """The repository's example MARF fills with every default field and is accepted."""
    values = {name: f"value of {name}" for name in DEFAULT_FILL_MAPPING}
    values["case_reference"] = REF
    filled = fill_form(BLANK_FORM.read_bytes(), values)
    verdict = check_form(filled, REF)
    assert verdict.accepted
    assert verdict.pages == 2


def test_example_blank_form_has_every_default_field() -> None:
    """The example MARF's fields are exactly the default mapping's form fields."""
    assert sorted(form_field_names(BLANK_FORM.read_bytes())) == sorted(DEFAULT_FILL_MAPPING)


def test_example_blank_form_is_not_bound_to_any_case() -> None:
    """The blank example form carries no reference, so it is refused as case_ref_missing."""
    assert check_form(BLANK_FORM.read_bytes(), REF).reason is Reason.CASE_REF_MISSING


def test_non_ascii_values_are_filled() -> None:
    """Accented names survive filling in the field value."""
    from pypdf import PdfReader

    filled = fill_form(blank_template(), {"case_reference": REF, "child_name": "Amira Novák"})
    fields = PdfReader(io.BytesIO(filled)).get_form_text_fields()
    assert fields["child_name"] == "Amira Novák"


def test_unknown_field_is_an_input_error_naming_it() -> None:
    """A mapping naming a field the template lacks raises InputError naming that field."""
    with pytest.raises(InputError, match="'child_nhs_number'"):
        fill_form(blank_template(), {"child_nhs_number": "485 777 3456"})


def test_template_without_fields_is_an_input_error() -> None:
    """A template with no form fields (a printed or flattened copy) raises InputError."""
    with pytest.raises(InputError, match="no form fields"):
        fill_form(build_pdf(), VALUES)


def test_template_that_is_not_a_pdf_is_an_input_error() -> None:
    """Filling from bytes that are not a PDF raises InputError, not a pypdf error."""
    with pytest.raises(InputError, match="not a readable PDF"):
        fill_form(b"hello", VALUES)


def test_encrypted_template_needs_its_password() -> None:
    """A template that needs a password raises InputError without it."""
    template = rewrite(blank_template(), password="s3cret")
    with pytest.raises(InputError, match="password"):
        fill_form(template, VALUES)


def test_encrypted_template_is_filled_and_stays_encrypted() -> None:
    """With its password a locked template is filled, re-encrypted, and checks with it."""
    template = rewrite(blank_template(), password="s3cret")
    filled = fill_form(template, VALUES, password="s3cret")
    assert check_form(filled, REF).reason is Reason.ENCRYPTED
    assert check_form(filled, REF, password="s3cret").accepted


def test_filling_is_deterministic_for_an_unencrypted_template() -> None:
    """The same template and values give the same bytes (the example forms do not churn)."""
    assert fill_form(blank_template(), VALUES) == fill_form(blank_template(), VALUES)


def with_field(data: bytes, name: str, **entries: Any) -> bytes:
    """The form with raw entries (``FT="/Btn"``, ``V="/Yes"``, ``DV="N/A"``) set on a field."""
    from pypdf import PdfReader, PdfWriter
    from pypdf.generic import NameObject, TextStringObject

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    for annot in writer.pages[0]["/Annots"]:  # type: ignore[union-attr]
        widget: Any = annot.get_object()
        if widget["/T"] == name:
            for key, value in entries.items():
                obj = NameObject(value) if value.startswith("/") else TextStringObject(value)
                widget[NameObject(f"/{key}")] = obj
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_filled_template_is_refused_naming_the_field_not_its_value() -> None:
    """Another case's filled form given as the template is refused, naming a field, no value."""
    filled = fill_form(blank_template(), VALUES)
    with pytest.raises(InputError, match=r"field 'case_reference' .*already has a value") as caught:
        fill_form(filled, {"case_reference": NEIGHBOUR})
    assert "Leo" not in str(caught.value) and REF not in str(caught.value)


def test_filled_template_error_names_the_template() -> None:
    """The refusal names the template as the caller gave it."""
    filled = fill_form(blank_template(), VALUES)
    with pytest.raises(InputError, match=r"^referral form template forms/MASH-2026-0412\.pdf: "):
        fill_form(filled, VALUES, template_name="forms/MASH-2026-0412.pdf")


def test_example_filled_form_is_refused_as_a_template() -> None:
    """The repository's filled example form for one case cannot be the template for another."""
    filled = (REPO / "examples" / "forms" / f"{REF}.pdf").read_bytes()
    with pytest.raises(InputError, match="already has a value"):
        fill_form(filled, {"case_reference": NEIGHBOUR})


def test_allow_filled_fills_a_filled_template() -> None:
    """allow_filled=True fills a template whose fields hold values, replacing the mapped ones."""
    from pypdf import PdfReader

    filled = fill_form(blank_template(), VALUES)
    refilled = fill_form(filled, {"case_reference": NEIGHBOUR}, allow_filled=True)
    fields = PdfReader(io.BytesIO(refilled)).get_form_text_fields()
    assert fields["case_reference"] == NEIGHBOUR


def test_whitespace_only_field_counts_as_blank() -> None:
    """A field holding only spaces is blank: the template is filled."""
    template = build_pdf(fields={**dict.fromkeys(DEFAULT_FILL_MAPPING, ""), "concerns": "  "})
    assert check_form(fill_form(template, VALUES), REF).accepted


def test_ticked_checkbox_makes_the_template_filled() -> None:
    """A ticked checkbox is a value: the template is refused, naming the box."""
    template = with_field(blank_template(), "consent_status", FT="/Btn", V="/Yes")
    with pytest.raises(InputError, match="field 'consent_status'"):
        fill_form(template, {"case_reference": REF})


def test_unticked_checkbox_counts_as_blank() -> None:
    """A checkbox set to /Off is blank: the template is filled."""
    template = with_field(blank_template(), "consent_status", FT="/Btn", V="/Off")
    assert check_form(fill_form(template, {"case_reference": REF}), REF).accepted


def test_value_equal_to_the_fields_default_counts_as_blank() -> None:
    """A field holding its own default value (/DV, set by the form's author) is blank."""
    template = with_field(
        blank_template(), "consent_reason", V="Not applicable", DV="Not applicable"
    )
    assert check_form(fill_form(template, VALUES), REF).accepted


# --------------------------------------------------------------------------------------------
# Reading


def test_read_form_returns_the_bytes(tmp_path: Path) -> None:
    """read_form returns the file's exact bytes."""
    path = tmp_path / "form.pdf"
    path.write_bytes(b"%PDF-1.7 exact")
    assert read_form(path) == b"%PDF-1.7 exact"


def test_read_form_missing_file_names_the_path(tmp_path: Path) -> None:
    """A missing form raises InputError naming the path and saying to check it."""
    path = tmp_path / "nope.pdf"
    with pytest.raises(InputError, match=r"nope\.pdf: not found; check the path"):
        read_form(path)


def test_read_form_folder_is_an_input_error(tmp_path: Path) -> None:
    """A folder given as the form raises InputError saying to give the file."""
    with pytest.raises(InputError, match="is a folder"):
        read_form(tmp_path)


def test_read_form_unreadable_file_is_an_input_error(tmp_path: Path) -> None:
    """A file without read permission raises InputError naming the path."""
    import os

    path = tmp_path / "locked.pdf"
    path.write_bytes(b"%PDF-")
    path.chmod(0)
    if os.access(path, os.R_OK):  # running as root: permissions do not apply
        pytest.skip("file permissions are not enforced for this user")
    with pytest.raises(InputError, match=r"locked\.pdf: permission denied"):
        read_form(path)


# --------------------------------------------------------------------------------------------
# Writing


def test_write_form_writes_the_exact_bytes_over_an_existing_file(tmp_path: Path) -> None:
    """write_form replaces an existing file with exactly the given bytes."""
    path = tmp_path / "form.pdf"
    path.write_bytes(b"%PDF- old")
    write_form(path, b"%PDF- new")
    assert path.read_bytes() == b"%PDF- new"


def test_write_form_leaves_no_temporary_file(tmp_path: Path) -> None:
    """After writing, the folder holds the form and nothing else."""
    write_form(tmp_path / "form.pdf", b"%PDF-")
    assert [p.name for p in tmp_path.iterdir()] == ["form.pdf"]


def test_write_form_failure_keeps_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rename that fails raises InputError naming the path; the old form stays, no debris."""
    import os

    path = tmp_path / "form.pdf"
    path.write_bytes(b"%PDF- old")

    def full_disk(source: object, target: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(InputError, match=r"form\.pdf: cannot be written \(No space left"):
        write_form(path, b"%PDF- new")
    assert path.read_bytes() == b"%PDF- old"
    assert [p.name for p in tmp_path.iterdir()] == ["form.pdf"]


def test_write_form_into_a_missing_folder_is_an_input_error(tmp_path: Path) -> None:
    """A folder that does not exist raises InputError naming the path."""
    path = tmp_path / "missing" / "form.pdf"
    with pytest.raises(InputError, match=r"missing/form\.pdf: cannot be written"):
        write_form(path, b"%PDF-")


def test_write_form_new_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    """A newly written form (a child's details) has mode 0600."""
    path = tmp_path / "form.pdf"
    write_form(path, b"%PDF-")
    assert path.stat().st_mode & 0o777 == 0o600


def test_write_form_keeps_the_replaced_files_permissions(tmp_path: Path) -> None:
    """A form written over an existing file keeps that file's permission bits."""
    path = tmp_path / "form.pdf"
    path.write_bytes(b"%PDF- old")
    path.chmod(0o640)
    write_form(path, b"%PDF- new")
    assert path.stat().st_mode & 0o777 == 0o640
