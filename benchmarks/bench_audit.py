"""Benchmark the dispatch log: verify, report, query by case, durable appends.

Each measurement runs beside a baseline doing the irreducible part of the same work in the
same run, on the same rows, so the ratio says what the library adds:

- build:   store.append_many in batches   vs raw INSERTs of the same records (no hashing)
- verify:  verify_chain                   vs reading every record and SHA-256 over its bytes
- report:  build_report + render_html     vs reading every record and json.loads of each
- query:   query_events(case_ref=…)       vs raw SELECT of the records of that case
- append:  store.append, durable commit   vs raw INSERT + COMMIT with the same durability

Usage::

    python benchmarks/bench_audit.py                      # 100,000 events, SQLite
    python benchmarks/bench_audit.py --events 1000000
    python benchmarks/bench_audit.py --backend postgres --dsn postgresql://postgres@127.0.0.1/test

Not a test: it prints medians and ratios and exits 0.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mash_requests.audit import Event, EventFilter, EventKind, EventStore
from mash_requests.audit.query import query_events
from mash_requests.audit.report import build_report, render_html
from mash_requests.audit.verify import verify_chain

PARTNERS = ("police", "health", "education", "probation", "housing", "adult_social_care")


def make_events(count: int, seed: int = 7) -> Iterator[Event]:
    """Realistic events: per case 2-4 partners, each prepared then sent, some retried."""
    rng = random.Random(seed)
    made = 0
    case_no = 0
    while made < count:
        case_no += 1
        case = f"MASH-2026-{case_no:06d}"
        for partner in rng.sample(PARTNERS, rng.randint(2, 4)):
            ref = f"{case}-{partner}"
            common: dict[str, Any] = {
                "request_ref": ref,
                "request_key": hashlib.sha256(ref.encode()).hexdigest()[:32],
                "partner": partner,
                "recipients": (f"mash.{partner}@partner.gov.uk",),
                "gateway": "smtp",
                "sender": "mash@council.gov.uk",
                "message_id": f"<{ref}.{case_no}@council.gov.uk>",
                "form_filename": f"{case}.pdf",
                "form_sha256": hashlib.sha256(case.encode()).hexdigest(),
                "form_size": 180_000 + case_no % 5000,
                "form_pages": 4,
                "template": partner,
                "template_version": "3",
                "operator": "jsmith",
            }
            batch = [Event(EventKind.PREPARED, case, details={"rag": "amber"}, **common)]
            if rng.random() < 0.05:
                batch.append(
                    Event(
                        EventKind.ATTEMPT_FAILED,
                        case,
                        attempt=1,
                        error_class="transient",
                        server_message="451 4.7.0 try again later",
                        wait_seconds=2.5,
                        **common,
                    )
                )
            batch.append(Event(EventKind.SENT, case, gateway_id="250 2.0.0 OK", **common))
            for event in batch:
                if made == count:
                    return
                made += 1
                yield event


# -- backends --------------------------------------------------------------------------------


class Backend:
    """A fresh log plus a raw connection for the baselines."""

    name: str
    store: EventStore
    placeholder: str

    def raw_rows(self, sql: str, params: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
        raise NotImplementedError

    def raw_durable_insert(self, row: tuple[Any, ...]) -> None:
        raise NotImplementedError

    def raw_bulk_insert(self, rows: list[tuple[Any, ...]]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


_BASELINE_TABLE = """CREATE TABLE baseline (seq bigint PRIMARY KEY, recorded_at text,
 kind text, case_ref text, request_ref text, prev_hash text, hash text, record text)"""


class SQLiteBackend(Backend):
    def __init__(self, folder: Path) -> None:
        import sqlite3

        from mash_requests.audit.sqlite import SQLiteEventStore

        self.name = "sqlite"
        self.store = SQLiteEventStore(folder / "dispatch-log.sqlite3")
        self.raw = sqlite3.connect(folder / "dispatch-log.sqlite3", isolation_level=None)
        self.raw.execute("PRAGMA journal_mode = WAL")
        self.raw.execute("PRAGMA synchronous = FULL")
        self.raw.execute(_BASELINE_TABLE)
        self.raw.execute("CREATE INDEX baseline_case_ref ON baseline (case_ref)")
        self.placeholder = "?"

    def raw_rows(self, sql: str, params: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
        cursor = self.raw.execute(sql, params)
        while rows := cursor.fetchmany(1000):
            yield from rows

    def raw_durable_insert(self, row: tuple[Any, ...]) -> None:
        self.raw.execute("BEGIN IMMEDIATE")
        self.raw.execute("INSERT INTO baseline VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)
        self.raw.execute("COMMIT")

    def raw_bulk_insert(self, rows: list[tuple[Any, ...]]) -> None:
        self.raw.execute("BEGIN IMMEDIATE")
        self.raw.executemany("INSERT INTO baseline VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        self.raw.execute("COMMIT")

    def close(self) -> None:
        self.raw.close()
        self.store.close()


class PostgresBackend(Backend):
    def __init__(self, dsn: str) -> None:
        import psycopg
        from psycopg import conninfo

        from mash_requests.audit.postgres import PostgresEventStore

        self.name = "postgres"
        self.schema = f"bench_{uuid.uuid4().hex[:10]}"
        self.admin = psycopg.connect(dsn, autocommit=True)
        self.admin.execute(f"CREATE SCHEMA {self.schema}".encode())
        scoped = conninfo.make_conninfo(dsn, options=f"-c search_path={self.schema}")
        self.store = PostgresEventStore(scoped)
        self.raw = psycopg.connect(scoped, autocommit=True)
        self.raw.execute(_BASELINE_TABLE.encode())
        self.raw.execute(b"CREATE INDEX baseline_case_ref ON baseline (case_ref)")
        self.placeholder = "%s"

    def raw_rows(self, sql: str, params: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
        with self.raw.transaction(), self.raw.cursor(name="bench") as cursor:
            cursor.itersize = 1000
            cursor.execute(sql.encode(), params)
            yield from cursor

    def raw_durable_insert(self, row: tuple[Any, ...]) -> None:
        with self.raw.transaction():
            self.raw.execute(b"INSERT INTO baseline VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", row)

    def raw_bulk_insert(self, rows: list[tuple[Any, ...]]) -> None:
        with self.raw.transaction(), self.raw.cursor() as cursor:
            cursor.executemany(
                b"INSERT INTO baseline VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", rows
            )

    def close(self) -> None:
        self.raw.close()
        self.store.close()
        self.admin.execute(f"DROP SCHEMA {self.schema} CASCADE".encode())
        self.admin.close()


# -- measuring -------------------------------------------------------------------------------


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def line(name: str, what: str, ours: list[float], base: list[float], base_name: str) -> None:
    mine, theirs = statistics.median(ours), statistics.median(base)
    ratio = mine / theirs if theirs else float("inf")
    print(
        f"{name:<8} {what:<26} {_fmt(mine):>10}   baseline {_fmt(theirs):>10} "
        f"({base_name})   x{ratio:.1f}"
    )


def _fmt(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.0f} us"


@contextmanager
def opened(args: argparse.Namespace) -> Iterator[Backend]:
    if args.backend == "postgres":
        if not args.dsn:
            sys.exit("--backend postgres needs --dsn (or MASH_TEST_POSTGRES_DSN)")
        backend: Backend = PostgresBackend(args.dsn)
        try:
            yield backend
        finally:
            backend.close()
        return
    with tempfile.TemporaryDirectory(prefix="bench-audit-", dir=args.tmp) as folder:
        backend = SQLiteBackend(Path(folder))
        try:
            yield backend
        finally:
            backend.close()


def main() -> None:
    import os

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="log size (100,000)")
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--dsn", default=os.environ.get("MASH_TEST_POSTGRES_DSN"))
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (3)")
    parser.add_argument("--appends", type=int, default=300, help="durable appends timed (300)")
    parser.add_argument("--queries", type=int, default=200, help="case queries timed (200)")
    parser.add_argument("--tmp", default=None, help="folder for the SQLite file (a real disk)")
    args = parser.parse_args()

    print(f"mash-requests dispatch log benchmark: {args.events:,} events on {args.backend}")
    print(f"python {sys.version.split()[0]}, medians of {args.repeat} run(s)\n")
    with opened(args) as backend:
        store = backend.store
        ph = backend.placeholder

        # build: append_many in batches of 1,000 vs raw inserts of the very same records
        events = list(make_events(args.events))
        start = time.perf_counter()
        for i in range(0, len(events), 1000):
            store.append_many(events[i : i + 1000])
        build = time.perf_counter() - start
        rows = [
            (r[0], str(r[1]), *r[2:])
            for r in backend.raw_rows(
                "SELECT seq, recorded_at, kind, case_ref, request_ref, prev_hash, hash, record "
                "FROM events ORDER BY seq"
            )
        ]
        start = time.perf_counter()
        for i in range(0, len(rows), 1000):
            backend.raw_bulk_insert(rows[i : i + 1000])
        raw_build = time.perf_counter() - start
        line("build", f"{len(events):,} events, 1k/commit", [build], [raw_build], "raw INSERT")
        record_bytes = sum(len(r[7].encode()) for r in rows)
        print(f"{'':8} mean canonical record: {record_bytes / len(rows):.0f} bytes\n")
        del rows

        # verify
        result = verify_chain(store)
        assert result.ok and result.count == args.events, result.summary()

        def baseline_verify() -> None:
            for (record,) in backend.raw_rows("SELECT record FROM events ORDER BY seq"):
                hashlib.sha256(record.encode()).hexdigest()

        line(
            "verify",
            f"{args.events:,} events",
            timed(lambda: verify_chain(store), args.repeat),
            timed(baseline_verify, args.repeat),
            "read + sha256",
        )

        # report
        def report() -> None:
            render_html(build_report(store, title="benchmark"))

        def baseline_report() -> None:
            for (record,) in backend.raw_rows("SELECT record FROM events ORDER BY seq"):
                json.loads(record)

        line(
            "report",
            f"{args.events:,} events (+verify)",
            timed(report, args.repeat),
            timed(baseline_report, args.repeat),
            "read + json.loads",
        )

        # query by case ref
        rng = random.Random(3)
        cases = [e.case_ref for e in rng.sample(events, min(args.queries, len(events)))]
        del events

        def query_all() -> None:
            for case in cases:
                list(query_events(store, EventFilter(case_ref=case)))

        sql = f"SELECT record FROM events WHERE case_ref = {ph} ORDER BY seq"  # noqa: S608

        def baseline_query() -> None:
            for case in cases:
                for (record,) in backend.raw_rows(sql, (case,)):
                    json.loads(record)

        ours = [t / len(cases) for t in timed(query_all, args.repeat)]
        base = [t / len(cases) for t in timed(baseline_query, args.repeat)]
        line("query", "one case ref (per query)", ours, base, "SELECT + json.loads")

        # durable appends, one transaction each
        extra = list(make_events(args.appends, seed=11))
        start = time.perf_counter()
        for event in extra:
            store.append(event)
        ours_append = (time.perf_counter() - start) / len(extra)
        (template,) = list(  # read to the end: no transaction left open
            backend.raw_rows(
                "SELECT seq, recorded_at, kind, case_ref, request_ref, prev_hash, hash, record "
                "FROM events ORDER BY seq DESC LIMIT 1"
            )
        )
        base_seq = 10_000_000
        start = time.perf_counter()
        for i in range(len(extra)):
            backend.raw_durable_insert((base_seq + i, str(template[1]), *template[2:]))
        base_append = (time.perf_counter() - start) / len(extra)
        line(
            "append",
            "one event, durable commit",
            [ours_append],
            [base_append],
            "INSERT+COMMIT",
        )
        print(f"{'':8} = {1 / ours_append:,.0f} durable appends/s from one process")
        assert verify_chain(store).ok


if __name__ == "__main__":
    main()
