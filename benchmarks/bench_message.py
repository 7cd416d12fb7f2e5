"""Building one request's MIME message: quoted-printable text parts beside base64 ones.

Run from the repository root (after the test install of the README):

    .venv/bin/python benchmarks/bench_message.py            # 2,000 builds, medians of 7

The product builds each message with ``mash_requests.message.build_message`` and writes it
with ``as_bytes()``. Its text parts are quoted-printable so that journaling and DLP rules can
read them on the wire. The baseline is the same message built the way it was before,
``email.mime.text.MIMEText`` with UTF-8 (base64 text parts), in the same run on the same
rendered text and form. A third line times ``render`` for scale. Not a test: it prints.
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import UTC, datetime
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path

from mash_requests import message as message_module
from mash_requests.case import load_case
from mash_requests.message import build_message
from mash_requests.partners import Partner
from mash_requests.rendering import Renderer

ROOT = Path(__file__).resolve().parents[1]


def median_seconds(run: object, builds: int, repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(builds):
            run()  # type: ignore[operator]
        times.append((time.perf_counter() - start) / builds)
    return statistics.median(times)


def main() -> None:
    builds = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    case = load_case(ROOT / "examples" / "cases" / "MASH-2026-0412.json")
    assert case.referral_form is not None
    form = case.referral_form.read_bytes()
    partner = Partner("police", "Eastshire Police MASH", ("mash@eastshire.police.uk",), "police")
    renderer = Renderer(marking="OFFICIAL-SENSITIVE", mash_name="Eastbury MASH")
    due = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)

    def render() -> object:
        return renderer.render(case=case, partner=partner, request_ref="MASH-2026-0412-POLICE-1",
                               due=due, rag_hours=24, form_filename="f.pdf")  # fmt: skip

    rendered = render()

    def build() -> bytes:
        return build_message(
            rendered=rendered,  # type: ignore[arg-type]
            sender="mash@eastbury.gov.uk",
            recipients=partner.addresses,
            reply_to="sam.okafor@eastbury.gov.uk",
            case_ref=case.case_ref,
            request_ref="MASH-2026-0412-POLICE-1",
            marking="OFFICIAL-SENSITIVE",
            form_bytes=form,
        ).as_bytes()

    def base64_part(text: str, subtype: str) -> MIMEMultipart:
        return MIMEText(text, subtype, "utf-8")  # type: ignore[return-value]

    product = median_seconds(build, builds)
    original = message_module._text_part
    message_module._text_part = base64_part  # type: ignore[assignment]
    try:
        baseline = median_seconds(build, builds)
    finally:
        message_module._text_part = original
    rendering = median_seconds(render, builds // 4)
    print(f"python {sys.version.split()[0]}; medians of 7 x {builds} builds")
    print(f"{'build + as_bytes, quoted-printable text':<44} {product * 1e6:8.1f} us")
    print(f"{'build + as_bytes, base64 text (baseline)':<44} {baseline * 1e6:8.1f} us"
          f"   ratio {product / baseline:.2f}")  # fmt: skip
    print(f"{'render (for scale)':<44} {rendering * 1e6:8.1f} us")


if __name__ == "__main__":
    main()
