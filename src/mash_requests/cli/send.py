"""``send-request`` and ``reconcile``: the commands MASH staff run."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mash_requests.cli._common import (
    CONTEXT_SETTINGS,
    EXIT_BAD_INPUT,
    EXIT_INCOMPLETE,
    EXIT_OK,
    CliError,
    JsonRun,
    json_option,
    json_output,
    library_errors,
    require_log,
)

#: How an encrypted form's password is given, for the command's option (send-request and
#: chase: --form-password; form check: --password). send-batch has only the config.
ENCRYPTED_FORM_ADVICE = (
    "The form's password is given with {option} (better: the environment variable "
    "MASH_FORM_PASSWORD, which a command line does not show), or in the config: [form] "
    "password_env or password_file."
)

CONFIG_HELP = (
    "Config file (TOML). Default: $MASH_REQUESTS_CONFIG, else ./mash-requests.toml, "
    "else embedded defaults (outbox and log under ./mash-data/)."
)


def _print_outcomes(outcomes: list[object]) -> None:
    from mash_requests.dispatch import RequestOutcome

    rows = [("PARTNER", "ADDRESS", "OUTCOME", "REQUEST REF")]
    for outcome in outcomes:
        assert isinstance(outcome, RequestOutcome)
        label = str(outcome.outcome).replace("_", " ")
        if outcome.reason:
            label += f" ({outcome.reason})"
        rows.append(
            (outcome.partner, ", ".join(outcome.recipients), label, outcome.request_ref or "-")
        )
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        click.echo(
            "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3]
        )


@click.command(
    "send-request",
    context_settings=CONTEXT_SETTINGS,
    epilog="""\b
Examples:
  send-request --case cases/MASH-2026-0412.json
  send-request --case cases/MASH-2026-0412.json --partner police --partner health
  send-request --case cases/MASH-2026-0412.json --all-partners --dry-run
  send-request --case cases/MASH-2026-0412.json --partner police --resend --reason "bounced"
  send-request --case cases/MASH-2026-0412.json --json > result.json

