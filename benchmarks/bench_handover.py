"""What the crash guarantee costs per message: the durable ``handing_over`` mark.

    .venv/bin/python benchmarks/bench_handover.py [--requests 300] [--repeat 5]

Every request gets one more durable event than before run locks: the ``handing_over`` mark
written just before the gateway sees the message (see ``mash_requests/claims.py``). Its
append runs a precondition: the run still holds its lock, and the request's last event is
still its own ``prepared``. This prints, per backend (SQLite always; PostgreSQL when
``MASH_TEST_POSTGRES_DSN`` is set), medians in the same run of:

- a plain durable append of one event (the baseline: a request already costs two, its
  share of the claim and its outcome);
- a handing-over mark (the added cost per message);
- a whole request through ``Dispatcher.send_case`` to a gateway that accepts at once
  (claim, rate-limit check, mark, outcome), so the mark's share of a request is visible.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from mash_requests.audit.events import Event, EventKind
from mash_requests.claims import REQUEST_FIELDS
from mash_requests.config import load_settings
from mash_requests.dispatch import Dispatcher
from mash_requests.gateways.base import OutgoingMessage, Receipt

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

CONFIG = """
[mash]
sender = "mash@eastbury.gov.uk"
operator = "bench"
data_dir = "data"

[directory]
allowed_domains = ["*.police.uk", "nhs.net", "eastbury.gov.uk", "justice.gov.uk",
                   "eastbury-homes.org.uk"]

[partners.police]
name = "Police"
addresses = ["mash@eastshire.police.uk"]

[partners.health]
name = "Health"
addresses = ["safeguarding@nhs.net"]

[partners.education]
name = "Education"
addresses = ["education@eastbury.gov.uk"]

[partners.probation]
name = "Probation"
addresses = ["mash@justice.gov.uk"]
template = "probation"

[partners.housing]
name = "Housing"
addresses = ["safeguarding@eastbury-homes.org.uk"]
template = "housing"

[rate_limit]
per_minute = 1000000
"""


class AcceptingGateway:
    """Takes every message at once: what is left is our own cost per request."""

    name = "smtp"

    def send(self, message: OutgoingMessage) -> Receipt:
        return Receipt(gateway=self.name, message_id=message.message_id, gateway_id=None)

    def close(self) -> None:
        pass


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def bench(root: Path, log: str, requests: int, repeat: int) -> dict[str, float]:
    config = root / "mash-requests.toml"
    config.write_text(CONFIG + log, encoding="utf-8")
    settings = load_settings(config)
    import mash_requests

    case = mash_requests.load_case(EXAMPLES / "cases" / "MASH-2026-0412.json")
    figures: dict[str, list[float]] = {"append": [], "mark": [], "request": []}
    for _ in range(repeat):
        with Dispatcher(settings, gateway=AcceptingGateway()) as dispatcher:
            claims, store = dispatcher.claims, dispatcher.store
            run = claims.run_details()
            prepared = []
            for _ in range(requests):
                ref = uuid.uuid4().hex
                prepared.append(
                    Event(
                        EventKind.PREPARED,
                        "BENCH",
                        request_ref=ref,
                        request_key=ref,
                        partner="police",
                        gateway="smtp",
                        details=run,
                    )
                )
            store.append_many(prepared)
            started = time.perf_counter()
            for _event in prepared:
                store.append(Event(EventKind.SENT, "BENCH-BASE", partner="police", details=run))
            figures["append"].append((time.perf_counter() - started) / requests)
            started = time.perf_counter()
            for event in prepared:
                fields = {f: getattr(event, f) for f in REQUEST_FIELDS}
                claims.hand_over(
                    Event(kind=EventKind.HANDING_OVER, gateway="smtp", details=run, **fields)
                )
            figures["mark"].append((time.perf_counter() - started) / requests)
            cases = max(1, requests // 5)
            started = time.perf_counter()
            for number in range(cases):
                # A new contact id each time: a new request key, nothing held.
                fresh = mash_requests.Case(
                    **{**case.__dict__, "contact_id": f"CON-{number}-{uuid.uuid4().hex[:6]}"}
                )
                dispatcher.send_case(
                    fresh, ["police", "health", "education", "probation", "housing"]
                )
            figures["request"].append((time.perf_counter() - started) / (cases * 5))
    return {name: median_ms(values) for name, values in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    backends = [("sqlite", "")]
    dsn = os.environ.get("MASH_TEST_POSTGRES_DSN")
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    if dsn:
        import psycopg
        from psycopg import conninfo

        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}".encode())
        os.environ["MASH_BENCH_LOG_DSN"] = conninfo.make_conninfo(
            dsn, options=f"-c search_path={schema}"
        )
        backends.append(
            ("postgres", '[log]\nbackend = "postgres"\ndsn_env = "MASH_BENCH_LOG_DSN"\n')
        )
    try:
        for name, log in backends:
            with tempfile.TemporaryDirectory(prefix="mash-bench-handover-") as tmp:
                root = Path(tmp)
                (root / "cases").mkdir()
                result = bench(root, log, args.requests, args.repeat)
            print(
                f"{name:8}  durable append {result['append']:.3f} ms (baseline)  "
                f"handing_over mark {result['mark']:.3f} ms "
                f"(x{result['mark'] / result['append']:.2f})  "
                f"whole request, accepting gateway {result['request']:.3f} ms "
                f"(mark = {100 * result['mark'] / result['request']:.0f} %)",
                flush=True,
            )
    finally:
        if dsn:
            import psycopg

            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE".encode())


if __name__ == "__main__":
    main()
