"""``mash-requests overdue``: requests sent and not answered, past due or due soon.

Thin: :func:`mash_requests.replies.overdue` does the work; this module parses options,
writes the list and picks the exit code.
"""

from __future__ import annotations

from pathlib import Path

import click

from mash_requests.cli._common import (
    CONTEXT_SETTINGS,
    EXIT_INCOMPLETE,
    EXIT_OK,
    WITHIN_HOURS,
    json_option,
    json_output,
    library_errors,
)
from mash_requests.cli._csv import csv_stdout

# Copies of mash_requests.replies.overdue.FORMATS and STATES, so that --help imports nothing
# more.
_FORMATS = ("table", "csv", "jsonl")
_STATES = ("bounced", "overdue", "due_soon")


@click.command(
    "overdue",
    context_settings=CONTEXT_SETTINGS,
    epilog="""\b
Examples:
  mash-requests overdue
  mash-requests overdue --within 4
  mash-requests overdue --format csv --bom > overdue.csv
  mash-requests overdue --format jsonl | jq -r 'select(.state == "bounced") | .request_ref'
  mash-requests overdue --within 4 --json

\b
Lists requests recorded sent whose partner has not answered (no matched email reply, no
answer recorded with 'replies record'): 'overdue' once the due time set by the RAG rating
has passed, 'due_soon' within --within HOURS, and 'bounced' whatever the due time (the
partner never got it). Most urgent first: bounced, overdue, due soon; earliest due first.
LATE is in working hours where [timescales] working_hours names the rating, else in hours.
CHASERS counts reminders sent. Run 'mash-requests replies fetch' first so that answers that
arrived by email are counted. jsonl: one object per request with request_ref, case_ref,
partner, partner_name, rag, due (ISO 8601), state, hours_late, hours_basis, chasers,
bounced, bounce_status, sent_at, message_id. CSV has the same fields, UTF-8 with CRLF line
ends as Excel writes them (--bom for Excel); cells that a spreadsheet would run as a formula
get a leading '. --json: one document whose "requests" are
those objects, with "counts" by state (see the README's JSON output).

\b
Exit codes: 0 nothing overdue or bounced (due soon is fine); 1 something is overdue or
bounced; 2 bad option, configuration, or no dispatch log where [log] says.""",
)
@click.option(
    "--within",
    "within_hours",
    type=WITHIN_HOURS,
    metavar="HOURS",
    help="Also list requests due within HOURS from now, 0 to 100000 (state due_soon).",
)
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
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    help="Config file (TOML). Default: $MASH_REQUESTS_CONFIG, else ./mash-requests.toml.",
)
@json_option
def overdue(
    within_hours: float | None,
    output_format: str,
    bom: bool,
    config_path: Path | None,
    as_json: bool = False,
) -> None:
    """List requests sent and not answered that are past due, bounced, or due soon."""
    from mash_requests.audit import open_store
    from mash_requests.config import load_settings
    from mash_requests.replies import overdue as list_overdue
    from mash_requests.replies import write_overdue

    with json_output("overdue", as_json) as run:
        run.update(
            within_hours=within_hours,
            counts={state: 0 for state in _STATES},
            requests=[],
        )
        if as_json and output_format != "table":
            raise click.UsageError("give --json or --format, not both")
        if bom and output_format != "csv":
            raise click.UsageError("--bom is for CSV output; add --format csv")
        with library_errors():
            # A listing: it sends nothing and opens no form, so it reads neither secret.
            settings = load_settings(config_path, gateway_secrets=False, form_secrets=False)
            # An existing log only: a mistyped [log] path is an error, not "nothing overdue"
            # (and no empty log is left there). As a reader: nothing is created or migrated.
            store = open_store(settings.log, must_exist=True)
            try:
                items = list_overdue(settings, within_hours=within_hours, store=store)
            finally:
                store.close()
        run.update(
            counts={state: sum(1 for i in items if i.state == state) for state in _STATES},
            requests=[item.to_json() for item in items],
        )
        if not run.enabled:
            with csv_stdout(enabled=output_format == "csv") as out:
                write_overdue(items, out, output_format=output_format, bom=bom)
        late = any(item.state in ("overdue", "bounced") for item in items)
        click.get_current_context().exit(EXIT_INCOMPLETE if late else EXIT_OK)
