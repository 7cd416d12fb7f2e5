"""``mash-requests form check`` and ``form fill``: the referral-form guarantee by hand.

Thin: the checks and the filling live in :mod:`mash_requests.referral_form`; this module
parses options, prints the verdict and picks the exit code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mash_requests.cli._common import (
    CONTEXT_SETTINGS,
    EXIT_BAD_INPUT,
    EXIT_INCOMPLETE,
    EXIT_OK,
    CliError,
    FiniteFloatRange,
    case_ref_value,
    library_errors,
)

if TYPE_CHECKING:
    from mash_requests.referral_form import Verdict

_CONFIG_HELP = (
    "Config file (TOML) whose [form] section sets the password, max_size_mb, case_ref_field "
    "and fill_mapping. Default: $MASH_REQUESTS_CONFIG, else ./mash-requests.toml, else the "
    "built-in defaults."
)


@click.group("form", context_settings=CONTEXT_SETTINGS)
def form() -> None:
    """Check a referral form PDF against a case, or fill a blank form from a case file.

    Every request is checked the same way before it is sent: this is that check, by hand.
    """


@form.command(
    "check",
    context_settings=CONTEXT_SETTINGS,
    epilog="""\b
Examples:
  mash-requests form check forms/MASH-2026-0412.pdf --case-ref MASH-2026-0412
  mash-requests form check marf.pdf --case-ref MASH-2026-0412 --json
  MASH_FORM_PASSWORD=… mash-requests form check locked.pdf --case-ref MASH-2026-0412

