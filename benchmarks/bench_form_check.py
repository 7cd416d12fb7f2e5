"""How long the referral-form check takes, beside baselines measured in the same run.

Run from the repository root (the corpus is found as in the tests: $MASH_SHARED_DIR, else
../shared):

    /work/venv/bin/python benchmarks/bench_form_check.py            # 25 runs each
    /work/venv/bin/python benchmarks/bench_form_check.py --repeat 101

For each subject it prints the median time of ``check_form`` and two baselines on the same
bytes: SHA-256 alone (the floor: the check hashes every byte) and merely opening the file
with pypdf and counting its pages (what any PDF-aware check pays), the ratios, and the
verdict with how many pages' text was searched. The target is 0.5 s per check on these
machines (issue 10); the load average is printed, as the machines are shared.

Subjects: the issue's valid 117-page, ~1.8 MB report without the case reference (generated
with reportlab, as in tests/test_referral_form_bounds.py), the three largest files of the
shared corpus (with their manifest reference and password) and its slowest, a one-page
filled form, the two-page example MARF, a generated 500-page form, and a file just under
the structure walk's object bound (the most work a well-formed file can ask of the walk).
This is not a test: it prints, it does not assert.
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
from mash_requests.referral_form.reading import MAX_OBJECTS  # noqa: E402
from test_referral_form import build_pdf  # noqa: E402
from test_referral_form_bounds import long_report  # noqa: E402

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

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            reader.decrypt(password or "")
        return len(reader.pages)
    except Exception:  # a broken corpus file: the baseline is how long pypdf takes to give up
        return 0


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


def many_objects(count: int) -> bytes:
    """A one-page form whose catalogue reaches ``count`` small objects (arrays of 1,000)."""
    objects: dict[int, bytes | str] = {100 + n: f"<< /N {n} >>" for n in range(count)}
    chunks = []
    for first in range(0, count, 1000):
        number = 100 + count + first // 1000
        last = min(count, first + 1000)
        objects[number] = "[" + " ".join(f"{100 + n} 0 R" for n in range(first, last)) + "]"
        chunks.append(f"{number} 0 R")
    top = 100 + count + len(chunks)
    objects[top] = "[" + " ".join(chunks) + "]"
    return build_pdf(("Case MASH-1",), catalog=f"/Junk {top} 0 R", objects=objects)


def subjects() -> list[tuple[str, bytes, str, str | None]]:
    """(name, bytes, case reference, password) for each thing measured."""
    found: list[tuple[str, bytes, str, str | None]] = [
        ("117-page report, no reference", long_report(), "MASH-2026-0412", None)
    ]
    manifest = CORPUS / "MANIFEST.tsv"
    if manifest.is_file():
        with manifest.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        rows.sort(key=lambda row: (CORPUS / row["file"]).stat().st_size, reverse=True)
        for row in rows[:3]:
            ref = row["accept_ref"] if row["accept_ref"] != "-" else "MASH-TEST-000001"
            password = None if row["password"] == "-" else row["password"]
            data = (CORPUS / row["file"]).read_bytes()
            found.append((f"corpus: {row['file']}", data, ref, password))
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
    bound = MAX_OBJECTS - 1000
    found.append((f"{bound:,} objects (walk bound)", many_objects(bound), "MASH-1", None))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=25, help="runs per figure (median)")
    args = parser.parse_args()

    load = ", ".join(f"{n:.1f}" for n in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load}; "
        f"median of {args.repeat} runs; target 0.5 s per check"
    )
    header = f"{'subject':<44} {'bytes':>9} {'check':>10} {'sha256':>9} {'open':>9}"
    print(header + f" {'÷sha256':>8} {'÷open':>6}  verdict (pages' text searched)")
    for name, data, ref, password in subjects():
        verdict = check_form(data, ref, password=password)
        check = median_time(lambda: check_form(data, ref, password=password), args.repeat)  # noqa: B023
        digest = median_time(lambda: hashlib.sha256(data).hexdigest(), args.repeat)  # noqa: B023
        opened = median_time(lambda: open_and_count(data, password), args.repeat)  # noqa: B023
        searched = (
            f" ({verdict.pages_searched} of {verdict.pages})"
            if verdict.pages_searched is not None
            else ""
        )
        print(
            f"{name[:44]:<44} {len(data):>9,} {check * 1000:>8.1f}ms {digest * 1000:>7.2f}ms "
            f"{opened * 1000:>7.1f}ms {check / digest:>8.0f} {check / opened:>6.1f}  "
            f"{verdict.reason}{searched}"
        )


if __name__ == "__main__":
    main()
