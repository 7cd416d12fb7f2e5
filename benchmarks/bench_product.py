"""Benchmarks of the whole product, each figure beside a baseline measured in the same run.

Run from the repository root (after the test install of the README):

    .venv/bin/python benchmarks/bench_product.py            # everything, default sizes
    .venv/bin/python benchmarks/bench_product.py startup e2e throughput memory

The machines are shared and noisy, so every figure is a median of several runs and is
reported beside a baseline (a bare-Python equivalent) as a ratio. These are not tests: they
print, they do not assert.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
BIN = Path(sys.executable).parent


def median_time(run: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def report(
    name: str, value: float, unit: str, baseline: float, base_name: str, target: str
) -> None:
    ratio = value / baseline if baseline else float("nan")
    print(
        f"{name:<44} {value:10.4f} {unit:<6} baseline {base_name} {baseline:.4f} {unit} "
        f"(x{ratio:.2f})  target {target}"
    )


def config_text(root: Path, extra: str = "") -> str:
    return f"""
[mash]
name = "Bench MASH"
sender = "mash@bench.gov.uk"
data_dir = "{root / "data"}"
operator = "bench"

[directory]
allowed_domains = ["*.police.uk", "nhs.net", "bench.gov.uk", "eastbury.gov.uk"]

[partners.police]
name = "Police"
addresses = ["mash@bench.police.uk"]

[partners.health]
name = "Health"
addresses = ["mash@nhs.net"]

[partners.education]
name = "Education"
addresses = ["education@bench.gov.uk"]

[partners.probation]
name = "Probation"
addresses = ["probation@bench.gov.uk"]
template = "probation"

[partners.housing]
name = "Housing"
addresses = ["housing@bench.gov.uk"]

[rate_limit]
per_minute = 1000000
{extra}
"""


def make_batch(root: Path, cases: int, *, distinct_forms: bool) -> Path:
    """A JSON Lines batch of ``cases`` cases, five partners each, with filled forms."""
    from mash_requests.case import parse_case
    from mash_requests.config import DEFAULT_FILL_MAPPING
    from mash_requests.referral_form import fill_form

    blank = (EXAMPLES / "forms" / "blank-referral-form.pdf").read_bytes()
    base = json.loads((EXAMPLES / "cases" / "MASH-2026-0412.json").read_text())
    base["partners"] = ["police", "health", "education", "probation", "housing"]
    forms = root / "forms"
    forms.mkdir(exist_ok=True)
    batch = root / "batch.jsonl"
    with batch.open("w", encoding="utf-8") as handle:
        for number in range(cases):
            data = dict(base)
            # Without distinct forms every case shares one case reference and form (the
            # contact ids differ, so the requests do too): the memory run needs no 10,000 PDFs.
            data["case_ref"] = f"MASH-2026-{100000 + (number if distinct_forms else 0)}"
            data["contact_id"] = f"CON-{100000 + number}"
            form_name = f"{data['case_ref']}.pdf"
            data["referral_form"] = f"forms/{form_name}"
            if distinct_forms or number == 0:
                case = parse_case(data, source="bench", base_dir=root)
                values = case.form_values(DEFAULT_FILL_MAPPING)
                (forms / form_name).write_bytes(fill_form(blank, values))
            handle.write(json.dumps(data) + "\n")
    return batch


# -- 1. start-up --------------------------------------------------------------------------


def bench_startup(repeat: int) -> None:
    def run(*argv: str) -> Callable[[], object]:
        return lambda: subprocess.run(argv, capture_output=True, check=True)

    baseline = median_time(run(sys.executable, "-c", "pass"), repeat)
    for label, argv in (
        ("start-up: mash-requests --help", (str(BIN / "mash-requests"), "--help")),
        ("start-up: send-request --help", (str(BIN / "send-request"), "--help")),
    ):
        report(label, median_time(run(*argv), repeat), "s", baseline, "python -c pass", "<= 0.1 s")
    heavy = subprocess.run(
        [sys.executable, "-c",
         "import sys, mash_requests.cli; "
         "print(sorted(m for m in ('exchangelib','msal','pypdf','psycopg','requests','jinja2')"
         " if m in sys.modules))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    print(f"{'start-up: heavy modules loaded by the CLI':<44} {heavy}")


# -- 2. one request end to end ---------------------------------------------------------------


def bench_e2e(repeat: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="mash-bench-e2e-"))
    try:
        config = root / "mash-requests.toml"
        config.write_text(config_text(root), encoding="utf-8")
        case = EXAMPLES / "cases" / "MASH-2026-0412.json"
        counter = iter(range(10**6))

        def one() -> None:
            # A fresh log each run so the duplicate check never refuses.
            shutil.rmtree(root / "data", ignore_errors=True)
            subprocess.run(
                [str(BIN / "send-request"), "--config", str(config), "--case", str(case),
                 "--partner", "police"],
                capture_output=True, check=True,
            )  # fmt: skip
            next(counter)

        baseline = median_time(
            lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), repeat
        )
        report("one request end to end (fresh process)", median_time(one, repeat), "s",
               baseline, "python -c pass", "<= 0.4 s")  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- 3. throughput through SMTP, beside bare smtplib and red-mail -----------------------------

# The sink answers 250 to every message and counts them; a line "count" on its stdin makes it
# print (and reset) the count, so every contender is checked to have delivered every message.
SINK = r"""
import sys
from aiosmtpd.controller import Controller
class Sink:
    count = 0
    async def handle_DATA(self, server, session, envelope):
        Sink.count += 1
        return "250 OK"
