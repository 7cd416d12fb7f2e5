"""``send-batch``: the day's contacts from a JSON Lines or CSV file."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from mash_requests.cli._common import (
    EXIT_BAD_INPUT,
    EXIT_INCOMPLETE,
    CliError,
    JsonRun,
    json_option,
    json_output,
    library_errors,
)
from mash_requests.cli.send import CONFIG_HELP


class _Progress:
    """A bar with rate and ETA on a terminal; a plain line every few seconds otherwise."""

    def __init__(self, stream_is_tty: bool) -> None:
        self.tty = stream_is_tty
        self.last_line = 0.0

    def __call__(self, state: object) -> None:
        from mash_requests.batch import BatchProgress

        assert isinstance(state, BatchProgress)
        total = max(state.total_requests, 1)
        eta = state.eta_seconds
        eta_text = f"{int(eta // 60)}m{int(eta % 60):02d}s" if eta is not None else "?"
        counts = ", ".join(f"{n} {k}" for k, n in sorted(state.counts.items()))
        text = (
            f"{state.done}/{state.total_requests} requests ({counts or 'none yet'}) "
            f"{state.rate:.1f}/s ETA {eta_text}"
        )
        if self.tty:
            width = 24
            filled = int(width * state.done / total)
            click.echo(
                f"\r[{'#' * filled}{'.' * (width - filled)}] {text}\033[K", nl=False, err=True
            )
        elif time.monotonic() - self.last_line >= 5 or state.done >= state.total_requests:
            self.last_line = time.monotonic()
            click.echo(f"progress: {text}", err=True)

    def finish(self) -> None:
        if self.tty:
            click.echo("", err=True)


@click.command(
    "send-batch",
    epilog="""\b
Examples:
  mash-requests send-batch today.jsonl
  mash-requests send-batch export.csv --skip-invalid
  mash-requests send-batch export.csv --encoding cp1252
  mash-requests send-batch today.jsonl --dry-run
  mash-requests send-batch today.jsonl --json > today-result.json
  mash-requests send-batch backlog.jsonl --workers 4

\b
Run it again after a crash, kill or Ctrl-C: it sends only what was not sent (the dispatch
log decides), never a duplicate. A request a killed run had handed to the gateway is looked
up in Sent Items (outbox, EWS, Graph) or, over SMTP, counted unconfirmed for a person to
check. Ctrl-C finishes the case in hand, then stops; a second Ctrl-C stops at once. Either
way the summary says what the log holds. Two runs of one batch share the work.

\b
Summary: sent (by this run), already sent (earlier or by another run), in flight in another
run, unconfirmed, failed, refused, not started (the batch was stopped first): each request
in exactly one.

