"""Benchmark partners' replies: ``replies fetch`` matching and ``overdue`` on a big log.

Each figure is printed beside a baseline doing the irreducible part of the same work in the
same run, on the same data, so the ratio says what the library adds:

- fetch:   fetch_replies of --messages .eml files from the folder source into a SQLite log
           holding their requests (classify, match, record: one durable event each)
           vs reading every file and parsing it with the standard email parser
- refetch: the same fetch again (every message already seen)
           vs the same baseline
- overdue cold: overdue() with no cache, on an --events log (the store selects the requests
           that may be open in SQL; the fold reads only their events)
           vs SELECT + json.loads of the listed requests' events (what reading only the
           answer costs, had we known it), and once vs SELECT + json.loads of every
           tracked event (what the fold of the whole log read before; --skip-read-all)
- overdue warm: overdue() continuing from its cache, after 1,000 new events
           vs json.loads of the cache file and reading + json.loads of the new rows

The big log is built the way benchmarks/bench_audit.py builds its own (its Backend, clock and
event generator, reused), with a reply for almost every request, a few bounced or chased,
so that a realistic few thousand requests are overdue. ``--keep PATH`` keeps it for later runs
(a SQLite file, or with ``--backend postgres`` a schema name). On PostgreSQL the log is
vacuumed and analysed before measuring, as autovacuum soon does on a server.

Usage::

    python benchmarks/bench_replies.py                          # 10,000 messages, 100,000 events
    python benchmarks/bench_replies.py --events 1000000 --keep /var/tmp/replies-1m.sqlite3
    python benchmarks/bench_replies.py --skip-fetch --events 1000000 --backend postgres \
        --dsn postgresql://postgres@127.0.0.1/test --keep replies_1m

Not a test: it prints medians and ratios and exits 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import email
import hashlib
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.policy import compat32
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_audit  # noqa: E402  (the big-log builder, reused)

from mash_requests.audit.events import Event, EventKind  # noqa: E402
from mash_requests.audit.sqlite import SQLiteEventStore  # noqa: E402
from mash_requests.config import load_settings  # noqa: E402

PARTNERS = ("police", "health", "education", "probation", "housing")
DOMAINS = {
    "police": "bench.police.uk",
    "health": "nhs.net",
    "education": "bench.sch.uk",
    "probation": "justice.gov.uk",
    "housing": "bench-homes.org.uk",
}


def config_text(root: Path, log_path: Path) -> str:
    partners = "".join(
        f'\n[partners.{p}]\nname = "{p.title()}"\naddresses = ["mash@{DOMAINS[p]}"]\n'
        for p in PARTNERS
    )
    return f"""
[mash]
sender = "mash@bench.gov.uk"
data_dir = "{root / "data"}"
operator = "bench"

[directory]
allowed_domains = ["*.police.uk", "nhs.net", "*.sch.uk", "justice.gov.uk", "bench-homes.org.uk"]
{partners}
[replies]
source = "folder"
folder = "{root / "replies"}"

