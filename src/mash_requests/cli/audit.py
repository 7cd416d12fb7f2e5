"""``mash-requests audit``: verify, checkpoint, query and report on the dispatch log.

Thin: the work is in :mod:`mash_requests.audit`; this module parses options, streams rows
out and picks exit codes. ``verify`` keeps exit code 1 for "the log is broken" alone, so a
log that cannot even be opened exits 2 there.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mash_requests.cli._common import (
    CONTEXT_SETTINGS,
    EXIT_BAD_INPUT,
    EXIT_INCOMPLETE,
    EXIT_OK,
    CliError,
    case_ref_value,
    json_option,
    json_output,
    library_errors,
)
from mash_requests.cli._csv import csv_stdout
from mash_requests.errors import LogError

if TYPE_CHECKING:
    from mash_requests.audit import EventStore

_CONFIG_HELP = (
    "Config file (TOML) whose [log] section says where the log is. Default: "
    "$MASH_REQUESTS_CONFIG, else ./mash-requests.toml, else the built-in defaults."
)
# Copies of audit.query.OUTCOMES and audit.export.FORMATS, so that `--help` imports neither;
# test_cli checks they agree.
_OUTCOMES = ("pending", "sent", "failed", "unconfirmed", "rejected", "not_found", "not_sent")
_FORMATS = ("table", "csv", "jsonl")

config_option = click.option(
    "--config", "config_path", type=click.Path(path_type=Path), help=_CONFIG_HELP
)


@click.group("audit", context_settings=CONTEXT_SETTINGS)
def audit() -> None:
    """Prove the dispatch log is intact, and read it: what was sent, to whom, when, and
    whether the referral form went with it.

    The log holds references, addresses, times, gateway ids and the form's SHA-256; never
    message bodies or the child's details.
    """


@contextmanager
def _read_errors() -> Iterator[None]:
    """Like ``library_errors``, but a log that cannot be read exits 2: 1 means "broken"."""
    with library_errors():
        try:
            yield
        except LogError as exc:
            raise CliError(str(exc), EXIT_BAD_INPUT) from exc


@contextmanager
def _opened_store(config_path: Path | None) -> Iterator[EventStore]:
    """Load the config's [log] and open the existing log, closing it afterwards.

    Only ``[mash] data_dir`` and ``[log]`` are read: an auditor's config need not name the
    gateway or hold its secrets. A log that is not there is an error, never created, and an
    older schema is not migrated; the only thing audit commands write is the verified head
    that verify and report reached (where the log lets them).
    """
    from mash_requests.audit import open_store
    from mash_requests.config import load_log_settings

    with _read_errors():
        store = open_store(load_log_settings(config_path), must_exist=True)
    try:
        yield store
    finally:
        store.close()


# -- verify and checkpoint -------------------------------------------------------------------


@audit.command(
    "verify",
    context_settings=CONTEXT_SETTINGS,
    epilog="""\b
Examples:
  mash-requests audit verify
  mash-requests audit verify --checkpoint /secure/mash-log-checkpoint.json

\b
Checks every row of every table of the log (rows outside the chain are named) and runs the
database's own consistency check (SQLite PRAGMA integrity_check; PostgreSQL amcheck where
the extension can be created, else it says it was not run).