\b
Exit codes: 0 every request sent; 1 some not sent (failed or unconfirmed; see the table),
or another run is still sending one; 2 bad case file, partner, form, template or config,
or already sent: nothing was sent and the refusal is in the dispatch log. The error says
exactly which partners to name next (--partner KEY), never more.""",
)
@click.option(
    "--case",
    "case_path",
    required=True,
    type=click.Path(path_type=Path),
    help="The case file (JSON; see the README's case file reference).",
)
@click.option(
    "--partner",
    "partners",
    multiple=True,
    metavar="KEY",
    help="Partner to ask (a key from the partner directory). Repeat for several. "
    "Default: the partners listed in the case file.",
)
@click.option("--all-partners", is_flag=True, help="Ask every partner in the directory.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help=CONFIG_HELP)
@click.option(
    "--form",
    "form_path",
    type=click.Path(path_type=Path),
    help="Referral form PDF to attach, instead of the case file's referral_form.",
)
@click.option(
    "--form-password",
    envvar="MASH_FORM_PASSWORD",
    show_envvar=True,
    help="Password of an encrypted referral form (prefer the environment variable).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Check the form and render every request, but send nothing and log nothing.",
)
@click.option(
    "--resend",
    is_flag=True,
    help="Send again a request that was already sent (needs --reason). The message is marked "
    "[RESEND] and says which request it replaces and when that was sent.",
)
@click.option(
    "--reason",
    "resend_reason",
    metavar="TEXT",
    help="Why a request is being resent; recorded in the dispatch log.",
)
@json_option
def send_request(
    case_path: Path,
    partners: tuple[str, ...],
    all_partners: bool,
    config_path: Path | None,
    form_path: Path | None,
    form_password: str | None,
    dry_run: bool,
    resend: bool,
    resend_reason: str | None,
    as_json: bool = False,
) -> None:
    """Send a case's requests for information, one per partner agency, each with the
    case's MASH referral form attached.

    Every request is checked before anything is sent: the partners must be in the
    directory, the referral form must be this case's, readable and safe, and every
    template must render. If any check fails, nothing of the case is sent.
    """
    with json_output("send-request", as_json) as run:
        run.update(case_ref=None, dry_run=dry_run, sent=0, requests=[])
        _send_request(
            run,
            case_path,
            partners,
            all_partners,
            config_path,
            form_path,
            form_password,
            dry_run,
            resend,
            resend_reason,
        )


def _send_request(
    run: JsonRun,
    case_path: Path,
    partners: tuple[str, ...],
    all_partners: bool,
    config_path: Path | None,
    form_path: Path | None,
    form_password: str | None,
    dry_run: bool,
    resend: bool,
    resend_reason: str | None,
) -> None:
    if partners and all_partners:
        raise click.UsageError("give --partner KEY or --all-partners, not both")
    if resend_reason is not None:
        resend_reason = resend_reason.strip()
    if resend != bool(resend_reason):
        raise click.UsageError("--resend and --reason TEXT go together (a reason is required)")
    from mash_requests.api import send_request as api_send_request
    from mash_requests.config import load_settings
    from mash_requests.errors import InputError

    with library_errors():
        settings = load_settings(config_path)
        try:
            result = api_send_request(
                settings,
                case_path,
                list(partners) or None,
                all_partners=all_partners,
                form_path=form_path,
                form_password=form_password,
                resend_reason=resend_reason,
                dry_run=dry_run,
            )
        except InputError as exc:
            command = f"send-request --case {_quoted(case_path)}"
            if config_path is not None:
                command += f" --config {_quoted(config_path)}"
            raise _refused(exc, command) from exc
    sent = sum(1 for o in result.outcomes if o.outcome == "sent")
    run.update(
        case_ref=result.case_ref,
        sent=sent,
        requests=[_outcome_fields(o) for o in result.outcomes],
    )
    if not run.enabled:
        _print_outcomes(list(result.outcomes))
    if dry_run:
        if not run.enabled:
            click.echo(
                f"Dry run: {len(result.outcomes)} request(s) checked and rendered; "
                "nothing was sent. The request refs above are not kept: a real send gives "
                "each request its own."
            )
        sys.exit(EXIT_OK)
    if not run.enabled:
        click.echo(f"{sent} of {len(result.outcomes)} request(s) sent for case {result.case_ref}.")
    if not result.all_sent:
        unconfirmed = [o.partner for o in result.outcomes if o.outcome == "unconfirmed"]
        failed = [o.partner for o in result.outcomes if o.outcome == "failed"]
        if not run.enabled:
            click.echo("Not every request was sent.", err=True)
            if failed:
                # The same command for those partners: the same form, and a resend again a
                # resend (its message says what it replaces). A password is never repeated.
                command = f"send-request --case {_quoted(case_path)}"
                if config_path is not None:
                    command += f" --config {_quoted(config_path)}"
                if form_path is not None:
                    command += f" --form {_quoted(form_path)}"
                if resend_reason:
                    command += f" --resend --reason {_quoted(resend_reason)}"
                password = " (with the form's password, given as before)" if form_password else ""
                click.echo(
                    f"Failed ({', '.join(failed)}): nothing was delivered; its reason above says "
                    "why and what to do (a deferral or a busy server: only time). Then send "
                    f"it again{password}: {command} {_partners(failed)}",
                    err=True,
                )
            if unconfirmed:
                click.echo(
                    f"Unconfirmed ({', '.join(unconfirmed)}): it may have been delivered; "
                    "check with 'mash-requests reconcile' or the partner before resending.",
                    err=True,
                )
        sys.exit(EXIT_INCOMPLETE)


def _outcome_fields(outcome: object) -> dict[str, object]:
    """One request's outcome for --json: every field of RequestOutcome but the case's."""
    from dataclasses import asdict

    from mash_requests.dispatch import RequestOutcome

    assert isinstance(outcome, RequestOutcome)
    fields = asdict(outcome)
    fields.pop("case_ref")
    fields["outcome"] = str(outcome.outcome)
    fields["recipients"] = list(outcome.recipients)
    fields["reason"] = outcome.reason or None
    fields["detail"] = outcome.detail or None
    return fields


def _quoted(path: Path | str) -> str:
    import shlex

    return shlex.quote(str(path))


def _refused(exc: Exception, command: str) -> CliError:
    """The library's refusal, plus what to type next; built from the error's fields.

    The advice names exactly the partners it concerns, so following it literally never
    sends again what was delivered.
    """
    from mash_requests.errors import DuplicateRequestError, InputError

    assert isinstance(exc, InputError)
    advice: list[str] = []
    code = EXIT_BAD_INPUT
    if isinstance(exc, DuplicateRequestError):
        by_state: dict[str, list[str]] = {}
        for partner, state in exc.states.items():
            by_state.setdefault(state, []).append(partner)
        if exc.others:
            advice.append(f"To ask only the others: {command} {_partners(exc.others)}")
        if by_state.get("unconfirmed"):
            keys = by_state["unconfirmed"]
            advice.append(
                f"Once you have checked that {' and '.join(keys)} did not arrive "
                "(mash-requests reconcile, or ask the partner), send only "
                f"{'that one' if len(keys) == 1 else 'those'} again: "
                f"{command} {_partners(keys)} --resend --reason TEXT"
            )
        if by_state.get("in_flight"):
            code = EXIT_INCOMPLETE  # nothing is wrong with the input: another run has it
            advice.append(
                "Another run is still sending "
                f"{' and '.join(by_state['in_flight'])}; run the same command later to see "
                "its outcome."
            )
        if set(by_state) == {"sent"} and not exc.others:
            advice.append(
                "Every request asked was already sent: nothing to do. A delivered request "
                "is sent again only on purpose, naming it: --partner KEY --resend --reason TEXT"
            )
    elif exc.reason == "no_partners":
        advice.append("Or name them: --partner KEY (repeat), or --all-partners.")
    elif exc.reason == "no_directory":
        advice.append("Pass --config FILE, e.g. --config examples/mash-requests.toml")
    elif exc.reason == "no_form":
        advice.append("Or attach one with --form PDF.")
    elif exc.reason == "encrypted":
        advice.append(ENCRYPTED_FORM_ADVICE.format(option="--form-password"))
    return CliError("\n".join([str(exc), *advice]), code)


def _partners(keys: object) -> str:
    assert isinstance(keys, list | tuple)
    return " ".join(f"--partner {key}" for key in keys)


@click.command(
    epilog="""\b
