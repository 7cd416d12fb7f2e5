"""``mash-requests chase``: reminders for overdue requests, threaded on the request.

Thin: :func:`mash_requests.replies.chase` does the work; this module parses options,
prints what happened to each request and picks the exit code.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import click

from mash_requests.cli._common import (
    CONTEXT_SETTINGS,
    EXIT_INCOMPLETE,
    EXIT_OK,
    WITHIN_HOURS,
    JsonRun,
    json_option,
    json_output,
    library_errors,
    require_log,
)

#: The outcomes a reminder can have, in the order the summary names them (a copy of
#: mash_requests.replies.ChaseOutcome, so that --help imports nothing more).
_OUTCOMES = ("sent", "failed", "unconfirmed", "refused", "dry_run", "skipped", "in_flight")


@click.command(
    "chase",
    context_settings=CONTEXT_SETTINGS,
    epilog="""\b
Examples:
  mash-requests chase --dry-run
  mash-requests chase
  mash-requests chase --within 4 --dry-run
  mash-requests chase --request MASH-2026-0412-HOUSING-07551 --dry-run
  mash-requests chase --request MASH-2026-0412-HOUSING-07551 --form forms/MASH-2026-0412.pdf

\b
Sends one reminder for each overdue request (see 'mash-requests overdue'; with --within
HOURS also those due that soon), or for each request named with --request (sent, not
answered, not bounced; it may be chased before it is due). A reminder is threaded on the
request (In-Reply-To/References), has the marking first in its subject, the request
reference and due time in its body, and the SAME referral form attached: found again in
[chase] forms as <case ref>.pdf (or --form), checked again, and refused (form_changed)
unless its SHA-256 equals the request's. At most [chase] max_chasers per request, at least
[chase] interval_hours apart; the last one also goes to [partners.KEY] escalation when set.
Same gateway, retries and rate limit as requests; every step is a 'chased' event in the
dispatch log. Run 'mash-requests replies fetch' first so that answered requests are not chased.

\b
--json: one document with dry_run, counts (sent, failed, unconfirmed, refused, dry_run,
skipped, in_flight) and reminders (one per request considered: request_ref, case_ref,
partner, outcome, chaser, recipients, escalated, reason, detail, due, message_id,
gateway_id, attempts).

\b
Exit codes: 0 every reminder due was sent (or, --dry-run, built); 1 some failed, are
unconfirmed, had their form refused, or another run is sending them; 2 bad option, request
reference, template or configuration, or no dispatch log where [log] says: nothing was
sent.""",
)
@click.option(
    "--request",
    "request_refs",
    multiple=True,
    metavar="REF",
    help="Chase this request (its reference). Repeat for several. Default: every overdue one.",
)
@click.option(
    "--within",
    "within_hours",
    type=WITHIN_HOURS,
    metavar="HOURS",
    help="Also chase requests due within HOURS from now, 0 to 100000 (as 'overdue --within').",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Find the form, check it and build every reminder, but send and record nothing "
    "(the gateway's secret is not needed).",
)
@click.option(
    "--form",
    "form_path",
    type=click.Path(path_type=Path),
    help="The case's referral form, instead of [chase] forms/<case ref>.pdf (one case only).",
)
@click.option(
    "--form-password",
    envvar="MASH_FORM_PASSWORD",
    show_envvar=True,
    help="Password of an encrypted referral form (prefer the environment variable).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    help="Config file (TOML). Default: $MASH_REQUESTS_CONFIG, else ./mash-requests.toml.",
)
@json_option
def chase(
    request_refs: tuple[str, ...],
    within_hours: float | None,
    dry_run: bool,
    form_path: Path | None,
    form_password: str | None,
    config_path: Path | None,
    as_json: bool = False,
) -> None:
    """Send reminders for overdue requests, with the same referral form attached."""
    with json_output("chase", as_json) as run:
        run.update(dry_run=dry_run, counts=dict.fromkeys(_OUTCOMES, 0), reminders=[])
        if request_refs and within_hours is not None:
            raise click.UsageError("give --request REF or --within HOURS, not both")
        _chase(run, request_refs, within_hours, dry_run, form_path, form_password, config_path)


def _chase(
    run: JsonRun,
    request_refs: tuple[str, ...],
    within_hours: float | None,
    dry_run: bool,
    form_path: Path | None,
    form_password: str | None,
    config_path: Path | None,
) -> None:
    from mash_requests.config import load_settings
    from mash_requests.replies import chase as run_chase

    with library_errors():
        # A dry run sends nothing: the gateway's table is checked, its secret is not read
        # (as for overdue). A real chase reads it here, and refuses before anything is done.
        settings = load_settings(config_path, gateway_secrets=not dry_run)
        # Only requests already in the log are chased: a mistyped [log] path is an error, not
        # "nothing to chase" (and no empty log is created there).
        require_log(settings.log)
        result = run_chase(
            settings,
            list(request_refs) or None,
            within_hours=within_hours,
            dry_run=dry_run,
            form_path=form_path,
            form_password=form_password,
        )
    counts = {name: sum(1 for i in result.outcomes if i.outcome == name) for name in _OUTCOMES}
    run.update(counts=counts, reminders=[item.to_json() for item in result.outcomes])
    if run.enabled:
        sys.exit(EXIT_OK if result.all_done else EXIT_INCOMPLETE)
    if not result.outcomes:
        click.echo(
            "Nothing to chase: no request is overdue"
            + (f" or due within {within_hours:g} hours." if within_hours is not None else ".")
        )
        sys.exit(EXIT_OK)
    _print(result.outcomes, settings.chase.max_chasers)
    if dry_run:
        click.echo(
            f"Dry run: {counts['dry_run']} reminder(s) checked and built; nothing was sent"
            + _others(counts, ("refused", "skipped", "in_flight"))
            + "."
        )
    else:
        click.echo(
            f"{counts['sent']} reminder(s) sent"
            + _others(counts, ("failed", "unconfirmed", "refused", "skipped", "in_flight"))
            + "."
        )
    if counts["unconfirmed"]:
        click.echo(
            "Unconfirmed reminders may have been delivered: check the partner's mailbox before "
            "chasing again (the next chase does not send them again).",
            err=True,
        )
    if any(item.reason == "encrypted" for item in result.outcomes):
        from mash_requests.cli.send import ENCRYPTED_FORM_ADVICE

        click.echo(ENCRYPTED_FORM_ADVICE.format(option="--form-password"), err=True)
    sys.exit(EXIT_OK if result.all_done else EXIT_INCOMPLETE)


def _others(counts: dict[str, int], names: tuple[str, ...]) -> str:
    parts = [f"{counts[name]} {name.replace('_', ' ')}" for name in names if counts[name]]
    return "; " + ", ".join(parts) if parts else ""


def _print(outcomes: Sequence[object], max_chasers: int) -> None:
    from mash_requests.replies.chase import ChaseItem

    rows = [("PARTNER", "REQUEST REF", "REMINDER", "TO", "OUTCOME")]
    for item in outcomes:
        assert isinstance(item, ChaseItem)
        label = str(item.outcome).replace("_", " ")
        if item.reason:
            label += f" ({item.reason})"
        if item.detail and item.outcome != "dry_run":
            label += f": {item.detail}"
        number = f"{item.chaser} of {max_chasers}" if item.chaser else "-"
        if item.escalated:
            number += " (escalated)"
        rows.append(
            (item.partner, item.request_ref, number, ", ".join(item.recipients) or "-", label)
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        cells = "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4]))
        click.echo(f"{cells}  {row[4]}")
