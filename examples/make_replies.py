"""Write the example partner replies for the requests you actually sent, into the replies folder.

``examples/replies/*.eml`` are real-world reply shapes to the example case MASH-2026-0412 as
sent in the README (request references ``MASH-2026-0412-POLICE-1BAC7`` …): an Outlook reply,
a read receipt, a reply whose secure-mail gateway dropped ``In-Reply-To``, an out-of-office,
a reply with attachments, an Exchange non-delivery report, a delivery-delay warning, and an
answer from a secure-mail product's domain instead of the partner's. Request references are
random, so your own send has different ones: this script reads the requests of the case from
the outbox (``[gateway.outbox] folder``), puts their references, Message-IDs and times into
copies of those files, and writes the copies to ``[replies] folder``::

    send-request --config examples/mash-requests.toml --case examples/cases/MASH-2026-0412.json
    python examples/make_replies.py --config examples/mash-requests.toml
    mash-requests replies fetch --config examples/mash-requests.toml

Only references, Message-IDs and dates are changed; everything else is as shipped. All people
and places are invented.
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import UTC, datetime, timedelta
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

from mash_requests.config import load_settings

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "replies"
CASE = "MASH-2026-0412"
#: The requests the shipped files answer, by partner: (request reference, Message-ID).
SHIPPED = {
    "police": ("MASH-2026-0412-POLICE-1BAC7", "3c9f0e1d2b4a5968"),
    "health": ("MASH-2026-0412-HEALTH-88FB6", "a41d7c0e9b2f3586"),
    "education": ("MASH-2026-0412-EDUCATION-C7BCD", "5e2b8f1a0c9d4e37"),
    "probation": ("MASH-2026-0412-PROBATION-65139", "0f7a6b5c4d3e2f18"),
    "housing": ("MASH-2026-0412-HOUSING-07551", "9d8c7b6a5f4e3d21"),
}
#: When the shipped requests were sent (13 April 2026, 09:12 BST).
SHIPPED_SENT = datetime(2026, 4, 13, 8, 12, tzinfo=UTC)
_DATE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun),\s+\d{1,2}\s+[A-Z][a-z]{2}\s+\d{4}\s+"
    r"\d{2}:\d{2}:\d{2}\s+[+-]\d{4}"
)


def sent_requests(outbox: Path, case_ref: str) -> dict[str, tuple[str, str, datetime]]:
    """partner → (request reference, Message-ID, Date) of the case's latest requests."""
    found: dict[str, tuple[str, str, datetime]] = {}
    for path in sorted(outbox.glob("*.eml")):
        with path.open("rb") as handle:
            headers = BytesHeaderParser(policy=compat32).parse(handle)
        if headers.get("X-MASH-Case-Ref") != case_ref:
            continue
        ref = str(headers.get("X-MASH-Request-Ref", ""))
        partner = ref[len(case_ref) + 1 :].rsplit("-", 1)[0].lower()
        sent = parsedate_to_datetime(str(headers["Date"])).astimezone(UTC)
        if partner not in found or sent >= found[partner][2]:
            found[partner] = (ref, str(headers["Message-ID"]), sent)
    return found


def rewrite(text: str, mine: dict[str, tuple[str, str, datetime]], now: datetime) -> str | None:
    """The shipped reply with your references, Message-IDs and times; None if not yours."""
    partner = next((p for p, (ref, _) in SHIPPED.items() if ref in text), None)
    if partner is None or partner not in mine:
        return None
    old_ref, token = SHIPPED[partner]
    new_ref, new_id, sent = mine[partner]
    text = text.replace(f"<{old_ref}.{token}@eastbury.gov.uk>", new_id)
    text = text.replace(old_ref, new_ref)
    # Times keep their order and spacing after your send, squeezed so none is in the future.
    moments = [parsedate_to_datetime(m.group(0)) for m in _DATE.finditer(text)]
    latest = max((m for m in moments), default=SHIPPED_SENT)
    span = max((latest - SHIPPED_SENT).total_seconds(), 1.0)
    room = max(min(span, (now - sent).total_seconds() - 60), 0.0)

    def moved(match: re.Match[str]) -> str:
        old = parsedate_to_datetime(match.group(0))
        offset = max((old - SHIPPED_SENT).total_seconds(), 0.0) / span * room
        return format_datetime((sent + timedelta(seconds=offset)).astimezone(UTC))

    return _DATE.sub(moved, text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=HERE / "mash-requests.toml")
    parser.add_argument("--case-ref", default=CASE, help=f"the case (default {CASE})")
    parser.add_argument("--out", type=Path, help="folder to write to (default: [replies] folder)")
    args = parser.parse_args()
    settings = load_settings(args.config)
    outbox = getattr(settings.gateway, "folder", None)
    if settings.gateway.kind != "outbox" or outbox is None:
        sys.exit("this example reads the requests from the outbox gateway's folder")
    out = args.out
    if out is None:
        # Only the folder source's "folder" is a folder of files (IMAP's is a mailbox name).
        folder = settings.replies is not None and settings.replies.source == "folder"
        out = getattr(settings.replies.reader, "folder", None) if folder else None
        if not isinstance(out, Path):
            sys.exit(
                'set [replies] source = "folder" and folder = "…" in the config, or give --out '
                "(for a mailbox source: a folder whose files you then deliver to the mailbox)"
            )
    mine = sent_requests(Path(outbox), args.case_ref)
    if not mine:
        sys.exit(f"no requests of case {args.case_ref} in {outbox}: send the example case first")
    out.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    written = 0
    for template in sorted(TEMPLATES.glob("*.eml")):
        text = rewrite(template.read_bytes().decode("utf-8"), mine, now)
        if text is not None:
            (out / template.name).write_bytes(text.encode("utf-8"))
            written += 1
    print(f"{written} example replies for case {args.case_ref} written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
