"""Every real-world PDF in ../shared/corpus/pdfs gets the verdict its MANIFEST.tsv gives.

The corpus (forms, exports, encrypted, broken and hostile files from pypdf, qpdf and pdf.js)
lives beside the project, not in it. Its location is ``$MASH_SHARED_DIR/corpus/pdfs``, by
default ``../shared/corpus/pdfs``; where it is absent these tests skip and say so.
"""

from __future__ import annotations

import csv
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest

from mash_requests.referral_form import Reason, Verdict, check_form

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MASH_SHARED_DIR", REPO.parent / "shared"))
CORPUS = SHARED / "corpus" / "pdfs"
MANIFEST = CORPUS / "MANIFEST.tsv"
ABSENT = (
    f"PDF corpus not found at {CORPUS}: set MASH_SHARED_DIR to the folder holding "
    "corpus/pdfs/MANIFEST.tsv (CI has it at ../shared)"
)
#: The reference the manifest's refuse_as column was written for.
TEST_REF = "MASH-TEST-000001"
TIME_LIMIT = 2.0


def manifest() -> list[dict[str, str]]:
    if not MANIFEST.is_file():
        return []
    with MANIFEST.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


ROWS = manifest()


def params(rows: list[dict[str, str]]) -> list[Any]:
    """One pytest param per row, or a single skipped param explaining where the corpus is."""
    if not ROWS:
        return [pytest.param(None, marks=pytest.mark.skip(reason=ABSENT), id="no-corpus")]
    return [pytest.param(row, id=row["file"]) for row in rows]


def optional(value: str) -> str | None:
    return None if value == "-" else value


def data_of(row: dict[str, str]) -> bytes:
    return (CORPUS / row["file"]).read_bytes()


def timed_check(data: bytes, case_ref: str, **options: Any) -> Verdict:
    started = time.perf_counter()
    verdict = check_form(data, case_ref, **options)
    elapsed = time.perf_counter() - started
    assert elapsed < TIME_LIMIT, f"check took {elapsed:.2f} s"
    return verdict


def fact(row: dict[str, str], name: str) -> str | None:
    """A measured fact from the notes column, e.g. ``pages=3`` or ``sha256=9ace…``."""
    found = re.search(rf"\b{name}=([0-9a-f]+)", row["notes"])
    return found.group(1) if found else None


WITH_REF = [row for row in ROWS if row["accept_ref"] != "-"]
WITH_PASSWORD = [row for row in WITH_REF if row["password"] != "-"]


def test_manifest_lists_every_corpus_file() -> None:
    """The manifest and the folder agree, so no corpus file escapes the check."""
    if not ROWS:
        pytest.skip(ABSENT)
    assert sorted(row["file"] for row in ROWS) == sorted(p.name for p in CORPUS.glob("*.pdf"))


@pytest.mark.parametrize("row", params(ROWS))
def test_corpus_file_gets_its_refusal(row: dict[str, str]) -> None:
    """Checked for MASH-TEST-000001 with no password, each file gets its manifest reason."""
    verdict = timed_check(data_of(row), TEST_REF)
    assert str(verdict.reason) in row["refuse_as"].split("|"), verdict.detail
    assert verdict.detail.endswith(".")


@pytest.mark.parametrize("row", params(WITH_REF))
def test_corpus_file_with_its_reference_and_password(row: dict[str, str]) -> None:
    """Checked for a string really in it (and its password), each gets the manifest verdict."""
    verdict = timed_check(data_of(row), row["accept_ref"], password=optional(row["password"]))
    assert str(verdict.reason) == row["with_ref_and_password"], verdict.detail
    if verdict.accepted:
        assert verdict.found_in is not None


@pytest.mark.parametrize("row", params(WITH_PASSWORD))
def test_corpus_file_needing_a_password_is_encrypted_without_it(row: dict[str, str]) -> None:
    """The reference alone does not open a file that needs a password."""
    assert timed_check(data_of(row), row["accept_ref"]).reason is Reason.ENCRYPTED


@pytest.mark.parametrize("row", params(WITH_PASSWORD))
def test_corpus_file_with_its_password_but_another_reference(row: dict[str, str]) -> None:
    """The password opens the file, and then the case binding refuses a reference not in it."""
    verdict = timed_check(data_of(row), TEST_REF, password=row["password"])
    assert verdict.reason is Reason.CASE_REF_MISSING


@pytest.mark.parametrize("row", params(ROWS))
def test_corpus_fingerprint_matches_the_measured_facts(row: dict[str, str]) -> None:
    """SHA-256 is of the exact bytes, and the page count is pypdf's measured one."""
    data = data_of(row)
    verdict = check_form(data, row["accept_ref"], password=optional(row["password"]))
    sha_prefix = fact(row, "sha256")
    if sha_prefix:
        assert verdict.sha256.startswith(sha_prefix)
    pages = fact(row, "pages")
    if pages is not None and verdict.pages is not None:
        assert verdict.pages == int(pages)
    assert verdict.size == len(data)


CUTS = {"-6": lambda d: d[:-6], "half": lambda d: d[: len(d) // 2], "1k": lambda d: d[:1024]}


@pytest.mark.parametrize("cut", CUTS)
@pytest.mark.parametrize("row", params(ROWS))
def test_truncated_corpus_files_get_a_verdict_in_time(row: dict[str, str], cut: str) -> None:
    """Each corpus file cut short gets a reason code within the time bound, never a raise."""
    data = CUTS[cut](data_of(row))
    verdict = timed_check(data, TEST_REF, password=optional(row["password"]))
    assert isinstance(verdict.reason, Reason)
    assert not verdict.accepted
    with_ref = timed_check(data, row["accept_ref"], password=optional(row["password"]))
    assert isinstance(with_ref.reason, Reason)