\b
What is refused, with the reason code printed (and in --json):
  not_pdf, unreadable (damaged, cut off, or too complex to check), encrypted (no or
  wrong password), no_pages, active_content (JavaScript, Launch, or an action that
  reaches outside the document: SubmitForm, ImportData, GoToR, GoToE), embedded_file,
  too_large, case_ref_missing (the reference is in no field and not in the text
  searched), wrong_case (the case-reference field holds another case's reference).

\b
Page text is searched on the first 50 pages, within 128 KB of their content; the
verdict says how many pages were searched ("searched", pages_searched in --json).
These bounds count work, not time: a form gets the same verdict on any machine.

\b
Exit codes: 0 accepted; 1 refused; 2 bad usage, unreadable file path or bad config.""",
)
@click.argument("pdf", type=click.Path(path_type=Path))
@click.option(
    "--case-ref",
    required=True,
    callback=case_ref_value,
    metavar="REF",
    help="The case reference the form must carry, e.g. MASH-2026-0412.",
)
@click.option(
    "--password",
    envvar="MASH_FORM_PASSWORD",
    show_envvar=True,
    metavar="PW",
    help="Password of an encrypted form (prefer the environment variable: a command line "
    "is visible to other users). Default: the config's [form] password_env or password_file.",
)
@click.option(
    "--max-size-mb",
    type=FiniteFloatRange(min=0, min_open=True, max=1024),
    metavar="N",
    help="Refuse forms larger than N MB. Default: form.max_size_mb from the config (10).",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the verdict as one JSON object instead."
)
@click.option("--config", "config_path", type=click.Path(path_type=Path), help=_CONFIG_HELP)
def check(
    pdf: Path,
    case_ref: str,
    password: str | None,
    max_size_mb: float | None,
    as_json: bool,
    config_path: Path | None,
) -> None:
    """Check the referral form PDF for case REF: would it be sent?

    Prints the verdict, the reason and the fingerprint (SHA-256, size, pages, and where
    the case reference was found) that the dispatch log records, and what the case
    binding searched (how many pages' text).
    """
    from mash_requests.config import load_settings
    from mash_requests.referral_form import check_form, read_form

    with library_errors():
        settings = load_settings(config_path, gateway_secrets=False).form
        data = read_form(pdf)
    verdict = check_form(
        data,
        case_ref,
        password=password if password is not None else settings.password,
        max_size=int(max_size_mb * 1024 * 1024) if max_size_mb is not None else settings.max_size,
        case_ref_field=settings.case_ref_field,
    )
    if as_json:
        click.echo(json.dumps(verdict.to_json(), ensure_ascii=False))
    else:
        _print_verdict(pdf, verdict)
    click.get_current_context().exit(EXIT_OK if verdict.accepted else EXIT_INCOMPLETE)


def _print_verdict(pdf: Path, verdict: Verdict) -> None:
    status = "accepted" if verdict.accepted else f"refused ({verdict.reason})"
    click.echo(f"{status}: {pdf}")
    click.echo(f"  {verdict.detail}")
    if verdict.reason == "encrypted":
        from mash_requests.cli.send import ENCRYPTED_FORM_ADVICE

        click.echo(f"  {ENCRYPTED_FORM_ADVICE.format(option='--password')}")
    click.echo(f"  sha256    {verdict.sha256}")
    pages = "" if verdict.pages is None else f", {verdict.pages} page(s)"
    click.echo(f"  size      {verdict.size:,} bytes{pages}")
    if verdict.found_in:
        click.echo(f"  found in  {verdict.found_in}")
    searched = _searched(verdict)
    if searched:
        click.echo(f"  searched  {searched}")


def _searched(verdict: Verdict) -> str | None:
    """What the case binding searched, in a few words; None when it did not run."""
    if verdict.pages_searched is None or verdict.pages is None:
        return None
    if verdict.pages_searched == 0:
        return "the form fields (no page text was needed)"
    of = "" if verdict.pages_searched == verdict.pages else f" of {verdict.pages}"
    pages = "page" if verdict.pages_searched == 1 else "pages"
    return f"the form fields and the text of {verdict.pages_searched}{of} {pages}"


@form.command(
    "fill",
    context_settings=CONTEXT_SETTINGS,
    epilog="""\b
Examples:
  mash-requests form fill --template forms/blank-referral-form.pdf \\
      --case cases/MASH-2026-0412.json --out forms/MASH-2026-0412.pdf

\b
The mapping from form fields to case fields is [form.fill_mapping] in the config, e.g.
  [form.fill_mapping]
  case_reference = "case_ref"
  child_name = "child.name"
  referrer_email = "worker.email"
Unlisted fields keep the defaults (case_reference, contact_id, child_name, child_dob,
child_address, referrer_name, referrer_role, referrer_email, consent_status,
consent_reason, concerns).

\b
The template must be blank: one whose fields already hold values (another case's filled
form) is refused, as its details would stay in fields the mapping does not fill.
The filled form is checked as if it were being sent; a form that would be refused is
not written. Exit codes: 0 written; 1 the filled form would be refused; 2 bad template,
case file, mapping or config.""",
)
@click.option(
    "--template",
    "template_path",
    required=True,
    type=click.Path(path_type=Path),
    metavar="PDF",
    help="The blank fillable referral form.",
)
@click.option(
    "--case",
    "case_path",
    required=True,
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="The case file (JSON) whose details fill the form.",
)
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(path_type=Path),
    metavar="PDF",
    help="Where to write the filled form (replaced if it exists).",
)
@click.option("--config", "config_path", type=click.Path(path_type=Path), help=_CONFIG_HELP)
def fill(template_path: Path, case_path: Path, out_path: Path, config_path: Path | None) -> None:
    """Fill a blank referral form from a case file, check it, and write it."""
    from mash_requests.case import load_case
    from mash_requests.config import load_settings
    from mash_requests.referral_form import check_form, fill_form, read_form, write_form

    if out_path.exists() and out_path.resolve() == template_path.resolve():
        raise CliError(
            f"--out {out_path} is the template itself; write the filled form elsewhere",
            EXIT_BAD_INPUT,
        )
    with library_errors():
        all_settings = load_settings(config_path, gateway_secrets=False)
        settings = all_settings.form
        case = load_case(case_path)
        template = read_form(template_path)
        values = case.form_values(settings.fill_mapping, timescales=all_settings.timescales)
        # No option to fill a form that already holds values: a blank template is the only
        # safe input (another child's details would stay in fields the mapping skips).
        filled = fill_form(
            template, values, password=settings.password, template_name=str(template_path)
        )
    verdict = check_form(
        filled,
        case.case_ref,
        password=settings.password,
        max_size=settings.max_size,
        case_ref_field=settings.case_ref_field,
    )
    if not verdict.accepted:
        raise CliError(
            f"the filled form would be refused ({verdict.reason}): {verdict.detail} "
            f"Nothing was written to {out_path}.",
            EXIT_INCOMPLETE,
        )
    with library_errors():
        write_form(out_path, filled)
    click.echo(f"wrote {out_path} for {case.case_ref}")
    click.echo(f"  {verdict.detail}")
    click.echo(f"  sha256    {verdict.sha256}")