\b
Exit codes: 0 every request recorded sent (by this run or another); 1 some not sent,
unconfirmed, refused, still in flight elsewhere, or the batch was interrupted; 2 bad rows
(nothing sent unless --skip-invalid), an unreadable file, or bad config.""",
)
@click.argument("batch_file", type=click.Path(path_type=Path))
@click.option("--config", "config_path", type=click.Path(path_type=Path), help=CONFIG_HELP)
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Send the valid rows even if some rows are bad (bad rows are listed and logged).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Validate and render every request; send nothing and log nothing.",
)
@click.option(
    "--encoding",
    default="utf-8",
    show_default=True,
    metavar="NAME",
    help="Text encoding of the file. UTF-8 is read with or without a byte-order mark; "
    "Excel's 'CSV (Comma delimited)' on Windows is cp1252.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    metavar="N",
    help="Send with N processes, each with its own gateway connection, sharing the log, "
    "the duplicate guard and the rate limit. See the README's 'Sending with workers'.",
)
@json_option
def send_batch(
    batch_file: Path,
    config_path: Path | None,
    skip_invalid: bool,
    dry_run: bool,
    encoding: str,
    workers: int = 1,
    as_json: bool = False,
) -> None:
    """Send the requests for every case in a batch file (JSON Lines or CSV).

    The whole file is validated first and every bad row is reported (row number, field,
    problem) before anything is sent. Each case then goes through exactly the same checks
    as send-request: its own referral form, partners from the directory, no duplicates.
    """
    with json_output("send-batch", as_json) as run:
        run.update(
            dry_run=dry_run,
            interrupted=False,
            counts={},
            bad_rows=[],
            refusals={},
            refused=[],
            unconfirmed=[],
            unsent=[],
        )
        _send_batch(run, batch_file, config_path, skip_invalid, dry_run, encoding, workers)


def _send_batch(
    run: JsonRun,
    batch_file: Path,
    config_path: Path | None,
    skip_invalid: bool,
    dry_run: bool,
    encoding: str,
    workers: int,
) -> None:
    from mash_requests.batch import (
        SUMMARY_ORDER,
        BatchEncodingError,
        BatchInvalidError,
        BatchLogError,
    )
    from mash_requests.batch import send_batch as api_send_batch
    from mash_requests.config import load_settings

    run.update(counts={str(outcome): 0 for outcome in SUMMARY_ORDER})

    progress = _Progress(sys.stderr.isatty())
    try:
        with library_errors(), _interrupt_is_an_error():
            settings = load_settings(config_path)
            try:
                result = api_send_batch(
                    settings,
                    batch_file,
                    skip_invalid=skip_invalid,
                    dry_run=dry_run,
                    progress=progress,
                    encoding=encoding,
                    workers=workers,
                )
            except BatchInvalidError as exc:
                run.update(bad_rows=_rows(exc.result.problems))
                if not run.enabled:
                    for problem in exc.result.problems:
                        click.echo(f"row {problem.row}: {problem.message}", err=True)
                raise CliError(
                    f"{exc}. Fix them, or pass --skip-invalid to send the valid rows",
                    EXIT_BAD_INPUT,
                ) from exc
            except BatchEncodingError as exc:
                hint = (
                    f"Run it again with --encoding {exc.suggestion}"
                    if exc.suggestion
                    else "Pass --encoding NAME (the encoding it was saved in)"
                )
                raise CliError(f"{exc}\n{hint}.", EXIT_BAD_INPUT) from exc
            except BatchLogError as exc:
                progress.finish()
                run.update(**_result_fields(exc.result, dry_run=dry_run))
                if not run.enabled:
                    _summary(exc.result, dry_run=dry_run)
                raise CliError(str(exc), EXIT_INCOMPLETE) from exc
    finally:
        progress.finish()
    run.update(**_result_fields(result, dry_run=dry_run))
    if not run.enabled:
        _summary(result, dry_run=dry_run)
        if dry_run:
            click.echo("Dry run: nothing was sent.")
    if result.interrupted:
        how = "stopped at once by a second Ctrl-C" if result.aborted else "interrupted"
        raise CliError(
            f"the batch was {how} before every request was sent. Run the same command "
            "again: it sends only what was not sent",
            EXIT_INCOMPLETE,
            reason="interrupted",
            error_type=INTERRUPTED,
        )
    if result.problems or (not dry_run and not result.all_sent):
        sys.exit(EXIT_INCOMPLETE)


#: ``error.type`` in --json of a batch stopped by Ctrl-C (``reason`` "interrupted").
INTERRUPTED = "Interrupted"


@contextmanager
def _interrupt_is_an_error() -> Iterator[None]:
    """A Ctrl-C the batch does not handle itself (while the file is read and checked, before
    sending starts) ends as an interrupted batch, with ``--json``'s document."""
    try:
        yield
    except KeyboardInterrupt:
        raise CliError(
            "the batch was interrupted before it could say what was sent. Run the same "
            "command again: it sends only what was not sent",
            EXIT_INCOMPLETE,
            reason="interrupted",
            error_type=INTERRUPTED,
        ) from None


def _rows(problems: list[Any]) -> list[dict[str, Any]]:
    return [{"row": p.row, "case_ref": p.case_ref, "message": p.message} for p in problems]


def _result_fields(result: object, *, dry_run: bool) -> dict[str, Any]:
    """The batch's figures for --json: every count (zeros included) and every listed row."""
    from mash_requests.batch import SUMMARY_ORDER, BatchResult

    assert isinstance(result, BatchResult)
    return {
        "dry_run": dry_run,
        "interrupted": result.interrupted,
        "counts": {str(outcome): result.counts[outcome] for outcome in SUMMARY_ORDER},
        "bad_rows": _rows(result.problems),
        "refusals": dict(sorted(result.refusals.items())),
        "refused": [
            {"row": row, "case_ref": case_ref, "reason": reason}
            for row, case_ref, reason in result.refused
        ],
        "unconfirmed": [
            {"row": row, "case_ref": case_ref, "partner": partner, "request_ref": ref}
            for row, case_ref, partner, ref in result.unconfirmed
        ],
        "unsent": [
            {
                "row": item.row,
                "case_ref": item.case_ref,
                "partner": item.partner,
                "outcome": item.outcome,
                "reason": item.reason,
                "request_ref": item.request_ref,
            }
            for item in sorted(result.unsent)
        ],
    }