c = Controller(Sink(), hostname="127.0.0.1", port=int(sys.argv[1]))
c.start()
print("ready", flush=True)
for line in sys.stdin:
    print(Sink.count, flush=True)
    Sink.count = 0
c.stop()
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _Sink:
    """The aiosmtpd sink in a process of its own, over loopback."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-c", SINK, str(self.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.process.stdout.readline()

    def delivered(self) -> int:
        """Messages taken since the last call."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("count\n")
        self.process.stdin.flush()
        return int(self.process.stdout.readline())

    def close(self) -> None:
        self.process.communicate("", timeout=30)


def _redmail_sender(root: Path, port: int) -> Callable[[], None]:
    """red-mail doing what a council might write in its place: for every request, render the
    same Jinja templates (text and HTML, the same filters), attach the case's form from
    disk and send, over one connection. No checks, no log."""
    import jinja2
    from redmail import EmailSender

    from mash_requests.batch import read_rows
    from mash_requests.case import parse_case
    from mash_requests.deadlines import describe_hours
    from mash_requests.message import form_filename
    from mash_requests.rendering import CONSENT_TEXT, format_date, format_due, shipped_templates

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(shipped_templates())),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(["html.j2"]),
        keep_trailing_newline=True,
        trim_blocks=True,
    )
    env.filters["due"] = format_due
    env.filters["date"] = format_date
    sender = EmailSender(host="127.0.0.1", port=port, use_starttls=False)
    sender.templates_text = env
    sender.templates_html = env
    addresses = {
        "police": "mash@bench.police.uk",
        "health": "mash@nhs.net",
        "education": "education@bench.gov.uk",
        "probation": "probation@bench.gov.uk",
        "housing": "housing@bench.gov.uk",
    }
    cases = [
        parse_case(data, source="bench", base_dir=root)
        for _, data in read_rows(root / "batch.jsonl")
    ]
    due = datetime(2026, 12, 4, 13, 15, tzinfo=UTC)

    def run() -> None:
        sender.connect()
        try:
            for case in cases:
                assert case.referral_form is not None
                for key in case.partners:
                    name = "probation" if key == "probation" else key
                    params = {
                        "case": case, "child": case.child, "worker": case.worker,
                        "partner": {"key": key, "name": key.title(), "addresses": [addresses[key]]},
                        "request_ref": f"{case.case_ref}-{key.upper()}-BENCH",
                        "marking": "OFFICIAL-SENSITIVE", "mash_name": "Bench MASH",
                        "rag": str(case.rag), "rag_upper": str(case.rag).upper(),
                        "rag_hours": 24, "timescale": describe_hours(24, working=True),
                        "due": due, "due_text": format_due(due),
                        "consent_text": CONSENT_TEXT[case.consent.status],
                        "form_filename": form_filename(case.case_ref),
                        "replaces": None,
                    }  # fmt: skip
                    subject = env.get_template(f"{name}.subject.j2").render(params).strip()
                    sender.send(
                        subject=subject,
                        sender="mash@bench.gov.uk",
                        receivers=[addresses[key]],
                        text_template=f"{name}.txt.j2",
                        html_template=f"{name}.html.j2",
                        body_params=params,
                        attachments={form_filename(case.case_ref): case.referral_form},
                    )
        finally:
            sender.close()

    return run