\b
Exit codes: 0 intact (and still extends the checkpoint); 1 broken: the first broken event
and what happened to it (changed, removed, inserted, reordered, hash mismatch, outside the
chain, log tables, database) are printed; 2 bad usage, unreadable config, log or
checkpoint.""",
)
@click.option(
    "--checkpoint",
    "checkpoint_path",
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="A checkpoint written earlier by 'audit checkpoint'; proves no newest events were "
    "removed or rewritten since.",
)
@json_option
@config_option
def verify(checkpoint_path: Path | None, as_json: bool, config_path: Path | None) -> None:
    """Walk the hash chain from the first event to the last and report the first break."""
    from mash_requests.audit.verify import VerifyResult, read_checkpoint, verify_chain

    with json_output("audit verify", as_json) as run:
        # The same keys whether the log could be verified or not (then they are null).
        blank = VerifyResult(ok=False, count=0, head_seq=0, head_hash="").to_json()
        run.update(**dict.fromkeys(blank))
        checkpoint = None
        if checkpoint_path is not None:
            with library_errors():
                checkpoint = read_checkpoint(checkpoint_path)
        with _opened_store(config_path) as store, _read_errors():
            # Every row, every time; an intact result is stored as a verified head that later
            # reports start from.
            result = verify_chain(store, checkpoint=checkpoint, record=True)
            location = getattr(store, "location", "")
        run.update(**result.to_json(str(location)))
        if not as_json:
            click.echo(f"dispatch log {location}")
            for line in result.lines():
                click.echo(line)
            if not result.ok:
                click.echo(
                    f"{result.count} event(s) verified; last intact seq {result.head_seq}, "
                    f"hash {result.head_hash}"
                )
        click.get_current_context().exit(EXIT_OK if result.ok else EXIT_INCOMPLETE)


@audit.command(
    "checkpoint",
    context_settings=CONTEXT_SETTINGS,
    epilog="""\b
Examples:
  mash-requests audit checkpoint --out /secure/mash-log-checkpoint.json

\b
Keep the file away from the log (another server, the case system, a signed email): with it,
'audit verify --checkpoint FILE' proves the newest events were not removed or rewritten.
Exit codes: 0 written; 1 the log is broken (nothing written); 2 bad usage or I/O error.""",
)
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="Where to write the checkpoint (JSON; replaced if it exists).",
)
@config_option
def checkpoint(out_path: Path, config_path: Path | None) -> None:
    """Verify the log and write its head (count, seq, hash, time) to a file."""
    from mash_requests.audit.verify import Checkpoint, verify_chain, write_checkpoint

    with _opened_store(config_path) as store, _read_errors():
        result = verify_chain(store)
    if not result.ok:
        raise CliError(f"not written: the log is broken: {result.summary()}", EXIT_INCOMPLETE)
    made = Checkpoint(
        count=result.count, seq=result.head_seq, hash=result.head_hash, time=datetime.now(UTC)
    )
    with _read_errors():
        write_checkpoint(made, out_path)
    click.echo(f"checkpoint written to {out_path}: {made.count} events, head seq {made.seq}")
    click.echo(f"hash {made.hash}")


# -- query -----------------------------------------------------------------------------------


def _parse_when(value: str, option: str, *, end: bool) -> datetime:
    """A DATE (a whole UTC day; ``end`` means up to its end) or an ISO-8601 date-time."""
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            moment = datetime.combine(day, time(0), tzinfo=UTC)
            return moment + timedelta(days=1) if end else moment
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"expected YYYY-MM-DD or an ISO-8601 date-time, got {value!r}", param_hint=option
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


#: --form-sha256: a whole SHA-256, or its first 12 or more hex digits (chase prints 12).
_FORM_SHA256 = re.compile(r"[0-9a-f]{12,64}")
#: --partner: a directory key (a copy of partners._KEY, kept out of --help's imports;
#: test_query_filters checks they agree).
_PARTNER_KEY = re.compile(r"[a-z][a-z0-9_-]{0,31}")
#: --request-ref: ``<case ref>-<PARTNER KEY>-<5 hex>``, as dispatch.new_request_ref makes it.
_REQUEST_REF = re.compile(r"(?P<case_ref>.+)-[A-Z][A-Z0-9_-]{0,31}-[0-9A-F]{5}")
# A copy of gateways.GATEWAY_MODULES' keys; test_query_filters checks they agree.
_GATEWAYS = ("outbox", "smtp", "ews", "graph")


def _form_sha256(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """A full SHA-256 or a prefix of at least 12 hex digits, lowercased; else a usage error.

    Anything else matches nothing, and "(0 requests)" would read as "that form was never
    sent".
    """
    if value is None:
        return None
    digits = value.strip().lower()
    if not _FORM_SHA256.fullmatch(digits):
        raise click.BadParameter(
            "expected the referral form's SHA-256: its 64 hex digits, or the first 12 or more "
            "of them (as chase and form check print it)"
        )
    return digits


def _partner_key(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not _PARTNER_KEY.fullmatch(value):
        raise click.BadParameter(
            "expected a partner key as the directory names it: lowercase letters, digits, "
            "- and _ (e.g. police)"
        )
    return value


def _request_ref(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    from mash_requests.case import REFERENCE_PATTERN

    found = _REQUEST_REF.fullmatch(value) if value is not None else None
    if value is not None and not (found and REFERENCE_PATTERN.fullmatch(found["case_ref"])):
        raise click.BadParameter(
            "expected a request reference: <case ref>-<PARTNER>-<5 hex digits>, as in the "
            "request's subject (e.g. MASH-2026-0412-POLICE-1BAC7)"
        )
    return value


def _time_window(from_: str | None, to: str | None) -> tuple[datetime | None, datetime | None]:
    since = _parse_when(from_, "--from", end=False) if from_ else None
    until = _parse_when(to, "--to", end=True) if to else None
    if since and until and until <= since:
        raise click.BadParameter("must be after --from", param_hint="--to")
    return since, until


@audit.command(
    "query",
    context_settings=CONTEXT_SETTINGS,
    epilog="""\b