[log]
path = "{log_path}"
"""


def timed(run: Callable[[], object], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def line(name: str, what: str, ours: list[float], base: list[float], base_name: str) -> None:
    mine, theirs = statistics.median(ours), statistics.median(base)
    ratio = mine / theirs if theirs else float("inf")
    shown = f"x{ratio:.1f}" if ratio >= 1 else f"x{ratio:.3f}"
    print(
        f"{name:<13} {what:<34} {mine:9.3f} s   baseline {theirs:8.3f} s ({base_name})   {shown}",
        flush=True,
    )


# -- fetch -----------------------------------------------------------------------------------


def _message(n: int, ref: str, message_id: str, partner: str, kind: str) -> bytes:
    """One of the shapes a replies mailbox holds, cheaply formatted."""
    sender = f"officer{n % 7}@{DOMAINS[partner]}"
    subject = f"RE: OFFICIAL-SENSITIVE: AMBER - Request for information - Ref {ref}"
    threading = f"In-Reply-To: {message_id}\r\nReferences: {message_id}\r\n"
    extra = ""
    if kind == "subject":
        subject, threading = f"AW: [SECURE] {subject}", ""
    elif kind == "ooo":
        subject, extra = f"Automatic reply: {subject[4:]}", "Auto-Submitted: auto-generated\r\n"
    elif kind == "stranger":
        sender = f"someone{n}@gmail.com"
    body = (
        "Dear colleague,\r\n\r\nWe hold no information about this child.\r\n\r\n"
        f"> Request reference: {ref}\r\n> Case reference: {ref.rsplit('-', 2)[0]}\r\n"
    )
    date = f"Mon, 13 Apr 2026 10:{n % 60:02d}:00 +0000"
    if kind == "bounce":
        return (
            "From: MAILER-DAEMON@mx.bench.gov.uk\r\nTo: mash@bench.gov.uk\r\n"
            "Subject: Undelivered Mail Returned to Sender\r\n"
            f"Message-ID: <dsn.{n}@mx.bench.gov.uk>\r\nDate: {date}\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
            "--B\r\nContent-Type: text/plain\r\n\r\nfailed\r\n--B\r\n"
            "Content-Type: message/delivery-status\r\n\r\n"
            "Reporting-MTA: dns; mx.bench.gov.uk\r\n\r\n"
            f"Final-Recipient: rfc822; mash@{DOMAINS[partner]}\r\n"
            "Action: failed\r\nStatus: 5.1.1\r\n\r\n"
            f"--B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {message_id}\r\n"
            f"X-MASH-Request-Ref: {ref}\r\n\r\n--B--\r\n"
        ).encode()
    return (
        f"Received: from mx.{DOMAINS[partner]} by mx.bench.gov.uk; {date}\r\n"
        f"From: Officer {n} <{sender}>\r\nTo: mash@bench.gov.uk\r\nSubject: {subject}\r\n"
        f"Date: {date}\r\nMessage-ID: <reply.{n}@{DOMAINS[partner]}>\r\n"
        f"{threading}{extra}Thread-Index: AQHcy3tRq0Wk2vQ0Ck6l1hG0cJm8Gg==\r\n"
        f'MIME-Version: 1.0\r\nContent-Type: text/plain; charset="us-ascii"\r\n\r\n{body}'
    ).encode()


def bench_fetch(args: argparse.Namespace) -> None:
    from mash_requests.replies import fetch_replies

    root = Path(tempfile.mkdtemp(prefix="bench-replies-", dir=args.tmp))
    try:
        log_path = root / "data" / "dispatch-log.sqlite3"
        (root / "replies").mkdir()
        (root / "mash-requests.toml").write_text(config_text(root, log_path))
        settings = load_settings(root / "mash-requests.toml")
        requests = max(args.messages // 2, 1)
        store = SQLiteEventStore(log_path)
        sent: list[tuple[str, str, str]] = []
        batch: list[Event] = []
        for i in range(requests):
            partner = PARTNERS[i % len(PARTNERS)]
            case = f"MASH-2026-{i // len(PARTNERS):05d}"
            ref = f"{case}-{partner.upper()}-{i % 0xFFFFF:05X}"
            message_id = f"<{ref}.{i:016x}@bench.gov.uk>"
            fields = {
                "case_ref": case, "request_ref": ref, "request_key": f"k{i}", "partner": partner,
                "recipients": (f"mash@{DOMAINS[partner]}",), "sender": "mash@bench.gov.uk",
                "message_id": message_id, "gateway": "outbox",
            }  # fmt: skip
            batch.append(Event(EventKind.PREPARED, details={"rag": "amber"}, **fields))  # type: ignore[arg-type]
            batch.append(Event(EventKind.SENT, **fields))  # type: ignore[arg-type]
            sent.append((ref, message_id, partner))
            if len(batch) >= 2000:
                store.append_many(batch)
                batch = []
        store.append_many(batch)
        store.close()
        rng = random.Random(5)
        kinds = (
            ["threaded"] * 70 + ["subject"] * 15 + ["ooo"] * 5 + ["bounce"] * 5 + ["stranger"] * 5
        )
        files = []
        for n in range(args.messages):
            ref, message_id, partner = sent[n % len(sent)]
            path = root / "replies" / f"{n:06d}.eml"
            path.write_bytes(_message(n, ref, message_id, partner, rng.choice(kinds)))
            files.append(path)

        def baseline() -> None:
            for path in files:
                email.message_from_bytes(path.read_bytes(), policy=compat32)

        base = timed(baseline, args.repeat)
        start = time.perf_counter()
        result = fetch_replies(settings)
        first = time.perf_counter() - start
        assert len(result.messages) == args.messages, (len(result.messages), result.already_seen)
        counts = {str(k): result.count(k) for k in EventKind if result.count(k)}
        line("fetch", f"{args.messages:,} messages, first run", [first], base, "read + parse")
        print(f"{'':13} = {args.messages / first:,.0f} messages/s (target >= 1,000); {counts}")
        again = timed(lambda: fetch_replies(settings), args.repeat)
        line("refetch", "same messages, all already seen", again, base, "read + parse")
        print(f"{'':13} = {args.messages / statistics.median(again):,.0f} messages/s\n", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- overdue ---------------------------------------------------------------------------------

_original_make_events = bench_audit.make_events


def events_with_replies(count: int, seed: int = 7) -> Iterator[Event]:
    """bench_audit's events, with a reply after almost every send (some bounce or are chased)."""
    rng = random.Random(seed + 1)
    made = 0
    for event in _original_make_events(count, seed):
        if made == count:
            return
        yield event
        made += 1
        if event.kind is not EventKind.SENT:
            continue
        roll = rng.random()
        kind = (
            EventKind.REPLIED if roll < 0.99
            else EventKind.BOUNCED if roll < 0.993
            else EventKind.CHASED if roll < 0.996
            else None
        )  # fmt: skip
        if kind is None or made == count:
            continue
        yield Event(
            kind,
            event.case_ref,
            request_ref=event.request_ref,
            partner=event.partner,
            message_id=event.message_id,
            details={"channel": "email", "source": "folder"} if kind is EventKind.REPLIED else {},
        )
        made += 1