Example:
  mash-requests reconcile --config mash-requests.toml

A request is recorded not found (and so sendable again: send-request --partner KEY, or
send-batch) only after it was looked for twice, [retry] lookup_delay apart, the first time no
sooner than lookup_delay after it was left unconfirmed: a mail system files messages in Sent
Items late. A request sent again since it was found missing is not looked for again.

Exit codes: 0 every request found sent; 1 some not found (not sent), or still unconfirmed
because the gateway cannot look messages up (SMTP: check the partner's receipt or the
relay's logs by hand); 2 bad config."""
)
@click.option("--config", "config_path", type=click.Path(path_type=Path), help=CONFIG_HELP)
def reconcile(config_path: Path | None) -> None:
    """Re-check unconfirmed requests against the mailbox's Sent Items (EWS, Graph, outbox)
    and record what is found in the dispatch log."""
    from mash_requests.config import load_settings
    from mash_requests.dispatch import Dispatcher

    with library_errors():
        # Looking in Sent Items opens no referral form: its password need not be set.
        settings = load_settings(config_path, form_secrets=False)
        require_log(settings.log)  # not "No unconfirmed requests." from a mistyped [log] path
        with Dispatcher(settings) as dispatcher:
            results = dispatcher.reconcile()
    if not results:
        click.echo("No unconfirmed requests.")
        return
    for item in results:
        click.echo(f"{item.request_ref}  {item.partner}  {item.finding}")
    changed = sum(1 for item in results if item.finding == "changed")
    if changed:
        click.echo(
            f"{changed} request(s) were sent again or settled by another run while being looked "
            "for: left as they now are."
        )
    missing = sum(1 for item in results if item.finding == "not_found")
    unchecked = sum(1 for item in results if item.finding == "cannot_check")
    problems = []
    if missing:
        delay = settings.retry.lookup_delay
        problems.append(
            f"{missing} request(s) not found in Sent Items (looked for twice, {delay:g} s "
            "apart): recorded as not sent. To send each again, with a new reference: "
            "send-request --case <its case file> --partner <partner>, or send-batch of its "
            "case (which sends only what was not sent)"
        )
    if unchecked:
        problems.append(
            f"{unchecked} request(s) still unconfirmed: the configured gateway cannot look "
            "them up (SMTP, or not the mailbox they went through). Check them by hand (the "
            "partner, the relay's logs) before resending with --resend --reason"
        )
    if problems:
        raise CliError("\n".join(problems), EXIT_INCOMPLETE)
