"""How long the referral-form check takes, beside baselines measured in the same run.

Run from the repository root (the corpus is found as in the tests: $MASH_SHARED_DIR, else
../shared):

    /work/venv/bin/python benchmarks/bench_form_check.py            # 25 runs each
    /work/venv/bin/python benchmarks/bench_form_check.py --repeat 101

For each subject it prints the median time of ``check_form`` and two baselines on the same
bytes: SHA-256 alone (the floor: the check hashes every byte) and merely opening the file
with pypdf and counting its pages (what any PDF-aware check pays). The issue's budget is
2 s per check. Subjects: the largest file in the shared corpus (with its manifest reference
and password), a one-page filled form, the two-page example MARF, and a generated 500-page
form. This is not a test: it prints, it does not assert.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the PDF builders of the tests

from mash_requests.referral_form import check_form, fill_form  # noqa: E402
from test_referral_form import build_pdf  # noqa: E402

SHARED = Path(os.environ.get("MASH_SHARED_DIR", REPO.parent / "shared"))
CORPUS = SHARED / "corpus" / "pdfs"
EXAMPLE_FORM = REPO / "examples" / "forms" / "MASH-2026-0412.pdf"


def median_time(run: Callable[[], object], repeat: int) -> float:
    run()  # warm caches and imports outside the measurement
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def open_and_count(data: bytes, password: str | None) -> int:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted:
        reader.decrypt(password or "")
    return len(reader.pages)


def slowest(rows: list[dict[str, str]]) -> tuple[str, bytes, str, str | None]:
    """The corpus file whose check (for a reference not in it, so every page is read) is slowest."""

    def cost(row: dict[str, str]) -> float:
        data = (CORPUS / row["file"]).read_bytes()
        password = None if row["password"] == "-" else row["password"]
        return median_time(lambda: check_form(data, "MASH-TEST-000001", password=password), 5)

    row = max(rows, key=cost)
    password = None if row["password"] == "-" else row["password"]
    return (f"corpus slowest: {row['file']}", (CORPUS / row["file"]).read_bytes(),
            "MASH-TEST-000001", password)  # fmt: skip


def subjects() -> list[tuple[str, bytes, str, str | None]]:
    """(name, bytes, case reference, password) for each thing measured."""
    found: list[tuple[str, bytes, str, str | None]] = []
    manifest = CORPUS / "MANIFEST.tsv"
    if manifest.is_file():
        with manifest.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        largest = max(rows, key=lambda row: (CORPUS / row["file"]).stat().st_size)
        ref = largest["accept_ref"] if largest["accept_ref"] != "-" else "MASH-TEST-000001"
        password = None if largest["password"] == "-" else largest["password"]
        found.append(
            (f"corpus largest: {largest['file']}", (CORPUS / largest["file"]).read_bytes(), ref,
             password)
        )  # fmt: skip
        found.append(slowest(rows))
    else:
        print(f"(corpus not found at {CORPUS}; set MASH_SHARED_DIR to include it)")
    one_page = build_pdf(
        ("MASH Referral Form (MARF)\nOFFICIAL-SENSITIVE",), fields={"case_reference": ""}
    )
    one_page = fill_form(one_page, {"case_reference": "MASH-2026-0412"})
    found.append(("1-page filled form", one_page, "MASH-2026-0412", None))
    if EXAMPLE_FORM.is_file():
        found.append(("example MARF (2 pages)", EXAMPLE_FORM.read_bytes(), "MASH-2026-0412", None))
    pages = build_pdf([f"Page {n}" for n in range(1, 501)], fields={"case_reference": "MASH-1"})
    found.append(("500-page form", pages, "MASH-1", None))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=25, help="runs per figure (median)")
    args = parser.parse_args()

    print(f"python {sys.version.split()[0]}, median of {args.repeat} runs; budget 2 s per check")
    header = f"{'subject':<52} {'bytes':>8} {'check':>10} {'sha256':>10} {'open':>10}"
    print(header + f" {'÷sha256':>9} {'÷open':>7}  verdict")
    for name, data, ref, password in subjects():
        verdict = check_form(data, ref, password=password)
        check = median_time(lambda: check_form(data, ref, password=password), args.repeat)  # noqa: B023
        digest = median_time(lambda: hashlib.sha256(data).hexdigest(), args.repeat)  # noqa: B023
        opened = median_time(lambda: open_and_count(data, password), args.repeat)  # noqa: B023
        print(
            f"{name[:52]:<52} {len(data):>8} {check * 1000:>8.2f}ms {digest * 1000:>8.3f}ms "
            f"{opened * 1000:>8.2f}ms {check / digest:>9.0f} {check / opened:>7.1f}  "
            f"{verdict.reason}"
        )


if __name__ == "__main__":
    main()