Examples:
  mash-requests audit query --case-ref MASH-2026-0412
  mash-requests audit query --partner police --from 2026-06-01 --to 2026-06-30 --format csv
  mash-requests audit query --outcome unconfirmed
  mash-requests audit query --form-sha256 084927668d04 --events --format jsonl
  mash-requests audit query --from 2026-06-01 --format csv --bom > june.csv

\b
By default one row per request: its current state (latest outcome), when it was prepared and
sent, attempts, gateway, Message-ID and the SHA-256 of the referral form that was attached.
Refusals before any request was built are not requests: they are listed after the requests
(the table in a section of their own; CSV and JSONL with record_type "refusal"). --events
lists the raw events instead. Dates are UTC; --to DATE includes that whole day. Output
streams: pipe it anywhere. CSV is UTF-8 with CRLF line ends (--bom for Excel); cells that a
spreadsheet would run as a formula get a leading '.
Exit codes: 0 done; 2 bad usage, config or unreadable log.""",
)
@click.option("--case-ref", metavar="REF", callback=case_ref_value, help="Only this case.")
@click.option(
    "--partner",
    metavar="KEY",
    callback=_partner_key,
    help="Only this partner agency (directory key).",
)
@click.option(
    "--outcome",
    type=click.Choice(_OUTCOMES),
    multiple=True,
    help="Only requests with this latest outcome (repeatable). Not with --events.",
)
@click.option("--from", "from_", metavar="DATE", help="Events recorded on or after DATE.")
@click.option("--to", metavar="DATE", help="Events recorded up to the end of DATE.")
@click.option("--request-ref", metavar="REF", callback=_request_ref, help="Only this request.")
@click.option("--gateway", type=click.Choice(_GATEWAYS), help="Only this gateway.")
@click.option(
    "--form-sha256",
    metavar="HEX",
    callback=_form_sha256,
    help="Only requests that carried this form: its SHA-256, or the first 12 or more hex "
    "digits of it.",
)
@click.option("--events", "raw_events", is_flag=True, help="List raw events, not requests.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(_FORMATS),
    default="table",
    show_default=True,
    help="table for people, csv for spreadsheets, jsonl for scripts.",
)
@click.option(
    "--bom",
    is_flag=True,
    help="With --format csv: start with a UTF-8 byte-order mark, so that Excel reads accented "
    "letters and symbols correctly when the file is opened by double-clicking.",
)
@config_option
def query(
    case_ref: str | None,
    partner: str | None,
    outcome: tuple[str, ...],
    from_: str | None,
    to: str | None,
    request_ref: str | None,
    gateway: str | None,
    form_sha256: str | None,
    raw_events: bool,
    output_format: str,
    bom: bool,
    config_path: Path | None,
) -> None:
    """List requests (or events) from the dispatch log, filtered."""
    from mash_requests.audit import EventFilter
    from mash_requests.audit.export import write_events, write_requests
    from mash_requests.audit.query import outside_chain_warning, request_states

    if raw_events and outcome:
        raise click.UsageError("--outcome selects requests; it cannot be used with --events")
    if bom and output_format != "csv":
        raise click.UsageError("--bom is for CSV output; add --format csv")
    since, until = _time_window(from_, to)
    where = EventFilter(
        case_ref=case_ref,
        request_ref=request_ref,
        partner=partner,
        gateway=gateway,
        form_sha256=form_sha256,
        since=since,
        until=until,
    )
    with _opened_store(config_path) as store:
        try:
            with _read_errors(), csv_stdout(enabled=output_format == "csv") as out:
                if raw_events:
                    write_events(store.events(where), out, output_format=output_format, bom=bom)
                else:
                    states = request_states(store, where, outcomes=outcome)
                    write_requests(states, out, output_format=output_format, bom=bom)
                warning = outside_chain_warning(store)
                if warning:
                    click.echo(f"Warning: {warning}", err=True)
        except BrokenPipeError:
            # `… | head`: the reader has all it wants. Point stdout at /dev/null so the
            # interpreter's final flush does not fail again.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())


# -- report ----------------------------------------------------------------------------------


@audit.command(
    "report",
    context_settings=CONTEXT_SETTINGS,
    epilog="""\b