def new_requests(count: int) -> list[Event]:
    """``count`` events of requests not in the log yet (their own case references each run)."""
    prefix = f"MASH-N{time.time_ns() // 1000:x}-"
    events = []
    for event in _original_make_events(count, seed=99):
        ref = (event.request_ref or "").replace("MASH-2026-", prefix)
        events.append(
            dataclasses.replace(
                event,
                case_ref=event.case_ref.replace("MASH-2026-", prefix),
                request_ref=ref,
                request_key=hashlib.sha256(ref.encode()).hexdigest()[:32],
                message_id=(event.message_id or "").replace("MASH-2026-", prefix),
            )
        )
    return events


def _overdue_backend(args: argparse.Namespace, root: Path) -> bench_audit.Backend:
    if args.backend == "postgres":
        if not args.dsn:
            sys.exit("--backend postgres needs --dsn (or MASH_TEST_POSTGRES_DSN)")
        return bench_audit.PostgresBackend(args.dsn, args.keep)
    return bench_audit.SQLiteBackend(Path(args.keep) if args.keep else root / "log.sqlite3")


def _log_config(backend: bench_audit.Backend, args: argparse.Namespace) -> str:
    """The [log] table naming the benchmark's log (a PostgreSQL DSN through the environment)."""
    if isinstance(backend, bench_audit.PostgresBackend):
        from psycopg import conninfo

        scoped = conninfo.make_conninfo(args.dsn, options=f"-c search_path={backend.schema}")
        os.environ["MASH_BENCH_LOG_DSN"] = scoped
        return '[log]\nbackend = "postgres"\ndsn_env = "MASH_BENCH_LOG_DSN"\n'
    store = backend.store
    assert isinstance(store, SQLiteEventStore)
    return f'[log]\npath = "{store.path}"\n'


