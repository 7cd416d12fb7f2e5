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
from collections.abc import Callable
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
        report(label, median_time(run(*argv), repeat), "s", baseline, "python -c pass", "<= 0.2 s")
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
               baseline, "python -c pass", "<= 0.6 s")  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- 3. throughput through SMTP --------------------------------------------------------------

SINK = r"""
import asyncio, sys
from aiosmtpd.controller import Controller
class Sink:
    count = 0
    async def handle_DATA(self, server, session, envelope):
        Sink.count += 1
        return "250 OK"
c = Controller(Sink(), hostname="127.0.0.1", port=int(sys.argv[1]))
c.start()
print("ready", flush=True)
sys.stdin.read()
c.stop()
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def bench_throughput(requests: int, repeat: int) -> None:
    from mash_requests.batch import send_batch
    from mash_requests.config import load_settings

    cases = max(1, requests // 5)
    port = free_port()
    sink = subprocess.Popen(
        [sys.executable, "-c", SINK, str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert sink.stdout is not None
        sink.stdout.readline()
        root = Path(tempfile.mkdtemp(prefix="mash-bench-tp-"))
        batch = make_batch(root, cases, distinct_forms=True)
        smtp = f"""
[gateway]
type = "smtp"
[gateway.smtp]
host = "127.0.0.1"
port = {port}
security = "none"
mailbox = "mash@bench.gov.uk"
"""
        config = root / "mash-requests.toml"
        config.write_text(config_text(root, smtp), encoding="utf-8")
        settings = load_settings(config)

        # Pre-built messages for the baseline: the product's own messages, bytes ready.
        prebuilt: list[tuple[list[str], bytes]] = []
        outbox_config = root / "outbox.toml"
        outbox_config.write_text(config_text(root / "prebuild"), encoding="utf-8")
        send_batch(load_settings(outbox_config), batch)
        for path in sorted((root / "prebuild" / "data" / "outbox").glob("*.eml")):
            prebuilt.append((["mash@nhs.net"], path.read_bytes()))

        def bare() -> None:
            with smtplib.SMTP("127.0.0.1", port) as client:
                for recipients, data in prebuilt:
                    client.sendmail("mash@bench.gov.uk", recipients, data)

        def product() -> None:
            shutil.rmtree(root / "data", ignore_errors=True)
            result = send_batch(settings, batch)
            assert result.counts["sent"] == cases * 5, result.counts

        bare_time = median_time(bare, repeat)
        product_time = median_time(product, repeat)
        n = cases * 5
        report(f"throughput: {n} requests via SMTP (s)", product_time, "s", bare_time,
               "bare smtplib", "<= 1.5x bare")  # fmt: skip
        print(f"{'throughput: requests per second':<44} {n / product_time:10.1f} req/s "
              f"(bare smtplib {n / bare_time:.1f} msg/s)  target >= 150 req/s")  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)
    finally:
        sink.communicate(b"", timeout=30)


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
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--cases", type=int, default=10000)
    args = parser.parse_args(argv)
    unknown = set(args.which) - set(everything)
    if unknown:
        parser.error(f"unknown benchmark {sorted(unknown)[0]!r}; choose from {everything}")
    args.which = args.which or everything
    os.environ.setdefault("MASH_OPERATOR", "bench")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; medians of {args.repeat}")
    if "startup" in args.which:
        bench_startup(args.repeat)
    if "e2e" in args.which:
        bench_e2e(args.repeat)
    if "throughput" in args.which:
        bench_throughput(args.requests, max(1, min(args.repeat, 3)))
    if "memory" in args.which:
        bench_memory(args.cases)


if __name__ == "__main__":
    main()