Examples:
  mash-requests audit report --from 2026-04-01 --to 2027-03-31 --out rfi-2026-27.html
  mash-requests audit report --out everything.html

\b
One self-contained HTML file (no external files, prints cleanly to PDF), marked top and
bottom with [mash] marking: totals, then per partner agency (by name) and per month the
requests sent, the share sent with a verified referral form attached, refusals with their
reasons in words, requests not sent again (already sent or being sent by another run),
failures, retries and the median time from prepared to sent; a chart; the timeliness of
partners' answers (answered, in time, median and 90th percentile time to answer, overdue
now, bounced, chasers) with a chart; and the chain verification result with the head hash.
Rendered from report.html.j2 ([mash] templates overrides it). Dates are UTC.
Exit codes: 0 written and the log intact; 1 written but the log is broken (the report says
so); 2 bad usage, config or unreadable log.""",
)
@click.option("--from", "from_", metavar="DATE", help="First day to include (default: all).")
@click.option("--to", metavar="DATE", help="Last day to include (default: all).")
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="Where to write the HTML report (replaced if it exists).",
)
@click.option("--title", default=None, help="Report title (default: from [mash] name).")
@config_option
def report(
    from_: str | None, to: str | None, out_path: Path, title: str | None, config_path: Path | None
) -> None:
    """Write an HTML evidence report of the requests sent in a period."""
    from mash_requests.audit import open_store
    from mash_requests.audit.report import build_report, write_report
    from mash_requests.config import load_report_settings

    since, until = _time_window(from_, to)
    with _read_errors():
        settings = load_report_settings(config_path)
        store = open_store(settings.log, must_exist=True)
    try:
        with _read_errors():
            data = build_report(
                store,
                since=since,
                until=until,
                title=title or f"{settings.mash_name}: requests for information",
                marking=settings.marking,
                mash_name=settings.mash_name,
                partner_names=settings.partner_names,
                timescales=settings.timescales,
            )
            write_report(data, out_path, templates_dir=settings.templates_dir)
    finally:
        store.close()
    click.echo(f"report written to {out_path}")
    click.echo(
        f"{data.totals.sent} request(s) sent, {data.totals.attachment_rate_text} with the "
        "referral form attached"
    )
    summary, *more = data.verification.lines()
    click.echo(f"log: {summary}")
    for line in more:  # what was verified now and earlier, and when
        click.echo(f"     {line}")
    click.get_current_context().exit(EXIT_OK if data.verification.ok else EXIT_INCOMPLETE)