def bench_overdue(args: argparse.Namespace) -> None:
    from mash_requests.replies import overdue
    from mash_requests.replies.tracking import TRACKED_KINDS

    bench_audit.make_events = events_with_replies  # build the log with replies in it
    root = Path(tempfile.mkdtemp(prefix="bench-overdue-", dir=args.tmp))
    try:
        backend = _overdue_backend(args, root)
        try:
            size = bench_audit.log_size(backend)
            if not (backend.reused and size >= args.events):
                now = datetime.now(UTC)
                build_args = argparse.Namespace(events=args.events)
                first, last = bench_audit.month_start(now, 12), bench_audit.month_start(now)
                bench_audit.build(backend, build_args, first, last)
                size = bench_audit.log_size(backend)
            else:
                print(f"reusing the kept log ({backend.name}): {size:,} events\n")
            if isinstance(backend, bench_audit.PostgresBackend):
                # What autovacuum does on a server soon after a bulk load: statistics, and the
                # visibility map that lets index-only scans skip the table.
                backend.raw.execute(b"VACUUM (ANALYZE) events")
            ph = backend.placeholder
            kinds = ", ".join(f"'{k}'" for k in TRACKED_KINDS)
            tracked = f"SELECT seq, record FROM events WHERE kind IN ({kinds}) ORDER BY seq"  # noqa: S608

            def read_everything() -> None:
                for _, record in backend.raw_rows(tracked):
                    json.loads(record)

            (root / "mash-requests.toml").write_text(
                config_text(root, root / "unused.sqlite3").replace(
                    f'[log]\npath = "{root / "unused.sqlite3"}"\n', _log_config(backend, args)
                )
            )
            settings = load_settings(root / "mash-requests.toml")
            cache = settings.data_dir / "cache"

            def cold() -> None:
                shutil.rmtree(cache, ignore_errors=True)
                overdue(settings)

            cold_times = timed(cold, args.repeat)
            items = overdue(settings)
            states = {s: sum(1 for i in items if i.state == s) for s in ("overdue", "bounced")}
            listed = [item.request_ref for item in items]

            def read_listed() -> None:
                # The irreducible part: the listed requests' events, had we known which they are.
                for i in range(0, len(listed), 500):
                    chunk = listed[i : i + 500]
                    marks = ", ".join([ph] * len(chunk))
                    sql = f"SELECT seq, record FROM events WHERE request_ref IN ({marks})"  # noqa: S608
                    for _, record in backend.raw_rows(sql, tuple(chunk)):
                        json.loads(record)

            line(
                "overdue cold",
                f"{size:,} events, no cache",
                cold_times,
                timed(read_listed, args.repeat),
                "SELECT + json.loads of the listed requests' events",
            )
            print(f"{'':13} {len(items):,} listed: {states}")
            if not args.skip_read_all:
                line(
                    "overdue cold",
                    f"{size:,} events, no cache",
                    cold_times,
                    timed(read_everything, 1),
                    "SELECT + json.loads of every tracked event",
                )

            # 1,000 new events (requests sent since), then the listing again from the cache.
            extra = new_requests(1000)
            backend.store.append_many(extra)
            [cache_file] = cache.glob("open-requests-*.json")
            head = json.loads(cache_file.read_text())["state"]["seq"]
            newer = (
                f"SELECT record FROM events WHERE seq > {head} AND kind IN ({kinds}) ORDER BY seq"  # noqa: S608
            )

            def baseline_warm() -> None:
                json.loads(cache_file.read_text())
                for (record,) in backend.raw_rows(newer):
                    json.loads(record)

            base_warm = timed(baseline_warm, args.repeat)
            warm_first = timed(lambda: overdue(settings), 1)
            warm = timed(lambda: overdue(settings), args.repeat)
            line(
                "overdue warm",
                "1,000 new events since the cache",
                warm_first,
                base_warm,
                "cache + new rows",
            )
            line("overdue warm", "nothing new", warm, base_warm, "cache + new rows")
            print(f"{'':13} target <= 1 s\n", flush=True)
        finally:
            backend.close()
    finally:
        bench_audit.make_events = _original_make_events
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000, help="messages to fetch (10,000)")
    parser.add_argument(
        "--events", type=int, default=100_000, help="log size for overdue (100,000)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (3)")
    parser.add_argument("--tmp", default=None, help="folder for temporary files (a real disk)")
    parser.add_argument(
        "--keep",
        metavar="PATH",
        help="keep the overdue log and reuse it: a SQLite file, or a PostgreSQL schema name",
    )
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--dsn", default=os.environ.get("MASH_TEST_POSTGRES_DSN"))
    parser.add_argument(
        "--skip-read-all",
        action="store_true",
        help="leave out the slow baseline reading every tracked event of the log",
    )
    parser.add_argument("--skip-fetch", action="store_true")
    parser.add_argument("--skip-overdue", action="store_true")
    args = parser.parse_args()
    version = sys.version.split()[0]
    print(f"mash-requests replies benchmark, python {version}, medians of {args.repeat}\n")
    if not args.skip_fetch:
        bench_fetch(args)
    if not args.skip_overdue:
        bench_overdue(args)


if __name__ == "__main__":
    main()
