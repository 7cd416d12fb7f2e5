"""How many statements a ``send-batch`` sends to PostgreSQL per case (each is a round trip).

    .venv/bin/python benchmarks/count_round_trips.py --dsn postgresql://postgres@127.0.0.1:5432/test

The batch, the SMTP sink and the config are those of ``bench_product.py throughput`` (five
partners a case). psycopg's ``execute``, ``executemany``, server-cursor ``fetchmany``,
``commit`` and ``rollback`` are wrapped to count calls, on every connection the batch opens
(the log's writer and readers, and the run lock's). Not a timing: a count, steady on a busy
machine. To compare with older code, run it with ``PYTHONPATH=<that checkout>/src``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_product import _drop_schemas, _fresh_log, _Sink, make_batch, smtp_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--dsn", default=os.environ.get("MASH_BENCH_POSTGRES_DSN"))
    args = parser.parse_args()
    if not args.dsn:
        parser.error("give --dsn (or $MASH_BENCH_POSTGRES_DSN)")
    import psycopg

    from mash_requests.batch import send_batch
    from mash_requests.config import load_settings

    calls = 0

    def counted(cls: type, name: str) -> None:
        original: Callable[..., Any] = getattr(cls, name)

        def wrapper(self: object, *args: object, **kwargs: object) -> Any:
            nonlocal calls
            calls += 1
            return original(self, *args, **kwargs)

        setattr(cls, name, wrapper)

    for cls, name in ((psycopg.Cursor, "execute"), (psycopg.Cursor, "executemany"),
                      (psycopg.ServerCursor, "fetchmany"), (psycopg.Connection, "commit"),
                      (psycopg.Connection, "rollback")):  # fmt: skip
        counted(cls, name)

    os.environ.setdefault("MASH_OPERATOR", "bench")
    sink = _Sink()
    root = Path(tempfile.mkdtemp(prefix="mash-round-trips-"))
    try:
        batch = make_batch(root, args.cases, distinct_forms=True)
        config = root / "mash-requests.toml"
        log = '[log]\nbackend = "postgres"\ndsn_env = "MASH_BENCH_LOG_DSN"\n'
        config.write_text(smtp_config(root, sink.port, log), encoding="utf-8")
        _fresh_log(root, "postgres", args.dsn)
        settings = load_settings(config)
        calls = 0
        result = send_batch(settings, batch)
        print(f"sent {result.counts['sent']} requests of {args.cases} cases; "
              f"{calls / args.cases:.1f} statements per case, "
              f"{calls / max(1, result.counts['sent']):.1f} per request")  # fmt: skip
    finally:
        sink.close()
        shutil.rmtree(root, ignore_errors=True)
        _drop_schemas(args.dsn)


if __name__ == "__main__":
    main()
