"""Benchmark the dispatch log: verify, report, query by case, durable appends.

Each measurement runs beside a baseline doing the irreducible part of the same work in the
same run, on the same rows, so the ratio says what the library adds:

- build:   store.append_many in batches   vs raw INSERTs of the same records (no hashing)
- verify:  verify_chain                   vs reading every record and SHA-256 over its bytes
- report:  build_report + render_html     vs reading every record and json.loads of each
- verifyDB: verify_chain with the database's vs the chain walk alone
           own check (integrity_check/amcheck)
- month:   the same for one month, a month  vs SHA-256 over the records newer than the last
           of events newer than the last       verification + json.loads of that month's
           verified head stored in the log     records
- monthW:  the same verifying the whole     vs SHA-256 over every record + json.loads of
           chain meanwhile (as before)         that month's records
- monthCLI: the same monthly report as the  vs the same as for month
           whole ``audit report`` command in a
           fresh process (imports, config, verification workers, writing the file)
- month*:  the same, reusing a verification vs json.loads of that month's records
           (several reports, one verify)
- query:   query_events(case_ref=…)       vs raw SELECT of the records of that case
- keycheck: a claim's key lookup with its   vs the request_key index lookup alone
           cross-check through the case's rows (the send path's guard against a damaged index)
- append:  store.append, durable commit   vs raw INSERT + COMMIT with the same durability

The events are spread evenly over the ``--months`` whole months before the current one
(the stores' clock is replaced while building), so a monthly report reads about
1/``--months`` of the log.

Usage::

    python benchmarks/bench_audit.py                      # 100,000 events, SQLite
    python benchmarks/bench_audit.py --events 1000000 --keep /var/tmp/bench-1m.sqlite3
    python benchmarks/bench_audit.py --backend postgres --dsn postgresql://postgres@127.0.0.1/test
    python benchmarks/bench_audit.py --events 1000000 --replies --keep /var/tmp/replies-1m.sqlite3

``--replies`` builds the log with a reply after almost every send (a few bounced or chased
instead), as ``benchmarks/bench_replies.py`` builds its own, so a kept log of either serves
both: about 325,000 of a million events are then answers, which the monthly report's
timeliness section reads.

``--month-only`` times only ``month`` and ``monthCLI`` (on a kept log, in a minute or two).

``--keep`` builds the log once and reuses it on later runs (a SQLite file, or a PostgreSQL
schema name), so figures can be taken again in seconds instead of minutes. The append
measurement adds ``--appends`` events to a kept log each run.

Not a test: it prints medians and ratios and exits 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

from mash_requests.audit import Event, EventFilter, EventKind, EventStore
from mash_requests.audit.events import cross_check_keys
from mash_requests.audit.query import query_events
from mash_requests.audit.report import build_report, render_html
from mash_requests.audit.verify import start_verification, verify_chain

PARTNERS = ("police", "health", "education", "probation", "housing", "adult_social_care")

#: Events per append_many while building (one transaction, one recorded_at each).
BUILD_BATCH = 1000


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


def month_start(moment: datetime, months_back: int = 0) -> datetime:
    """Midnight UTC on the first day of the month ``months_back`` before ``moment``'s."""
    index = moment.year * 12 + moment.month - 1 - months_back
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


# -- backends --------------------------------------------------------------------------------