def smtp_config(root: Path, port: int, log: str = "") -> str:
    return config_text(
        root,
        f"""
[gateway]
type = "smtp"
[gateway.smtp]
host = "127.0.0.1"
port = {port}
security = "none"
mailbox = "mash@bench.gov.uk"
{log}""",
    )


def bench_throughput(
    requests: int, repeat: int, workers: Sequence[int], backends: Sequence[str], dsn: str | None
) -> None:
    from mash_requests.batch import send_batch
    from mash_requests.config import load_settings

    cases = max(1, requests // 5)
    n = cases * 5
    sink = _Sink()
    root = Path(tempfile.mkdtemp(prefix="mash-bench-tp-"))
    try:
        batch = make_batch(root, cases, distinct_forms=True)

        # Pre-built messages for the floor: the product's own messages, bytes ready.
        prebuilt: list[tuple[list[str], bytes]] = []
        outbox_config = root / "outbox.toml"
        outbox_config.write_text(config_text(root / "prebuild"), encoding="utf-8")
        send_batch(load_settings(outbox_config), batch)
        for path in sorted((root / "prebuild" / "data" / "outbox").glob("*.eml")):
            prebuilt.append((["mash@nhs.net"], path.read_bytes()))

        def bare() -> None:
            with smtplib.SMTP("127.0.0.1", sink.port) as client:
                for recipients, data in prebuilt:
                    client.sendmail("mash@bench.gov.uk", recipients, data)

        redmail = _redmail_sender(root, sink.port)
        # (label, prepare untimed, timed run). Every repetition runs each contender once, in
        # turn, so a shared machine's changing load falls on all of them alike.
        contenders: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
            ("bare smtplib, pre-built messages", lambda: None, bare),
            ("red-mail, Jinja + attach + send", lambda: None, redmail),
        ]
        for backend in backends:
            if backend == "postgres" and not dsn:
                print("  (postgres: skipped, give --dsn or $MASH_BENCH_POSTGRES_DSN)")
                continue
            config = root / f"smtp-{backend}.toml"
            log = ""
            if backend == "postgres":
                log = '[log]\nbackend = "postgres"\ndsn_env = "MASH_BENCH_LOG_DSN"\n'
            config.write_text(smtp_config(root, sink.port, log), encoding="utf-8")
            for count in workers:

                def prepare(kind: str = backend) -> None:
                    _fresh_log(root, kind, dsn)

                def product(config: Path = config, count: int = count) -> None:
                    result = send_batch(load_settings(config), batch, workers=count)
                    assert result.counts["sent"] == n, result.counts

                label = f"send-batch, {backend}, {count} worker{'s' if count > 1 else ''}"
                contenders.append((label, prepare, product))
        times: dict[str, list[float]] = {label: [] for label, _, _ in contenders}
        load = os.getloadavg()[0]
        for _ in range(repeat):
            for label, prepare, run in contenders:
                prepare()
                start = time.perf_counter()
                run()
                times[label].append(time.perf_counter() - start)
                delivered = sink.delivered()
                assert delivered == n, f"{label}: the sink took {delivered} messages, not {n}"
        print(f"throughput: {n} requests ({cases} cases x 5 partners, each case its own form), "
              f"aiosmtpd sink in another process; medians of {repeat}, contenders in turn; "
              f"load average {load:.1f} -> {os.getloadavg()[0]:.1f}")  # fmt: skip
        bare_times, redmail_times = times[contenders[0][0]], times[contenders[1][0]]
        bare_time, redmail_time = statistics.median(bare_times), statistics.median(redmail_times)
        for label, _, _ in contenders:
            took = statistics.median(times[label])
            line = f"  {label:<42} {took:8.3f} s {n / took:8.1f}/s"
            if label.startswith("send-batch"):
                # Also each repetition's ratio to the peers run beside it in that repetition,
                # then their median: a load that changes between repetitions falls on both.
                paired_rate = statistics.median(
                    r / t for r, t in zip(redmail_times, times[label], strict=True)
                )
                paired_time = statistics.median(
                    t / b for t, b in zip(times[label], bare_times, strict=True)
                )
                line += (f"   x{redmail_time / took:.2f} red-mail's rate (target >= 1.5), "
                         f"x{took / bare_time:.2f} bare smtplib's time (target <= 3); "
                         f"paired x{paired_rate:.2f}, x{paired_time:.2f}")  # fmt: skip
            print(line + f"   [{', '.join(f'{t:.2f}' for t in times[label])}]")
    finally:
        sink.close()
        shutil.rmtree(root, ignore_errors=True)


