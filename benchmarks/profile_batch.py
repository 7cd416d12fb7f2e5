"""Profile one ``send-batch`` run through SMTP with pyinstrument: where does the time go?

    .venv/bin/python benchmarks/profile_batch.py                 # 1,000 requests, SQLite
    .venv/bin/python benchmarks/profile_batch.py --backend postgres --dsn postgresql://…
    .venv/bin/python benchmarks/profile_batch.py --html profile.html

The batch, the sink and the config are those of ``bench_product.py throughput`` (an aiosmtpd
sink in another process over loopback; 200 cases x 5 partners, each case its own form). The
sink's own time is not in the profile: it runs in its own process.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_product import _drop_schemas, _fresh_log, _Sink, make_batch, smtp_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--dsn", default=os.environ.get("MASH_BENCH_POSTGRES_DSN"))
    parser.add_argument("--html", type=Path, help="also write pyinstrument's HTML report here")
    args = parser.parse_args()
    if args.backend == "postgres" and not args.dsn:
        parser.error("--backend postgres needs --dsn (or $MASH_BENCH_POSTGRES_DSN)")
    from pyinstrument import Profiler

    from mash_requests.batch import send_batch
    from mash_requests.config import load_settings

    os.environ.setdefault("MASH_OPERATOR", "bench")
    sink = _Sink()
    root = Path(tempfile.mkdtemp(prefix="mash-profile-"))
    try:
        cases = max(1, args.requests // 5)
        batch = make_batch(root, cases, distinct_forms=True)
        log = ""
        if args.backend == "postgres":
            log = '[log]\nbackend = "postgres"\ndsn_env = "MASH_BENCH_LOG_DSN"\n'
        config = root / "mash-requests.toml"
        config.write_text(smtp_config(root, sink.port, log), encoding="utf-8")
        _fresh_log(root, args.backend, args.dsn)
        settings = load_settings(config)
        profiler = Profiler(interval=0.0005)
        with profiler:
            result = send_batch(settings, batch)
        print(f"sent {result.counts['sent']} of {cases * 5}; the sink took {sink.delivered()}")
        print(profiler.output_text(unicode=True, color=False, show_all=False))
        if args.html:
            args.html.write_text(profiler.output_html(), encoding="utf-8")
    finally:
        sink.close()
        shutil.rmtree(root, ignore_errors=True)
        _drop_schemas(args.dsn)


if __name__ == "__main__":
    main()