class Backend:
    """A log (fresh, or kept from an earlier run) plus a raw connection for the baselines."""

    name: str
    store: EventStore
    placeholder: str
    #: Whether the log was kept from an earlier run (then it is not built again).
    reused: bool

    def raw_rows(self, sql: str, params: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
        raise NotImplementedError

    def raw_durable_insert(self, row: tuple[Any, ...]) -> None:
        raise NotImplementedError

    def raw_bulk_insert(self, rows: list[tuple[Any, ...]]) -> None:
        raise NotImplementedError

    def clock(self, now: Callable[[], datetime]) -> AbstractContextManager[Any]:
        """Make the store record ``now()`` as the time of each append (while building)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


_BASELINE_TABLE = """CREATE TABLE baseline (seq bigint PRIMARY KEY, recorded_at text,
 kind text, case_ref text, request_ref text, prev_hash text, hash text, record text)"""


class SQLiteBackend(Backend):
    def __init__(self, path: Path) -> None:
        import sqlite3

        from mash_requests.audit.sqlite import SQLiteEventStore

        self.name = "sqlite"
        self.path = path
        self.reused = path.exists()
        self.store = SQLiteEventStore(path)
        self.raw = sqlite3.connect(path, isolation_level=None)
        # The baseline's table lives in a file of its own, attached: a log refuses to open a
        # database that holds tables not its own (the verification workers open it again).
        self.baseline_path = path.with_name(path.name + ".baseline")
        self.raw.execute("ATTACH DATABASE ? AS bench", (str(self.baseline_path),))
        self.raw.execute("PRAGMA journal_mode = WAL")
        self.raw.execute("PRAGMA synchronous = FULL")
        self.raw.execute("PRAGMA bench.journal_mode = WAL")
        self.raw.execute("PRAGMA bench.synchronous = FULL")
        self.raw.execute("DROP TABLE IF EXISTS bench.baseline")
        self.raw.execute(_BASELINE_TABLE.replace("TABLE baseline", "TABLE bench.baseline"))
        self.raw.execute("CREATE INDEX bench.baseline_case_ref ON baseline (case_ref)")
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

    def clock(self, now: Callable[[], datetime]) -> AbstractContextManager[Any]:
        from mash_requests.audit import sqlite

        class Clock(datetime):
            @classmethod
            def now(cls, tz: Any = None) -> Any:
                return now()

        # The store reads the time with datetime.now(UTC) inside its append transaction.
        return mock.patch.object(sqlite, "datetime", Clock)

    def close(self) -> None:
        self.raw.close()
        self.baseline_path.unlink(missing_ok=True)
        for suffix in ("-wal", "-shm"):
            Path(f"{self.baseline_path}{suffix}").unlink(missing_ok=True)
        self.store.close()


class PostgresBackend(Backend):
    def __init__(self, dsn: str, keep: str | None) -> None:
        import psycopg
        from psycopg import conninfo

        from mash_requests.audit.postgres import PostgresEventStore

        self.name = "postgres"
        self.keep = keep is not None
        self.schema = keep or f"bench_{uuid.uuid4().hex[:10]}"
        self.admin = psycopg.connect(dsn, autocommit=True)
        found = self.admin.execute("SELECT to_regclass(%s)", (f"{self.schema}.events",)).fetchone()
        self.reused = found is not None and found[0] is not None
        self.admin.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}".encode())
        scoped = conninfo.make_conninfo(dsn, options=f"-c search_path={self.schema}")
        self.store = PostgresEventStore(scoped)
        # The baseline's table in a schema of its own, searched second: a log refuses to open
        # a schema that holds tables not its own (the verification workers open it again).
        self.baseline_schema = f"{self.schema}_baseline"
        self.admin.execute(f"CREATE SCHEMA IF NOT EXISTS {self.baseline_schema}".encode())
        self.raw = psycopg.connect(
            conninfo.make_conninfo(
                dsn, options=f"-c search_path={self.baseline_schema},{self.schema}"
            ),
            autocommit=True,
        )
        self.raw.execute(b"DROP TABLE IF EXISTS baseline")
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

    def clock(self, now: Callable[[], datetime]) -> AbstractContextManager[Any]:
        from mash_requests.audit import postgres

        def server_now(conn: object) -> datetime:
            return now()

        # An append takes the server's clock_timestamp() in the round trip that reads the
        # chain's head (_HEAD_AND_NOW) and hands it to _insert: each append is given ours.
        original = postgres.PostgresEventStore._insert
        assert "clock_timestamp()" in postgres._HEAD_AND_NOW, "the store reads the time elsewhere"

        def insert(store: Any, conn: Any, events: Any, head: Any) -> Any:
            return original(store, conn, events, (head[0], head[1], now()))

        stack = ExitStack()
        stack.enter_context(mock.patch.object(postgres, "_server_now", server_now))
        stack.enter_context(mock.patch.object(postgres.PostgresEventStore, "_insert", insert))
        return stack

    def close(self) -> None:
        self.raw.close()
        self.store.close()
        self.admin.execute(f"DROP SCHEMA {self.baseline_schema} CASCADE".encode())
        if not self.keep:
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
        f"{name:<8} {what:<30} {_fmt(mine):>10}   baseline {_fmt(theirs):>10} "
        f"({base_name})   x{ratio:.1f}",
        flush=True,
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
        backend: Backend = PostgresBackend(args.dsn, args.keep)
        try:
            yield backend
        finally:
            backend.close()
        return
    if args.keep:
        backend = SQLiteBackend(Path(args.keep))
        try:
            yield backend
        finally:
            backend.close()
        return
    with tempfile.TemporaryDirectory(prefix="bench-audit-", dir=args.tmp) as folder:
        backend = SQLiteBackend(Path(folder) / "dispatch-log.sqlite3")
        try:
            yield backend
        finally:
            backend.close()


def build(backend: Backend, args: argparse.Namespace, first: datetime, last: datetime) -> None:
    """Fill the log with ``--events`` events recorded evenly between ``first`` and ``last``."""
    store = backend.store
    if getattr(args, "replies", False):
        from bench_replies import events_with_replies  # the same log bench_replies builds

        events = list(events_with_replies(args.events))
    else:
        events = list(make_events(args.events))
    batches = -(-len(events) // BUILD_BATCH)
    step = (last - first) / max(batches, 1)
    moment = first

    def now() -> datetime:
        return moment

    start = time.perf_counter()
    with backend.clock(now):
        for i in range(0, len(events), BUILD_BATCH):
            moment = first + step * (i // BUILD_BATCH)
            store.append_many(events[i : i + BUILD_BATCH])
    took = time.perf_counter() - start
    rows = [
        (r[0], str(r[1]), *r[2:])
        for r in backend.raw_rows(
            "SELECT seq, recorded_at, kind, case_ref, request_ref, prev_hash, hash, record "
            "FROM events ORDER BY seq"
        )
    ]
    start = time.perf_counter()
    for i in range(0, len(rows), BUILD_BATCH):
        backend.raw_bulk_insert(rows[i : i + BUILD_BATCH])
    raw_took = time.perf_counter() - start
    line("build", f"{len(events):,} events, 1k/commit", [took], [raw_took], "raw INSERT")
    record_bytes = sum(len(r[7].encode()) for r in rows)
    print(f"{'':8} mean canonical record: {record_bytes / len(rows):.0f} bytes\n")


def log_size(backend: Backend) -> int:
    ((count,),) = list(backend.raw_rows("SELECT count(*) FROM events"))
    return int(count)


def run_cli_report(
    backend: Backend,
    args: argparse.Namespace,
    month: datetime,
    month_end: datetime,
    record_head: Callable[[int, int, str], None],
) -> None:
    """``mash-requests audit report`` for the month in a fresh process, with the verified
    head stored a month behind first (as for ``month``); exit 0 or the benchmark stops."""
    size = log_size(backend)
    behind = size - size // args.months
    ((behind_hash,),) = list(
        backend.raw_rows(
            f"SELECT hash FROM events WHERE seq = {backend.placeholder}",  # noqa: S608
            (behind,),
        )
    )
    record_head(behind, behind, behind_hash)
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="bench-audit-cli-", dir=args.tmp) as folder:
        root = Path(folder)
        if isinstance(backend, PostgresBackend):
            from psycopg import conninfo

            env["MASH_BENCH_LOG_DSN"] = conninfo.make_conninfo(
                args.dsn, options=f"-c search_path={backend.schema}"
            )
            log = '[log]\nbackend = "postgres"\ndsn_env = "MASH_BENCH_LOG_DSN"\n'
        else:
            assert isinstance(backend, SQLiteBackend)
            log = f"[log]\npath = {json.dumps(str(backend.path))}\n"
        config = root / "mash-requests.toml"
        config.write_text(f"[mash]\ndata_dir = {json.dumps(str(root / 'data'))}\n\n{log}")
        last_day = month_end - timedelta(days=1)
        command = [sys.executable, "-m", "mash_requests", "audit", "report"]
        command += ["--from", f"{month:%Y-%m-%d}", "--to", f"{last_day:%Y-%m-%d}"]
        command += ["--out", str(root / "report.html"), "--config", str(config)]
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"audit report exited {done.returncode}: {done.stderr.strip()[-500:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="log size (100,000)")
    parser.add_argument("--months", type=int, default=12, help="months the events span (12)")
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--dsn", default=os.environ.get("MASH_TEST_POSTGRES_DSN"))
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (3)")
    parser.add_argument("--appends", type=int, default=300, help="durable appends timed (300)")
    parser.add_argument("--queries", type=int, default=200, help="case queries timed (200)")
    parser.add_argument("--tmp", default=None, help="folder for the SQLite file (a real disk)")
    parser.add_argument(
        "--keep",
        metavar="PATH",
        default=None,
        help="keep the log here and reuse it next time: a SQLite file, or a PostgreSQL schema",
    )
    parser.add_argument(
        "--replies",
        action="store_true",
        help="build the log with a reply after almost every send (as bench_replies.py does)",
    )
    parser.add_argument(
        "--month-only",
        action="store_true",
        help="time only the monthly report (month, and the command: monthCLI)",
    )
    parser.add_argument(
        "--skip-whole-report", action="store_true", help="do not time the whole-log report"
    )
    parser.add_argument(
        "--skip-database-check",
        action="store_true",
        help="do not time verify with the database's own check (SQLite reads the whole file)",
    )
    args = parser.parse_args()

    first = month_start(datetime.now(UTC), args.months)
    last = month_start(datetime.now(UTC))
    # The month in the middle of the span: as many events before it as after it.
    month = month_start(last, args.months // 2)
    month_end = month_start(last, args.months // 2 - 1)

    from mash_requests.audit._parallel import default_workers

    print(f"mash-requests dispatch log benchmark: {args.events:,} events on {args.backend}")
    print(
        f"python {sys.version.split()[0]}, medians of {args.repeat} run(s), "
        f"{default_workers()} verification worker(s) for logs of 100,000 events or more\n"
    )
    with opened(args) as backend:
        store = backend.store
        ph = backend.placeholder
        size = log_size(backend)
        if backend.reused and size:
            if size < args.events:
                sys.exit(f"the kept log holds {size:,} events, fewer than --events; delete it")
            print(f"reusing the kept log {args.keep}: {size:,} events\n")
        else:
            build(backend, args, first, last)
            size = log_size(backend)

        def baseline_loads(sql: str, params: tuple[Any, ...] = ()) -> None:
            for (record,) in backend.raw_rows(sql, params):
                json.loads(record)

        if not args.month_only:
            # verify
            result = verify_chain(store, check_database=False)
            assert result.ok and result.count == size, result.summary()

            def baseline_verify() -> None:
                for (record,) in backend.raw_rows("SELECT record FROM events ORDER BY seq"):
                    hashlib.sha256(record.encode()).hexdigest()

            line(
                "verify",
                f"{size:,} events, chain",
                timed(lambda: verify_chain(store, check_database=False), args.repeat),
                timed(baseline_verify, args.repeat),
                "read + sha256",
            )
            if not args.skip_database_check:
                line(
                    "verifyDB",
                    "chain + database check",
                    timed(lambda: verify_chain(store), 1),
                    timed(lambda: verify_chain(store, check_database=False), 1),
                    "chain alone",
                )

            # report of the whole log
            if not args.skip_whole_report:

                def report() -> None:
                    render_html(build_report(store, title="benchmark"))

                line(
                    "report",
                    f"whole log, {size:,} events",
                    timed(report, args.repeat),
                    timed(
                        lambda: baseline_loads("SELECT record FROM events ORDER BY seq"),
                        args.repeat,
                    ),
                    "read + json.loads",
                )

        # report of one month (what a steering group asks for). A report verifies what is
        # newer than the last verification stored in the log (a verified head); here, as after
        # a month of sending, that head is a month's events behind (stored before each run).
        window = (
            f"SELECT record FROM events WHERE recorded_at >= {ph} AND recorded_at < {ph}"  # noqa: S608
            " ORDER BY seq"
        )
        bounds: tuple[Any, ...] = (month, month_end)
        if backend.name == "sqlite":
            from mash_requests.audit.chain import format_time

            bounds = (format_time(month), format_time(month_end))
        in_month = sum(1 for _ in backend.raw_rows(window, bounds))
        behind = size - size // args.months
        ((behind_hash,),) = list(
            backend.raw_rows(f"SELECT hash FROM events WHERE seq = {ph}", (behind,))  # noqa: S608
        )
        record_head = store.record_verified_head  # type: ignore[attr-defined]

        def monthly() -> None:
            record_head(behind, behind, behind_hash)  # the whole log verified up to here
            data = build_report(store, since=month, until=month_end, title="benchmark")
            v = data.verification
            assert v.ok and v.verified_from == behind + 1, v.summary()
            render_html(data)

        newer = f"SELECT record FROM events WHERE seq > {ph} ORDER BY seq"  # noqa: S608

        def baseline_monthly() -> None:
            for (record,) in backend.raw_rows(newer, (behind,)):
                hashlib.sha256(record.encode()).hexdigest()
            baseline_loads(window, bounds)

        line(
            "month",
            f"{month:%b %Y}: {in_month:,} events, {size - behind:,} new",
            timed(monthly, args.repeat),
            timed(baseline_monthly, args.repeat),
            "sha256 new + json.loads month",
        )

        # the same as a person runs it: the whole command, in a fresh process
        line(
            "monthCLI",
            "same, `audit report` command",
            timed(
                lambda: run_cli_report(backend, args, month, month_end, record_head), args.repeat
            ),
            timed(baseline_monthly, args.repeat),
            "sha256 new + json.loads month",
        )
        if args.month_only:
            return
        result = verify_chain(store, check_database=False)

        # the same verifying the whole chain meanwhile, as reports did before verified heads
        def monthly_whole() -> None:
            running = start_verification(store, walk_first_here=False)
            try:
                data = build_report(
                    store, since=month, until=month_end, title="benchmark", verification=result
                )
                data = dataclasses.replace(data, verification=running.result())
            finally:
                running.close()
            assert data.verification.ok, data.verification.summary()
            render_html(data)

        def baseline_whole() -> None:
            baseline_verify()
            baseline_loads(window, bounds)

        line(
            "monthW",
            "same, whole chain verified",
            timed(monthly_whole, args.repeat),
            timed(baseline_whole, args.repeat),
            "sha256 all + json.loads month",
        )

        # the same, for a caller making several reports from one verification
        verified = verify_chain(store, check_database=False)

        def monthly_reusing() -> None:
            render_html(
                build_report(
                    store, since=month, until=month_end, title="benchmark", verification=verified
                )
            )

        line(
            "month*",
            "same, verification reused",
            timed(monthly_reusing, args.repeat),
            timed(lambda: baseline_loads(window, bounds), args.repeat),
            "json.loads month",
        )

        # query by case ref
        rng = random.Random(3)
        picked = ", ".join(str(seq) for seq in rng.sample(range(1, size + 1), args.queries))
        cases = [
            case
            for (case,) in backend.raw_rows(
                f"SELECT case_ref FROM events WHERE seq IN ({picked})"  # noqa: S608
            )
        ]

        def query_all() -> None:
            for case in cases:
                list(query_events(store, EventFilter(case_ref=case)))

        sql = f"SELECT record FROM events WHERE case_ref = {ph} ORDER BY seq"  # noqa: S608

        def baseline_query() -> None:
            for case in cases:
                baseline_loads(sql, (case,))

        ours = [t / len(cases) for t in timed(query_all, args.repeat)]
        base = [t / len(cases) for t in timed(baseline_query, args.repeat)]
        line("query", "one case ref (per query)", ours, base, "SELECT + json.loads")

        # the send path's guard: a claim's key lookup, cross-checked through the case's rows
        keyed = [
            (key, case)
            for (key, case) in backend.raw_rows(
                f"SELECT request_key, case_ref FROM events WHERE seq IN ({picked})"  # noqa: S608
                " AND request_key IS NOT NULL"
            )
        ]

        def lookup_only() -> None:
            for key, _ in keyed:
                store.last_event_for_key(key)

        def lookup_checked() -> None:
            for key, case in keyed:
                cross_check_keys(store, case, {key: store.last_event_for_key(key)})

        ours = [t / len(keyed) for t in timed(lookup_checked, args.repeat)]
        base = [t / len(keyed) for t in timed(lookup_only, args.repeat)]
        line("keycheck", "claim lookup + cross-check (per key)", ours, base, "index lookup alone")

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
        assert verify_chain(store, check_database=False).ok


if __name__ == "__main__":
    main()
