"""``send-batch``: the day's contacts from a JSON Lines or CSV file."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from mash_requests.cli._common import EXIT_INCOMPLETE, CliError, library_errors
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
  mash-requests send-batch today.jsonl --dry-run

\b
Run it again after a crash or Ctrl-C: it sends only what was not sent (the dispatch log
decides), never a duplicate. Ctrl-C finishes the case in hand, then stops.

\b
Exit codes: 0 every request sent (or already sent); 1 some not sent, refused, or the batch
was interrupted; 2 bad rows (nothing sent unless --skip-invalid) or bad config.""",
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
def send_batch(
    batch_file: Path, config_path: Path | None, skip_invalid: bool, dry_run: bool
) -> None:
    """Send the requests for every case in a batch file (JSON Lines or CSV).

    The whole file is validated first and every bad row is reported (row number, field,
    problem) before anything is sent. Each case then goes through exactly the same checks
    as send-request: its own referral form, partners from the directory, no duplicates.
    """
    from mash_requests.batch import BatchInvalidError
    from mash_requests.batch import send_batch as api_send_batch
    from mash_requests.config import load_settings

    progress = _Progress(sys.stderr.isatty())
    try:
        with library_errors():
            settings = load_settings(config_path)
            try:
                result = api_send_batch(
                    settings,
                    batch_file,
                    skip_invalid=skip_invalid,
                    dry_run=dry_run,
                    progress=progress,
                )
            except BatchInvalidError as exc:
                for problem in exc.result.problems:
                    click.echo(f"row {problem.row}: {problem.message}", err=True)
                raise
    finally:
        progress.finish()
    for problem in result.problems:
        click.echo(f"skipped row {problem.row}: {problem.message}", err=True)
    summary = ", ".join(f"{n} {k}".replace("_", " ") for k, n in sorted(result.counts.items()))
    click.echo(f"Summary: {summary or 'no requests'}; {len(result.problems)} bad row(s).")
    for reason, count in sorted(result.refusals.items()):
        click.echo(f"  refused ({reason}): {count}")
    for row, case_ref, reason in result.refused[:50]:
        click.echo(f"  row {row}: case {case_ref} refused ({reason})", err=True)
    if len(result.refused) > 50:
        click.echo(
            f"  … and {len(result.refused) - 50} more: mash-requests audit query --outcome "
            "rejected",
            err=True,
        )
    if dry_run:
        click.echo("Dry run: nothing was sent.")
    if result.interrupted:
        raise CliError("interrupted: run the same command again to send the rest", EXIT_INCOMPLETE)
    if result.problems or (not dry_run and not result.all_sent):
        sys.exit(EXIT_INCOMPLETE)
