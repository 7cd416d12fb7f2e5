"""Run every benchmark in this folder, one after another, with the same Python.

    .venv/bin/python benchmarks/run.py            # default sizes (a few minutes)
    .venv/bin/python benchmarks/run.py --full     # the issues' sizes: 1,000,000-event logs

Each script prints its figures beside a baseline measured in the same run; see README.md here.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--full", action="store_true", help="audit and overdue benchmarks on 1,000,000 events"
    )
    args = parser.parse_args()
    runs: list[list[str]] = [
        ["bench_product.py"],
        ["bench_form_check.py"],
        ["bench_message.py"],
        ["bench_handover.py"],
        ["bench_audit.py", *(["--events", "1000000"] if args.full else [])],
        ["bench_replies.py", *(["--events", "1000000"] if args.full else [])],
    ]
    failed = 0
    for script, *script_args in runs:
        print(f"\n== {script} {' '.join(script_args)}", flush=True)
        failed += subprocess.run([sys.executable, str(HERE / script), *script_args]).returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