#: How each outcome is named in the summary.
_LABELS = {
    "sent": "sent",
    "already_sent": "already sent",
    "in_flight": "in flight in another run",
    "unconfirmed": "unconfirmed",
    "failed": "failed",
    "rejected": "refused",
    "not_started": "not started",
    "dry_run": "dry run",
}


#: At most this many requests are listed one a line; --json lists every one.
_LISTED = 50

#: What a person does about each outcome that is not "sent", said once under the list.
_WHAT_TO_DO = {
    "rejected": "Refused: nothing was sent. Fix the case in the batch file as its reason "
    "says (a form: check it with 'mash-requests form check PDF --case-ref REF'), then run "
    "the same command again.",
    "failed": "Failed: nothing was delivered. Each reason says why and what to do (a refusal: "
    "the gateway's settings or the partner's address; a deferral or a busy server: only "
    "time), then run the same command again: it sends only what was not sent.",
    "in_flight": "In flight: another run is still sending them; run the same command later to "
    "see how they ended.",
}


def _unsent_line(item: object) -> str:
    """One request not sent, in one line: where, which partner, what happened and why.

    Only the row, the case reference, the partner's key and the reason: never the case's
    details. A refusal's reason is its code, with the code's words.
    """
    from mash_requests.batch import UnsentRequest

    assert isinstance(item, UnsentRequest)
    label = _LABELS.get(item.outcome, item.outcome)
    reason = " ".join(item.reason.split()) or "no reason recorded"
    if item.outcome == "rejected":
        from mash_requests.audit.report import REASON_TEXT

        words = REASON_TEXT.get(item.reason)
        reason = f"{reason} ({words})" if words else reason
    if item.outcome == "unconfirmed" and item.request_ref:
        label += f" (request {item.request_ref})"
    return f"  row {item.row}, case {item.case_ref}, {item.partner}: {label}: {reason}"


def _summary(result: object, *, dry_run: bool) -> None:
    """The counts, each request in exactly one; then every request not sent, one a line
    with its reason, and what to do about each kind."""
    from mash_requests.batch import NOT_STARTED, SUMMARY_ORDER, BatchResult
    from mash_requests.dispatch import Outcome

    assert isinstance(result, BatchResult)
    # Dry run and not started only when there are some: they are not what a run usually has.
    usual = {str(o) for o in SUMMARY_ORDER} - {str(Outcome.DRY_RUN), NOT_STARTED}
    if dry_run:
        usual = {str(Outcome.DRY_RUN)}
    shown = [o for o in SUMMARY_ORDER if str(o) in usual or result.counts[o]]
    counts = ", ".join(f"{result.counts[o]} {_LABELS[str(o)]}" for o in shown)
    click.echo(f"Summary: {counts}; {len(result.problems)} bad row(s).")
    for problem in result.problems:
        click.echo(f"skipped row {problem.row}: {problem.message}", err=True)
    for reason, count in sorted(result.refusals.items()):
        click.echo(f"  refused ({reason}): {count}")
    if result.counts[NOT_STARTED]:
        click.echo(
            f"Not started: {result.counts[NOT_STARTED]} request(s), as the batch was stopped "
            "before them. Run the same command again: it sends only what was not sent.",
            err=True,
        )
    unsent = sorted(result.unsent)
    if not unsent:
        return
    click.echo(f"Not sent ({len(unsent)} request(s)):", err=True)
    for item in unsent[:_LISTED]:
        click.echo(_unsent_line(item), err=True)
    if len(unsent) > _LISTED:
        click.echo(
            f"  … and {len(unsent) - _LISTED} more: --json lists every one, or "
            "mash-requests audit query --outcome failed (or rejected, unconfirmed)",
            err=True,
        )
    kinds = {item.outcome for item in unsent}
    for kind in ("rejected", "failed", "in_flight"):
        if kind in kinds:
            click.echo(_WHAT_TO_DO[kind], err=True)
    if result.refusals.get("encrypted"):
        click.echo(
            "Password-protected forms: send-batch reads the forms' password from the config "
            "only ([form] password_env or password_file); or ask for unprotected copies.",
            err=True,
        )
    if "unconfirmed" in kinds:
        click.echo(
            f"{sum(1 for i in unsent if i.outcome == 'unconfirmed')} request(s) unconfirmed: "
            "they may have been delivered. Check with 'mash-requests reconcile' or the "
            "partner; send one again only once you know it did not arrive (send-request "
            "--case FILE --partner KEY --resend --reason TEXT).",
            err=True,
        )