def _fresh_log(root: Path, backend: str, dsn: str | None) -> None:
    """An empty dispatch log for each run, so nothing is refused as a duplicate."""
    shutil.rmtree(root / "data", ignore_errors=True)
    if backend != "postgres":
        return
    import psycopg

    assert dsn is not None
    schema = "mash_bench_" + os.urandom(4).hex()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    os.environ["MASH_BENCH_LOG_DSN"] = _with_search_path(dsn, schema)
    _SCHEMAS.append(schema)


_SCHEMAS: list[str] = []


def _with_search_path(dsn: str, schema: str) -> str:
    from psycopg import conninfo

    return conninfo.make_conninfo(dsn, options=f"-c search_path={schema}")


def _drop_schemas(dsn: str | None) -> None:
    if not dsn or not _SCHEMAS:
        return
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        for schema in _SCHEMAS:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


# -- 6. memory -------------------------------------------------------------------------------

# Peak RSS is read from VmHWM: getrusage's ru_maxrss survives exec on Linux, so a child
# started from this (large) process would report the parent's peak as its own.
PEAK = "int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])"
MEMORY = rf"""
import sys
from pathlib import Path
from mash_requests.batch import send_batch
from mash_requests.config import load_settings
result = send_batch(load_settings(Path(sys.argv[1])), Path(sys.argv[2]), dry_run=True)
print({PEAK}, sum(result.counts.values()))
"""
BASE_MEMORY = rf"""
import mash_requests.batch, mash_requests.referral_form, jinja2, pypdf
print({PEAK}, 0)
"""


def bench_memory(cases: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="mash-bench-mem-"))
    try:
        batch = make_batch(root, cases, distinct_forms=False)
        config = root / "mash-requests.toml"
        config.write_text(config_text(root), encoding="utf-8")
        peak_kib, handled = subprocess.run(
            [sys.executable, "-c", MEMORY, str(config), str(batch)],
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        base_kib, _ = subprocess.run(
            [sys.executable, "-c", BASE_MEMORY], capture_output=True, text=True, check=True
        ).stdout.split()
        report(f"memory: peak RSS, {cases}-case batch ({handled} requests, dry run)",
               int(peak_kib) / 1024, "MB", int(base_kib) / 1024, "imports only",
               "<= 200 MB")  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    everything = ["startup", "e2e", "throughput", "memory"]
    parser.add_argument("which", nargs="*", help=f"any of {', '.join(everything)} (default: all)")
    parser.add_argument(
        "--repeat",
        type=int,
        help="repetitions of each figure (default: 5; 3 for throughput, whose runs are long)",
    )
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--cases", type=int, default=10000)
    parser.add_argument(
        "--workers", default="1", help="throughput: send-batch --workers counts, e.g. 1,2,4"
    )
    parser.add_argument(
        "--backends", default="sqlite", help="throughput: dispatch logs, e.g. sqlite,postgres"
    )
    parser.add_argument(
        "--dsn",
        default=os.environ.get("MASH_BENCH_POSTGRES_DSN"),
        help="throughput on postgres: a database where schemas may be made (and dropped)",
    )
    args = parser.parse_args(argv)
    unknown = set(args.which) - set(everything)
    if unknown:
        parser.error(f"unknown benchmark {sorted(unknown)[0]!r}; choose from {everything}")
    args.which = args.which or everything
    os.environ.setdefault("MASH_OPERATOR", "bench")
    repeat = max(1, args.repeat or 5)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; start-up and end to end: "
          f"medians of {repeat}")  # fmt: skip
    if "startup" in args.which:
        bench_startup(repeat)
    if "e2e" in args.which:
        bench_e2e(repeat)
    if "throughput" in args.which:
        try:
            bench_throughput(
                args.requests,
                max(1, args.repeat or 3),
                [int(w) for w in args.workers.split(",")],
                args.backends.split(","),
                args.dsn,
            )
        finally:
            _drop_schemas(args.dsn)
    if "memory" in args.which:
        bench_memory(args.cases)


if __name__ == "__main__":
    main()
