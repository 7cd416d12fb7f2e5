"""The few calls a case-management script needs; the CLI uses exactly these.

::

    from pathlib import Path
    import mash_requests

    settings = mash_requests.load_settings(Path("mash-requests.toml"))
    result = mash_requests.send_request(settings, Path("cases/MASH-2026-0412.json"))
    for outcome in result.outcomes:
        print(outcome.partner, outcome.outcome, outcome.request_ref)

A case may be given as a path to a case file, as a mapping shaped like a case file (e.g.
``json.loads`` of one, or built by the script), or as a :class:`~mash_requests.case.Case`.
Each is validated by the same rules with the same errors; nothing needs writing to disk (a
Case is judged as the mapping of its fields, so a wrong-typed field is a CaseFileError naming
it). A mapping's relative ``referral_form`` is resolved against ``base_dir`` (default: the
current folder), a case file's against the file's folder.

Every refusal is in the dispatch log before the error is raised.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeAlias

from mash_requests.case import (
    Case,
    case_data,
    case_ref_for_log,
    case_ref_of_file,
    load_case,
    parse_case,
)
from mash_requests.config import Settings
from mash_requests.dispatch import CaseResult, Dispatcher
from mash_requests.errors import CaseFileError, InputError, RecipientError

#: What a case may be given as: a case file's path, a mapping like a case file, a Case.
CaseLike: TypeAlias = "Case | Mapping[str, Any] | Path | str | os.PathLike[str]"

#: How a mapping or a Case is named in errors and in the log (they have no file name).
MAPPING_SOURCE = "(mapping)"
CASE_SOURCE = "(Case object)"


def as_case(case: CaseLike, *, base_dir: Path | None = None) -> Case:
    """Validate a case given in any of the accepted forms; CaseFileError names the field.

    A ``Case`` is validated again (it may have been built by hand), as if it were the
    mapping of its fields.
    """
    if isinstance(case, str | os.PathLike):
        return load_case(Path(case))
    if isinstance(case, Case):
        return parse_case(case_data(case, source=CASE_SOURCE), source=CASE_SOURCE, base_dir=None)
    if isinstance(case, Mapping):
        return parse_case(dict(case), source=MAPPING_SOURCE, base_dir=base_dir or Path.cwd())
    raise CaseFileError(
        f"a case is a path to a case file, a mapping or a Case, not {type(case).__name__}",
        reason="invalid_case",
    )


def load_case_logged(
    dispatcher: Dispatcher, case: CaseLike, *, base_dir: Path | None = None
) -> Case:
    """Validate a case; if it is invalid, log the refusal and raise CaseFileError.

    The log entry names the file (or "(mapping)") and the problem, and the case reference
    when it had a readable one; it never copies the case's other contents.
    """
    try:
        return as_case(case, base_dir=base_dir)
    except CaseFileError as exc:
        dispatcher.log_rejection(
            case_ref=_case_ref_if_readable(case),
            partners=[],
            reason=exc.reason,
            detail=str(exc),
            source=_source_of(case),
        )
        raise


def _source_of(case: object) -> str:
    if isinstance(case, str | os.PathLike):
        return str(case)
    return CASE_SOURCE if isinstance(case, Case) else MAPPING_SOURCE


def _case_ref_if_readable(case: object) -> str:
    if isinstance(case, Case):
        return case_ref_for_log({"case_ref": case.case_ref})
    if isinstance(case, Mapping):
        return case_ref_for_log(dict(case))
    if isinstance(case, str | os.PathLike):
        return case_ref_of_file(Path(case))
    return "(unknown)"


def _partners_asked(partners: Iterable[str] | None) -> list[str] | None:
    """The ``partners`` argument as a list; InputError (``usage``) when it is not one of keys.

    A str is an Iterable[str] too: "police" would ask partners "p", "o" … A generator is
    read once, here, so that every later step sees the same keys.
    """
    if partners is None:
        return None
    if isinstance(partners, str | bytes) or not isinstance(partners, Iterable):
        raise InputError(
            'partners: expected a list of partner keys such as ["police"], not '
            f"{type(partners).__name__}",
            reason="usage",
            field="partners",
        )
    asked = list(partners)
    for number, key in enumerate(asked, start=1):
        if not isinstance(key, str):
            raise InputError(
                'partners: expected a list of partner keys such as ["police"]; entry '
                f"{number} is {type(key).__name__}",
                reason="usage",
                field="partners",
            )
    return asked


def _relative_form_origin(case: CaseLike, base_dir: Path | None) -> str | None:
    """What a mapping's or a Case's relative ``referral_form`` was resolved against, in
    words; None when it is absolute or the case is a file (whose folder it is relative to).
    """
    if isinstance(case, Mapping):
        raw = case.get("referral_form")
        where = (
            f"base_dir {base_dir}" if base_dir is not None else f"the current folder {Path.cwd()}"
        )
    elif isinstance(case, Case):
        raw = case.referral_form
        where = f"the current folder {Path.cwd()}"
    else:
        return None
    if not isinstance(raw, str | Path) or not str(raw) or Path(raw).expanduser().is_absolute():
        return None
    return where


def _explained_form_error(
    exc: InputError, case: CaseLike, checked: Case, base_dir: Path | None
) -> InputError | None:
    """The form check's "not found" for a mapping's or a Case's relative ``referral_form``,
    naming the field and the folder it was resolved against; None for any other error.

    The form check knows only the path it was given, not where it came from.
    """
    origin = _relative_form_origin(case, base_dir)
    form = checked.referral_form
    if exc.reason != "form_unreadable" or origin is None or form is None or form.is_file():
        return None
    found = "is not a file (a folder, a pipe or a device)" if form.exists() else "not found"
    return InputError(
        f"case {checked.source}: field referral_form: {form} {found}; the relative path was "
        f"resolved against {origin}: give an absolute path, or base_dir the folder it is "
        "relative to",
        reason=exc.reason,
        field="referral_form",
        partners=exc.partners,
    )


def send_request(
    settings: Settings,
    case: CaseLike,
    partners: Iterable[str] | None = None,
    *,
    all_partners: bool = False,
    base_dir: Path | None = None,
    form_path: Path | None = None,
    form_password: str | None = None,
    resend_reason: str | None = None,
    dry_run: bool = False,
    dispatcher: Dispatcher | None = None,
) -> CaseResult:
    """Send one case's requests for information; one outcome per partner.

    ``case`` is a case file's path, a mapping shaped like a case file, or a Case (see
    the module docstring; ``base_dir`` resolves a mapping's relative ``referral_form``).
    ``partners`` (a list of partner keys, not a str) defaults to the case's list; an empty
    list is refused (``no_partners``, logged), not read as "the case's". ``all_partners=True``
    asks every partner in the directory. Raises InputError (nothing sent, refusal logged)
    when the case, a partner, the form or a template is wrong, or the request was already sent
    (DuplicateRequestError, whose fields say which partners and their earlier request
    references). Gateway failures do not raise, they are outcomes (``failed``,
    ``unconfirmed``).
    """
    asked = _partners_asked(partners)
    if all_partners and asked is not None:
        raise InputError(
            "give partners or all_partners, not both", reason="usage", field="partners"
        )
    if all_partners:
        asked = list(settings.directory.keys())
    owned = dispatcher is None
    dispatcher = dispatcher or Dispatcher(settings)
    try:
        checked = (
            as_case(case, base_dir=base_dir)
            if dry_run
            else load_case_logged(dispatcher, case, base_dir=base_dir)
        )
        if asked == [] and not all_partners:
            # The dispatcher reads "no partners given" as "the case's own": a list
            # filtered down to nothing must not send to those.
            refusal = RecipientError(
                f"case {checked.case_ref}: the partners asked are an empty list; ask at "
                "least one partner, or leave partners out to ask the case's own",
                reason="no_partners",
                field="partners",
            )
            if not dry_run:
                dispatcher.log_rejection(
                    case_ref=checked.case_ref,
                    partners=[],
                    reason=refusal.reason,
                    detail=str(refusal),
                    source=_source_of(case),
                )
            raise refusal
        try:
            return dispatcher.send_case(
                checked,
                asked,
                form_path=form_path,
                form_password=form_password,
                resend_reason=resend_reason,
                dry_run=dry_run,
            )
        except InputError as exc:
            explained = None if form_path else _explained_form_error(exc, case, checked, base_dir)
            if explained is None:
                raise
            raise explained from exc
    finally:
        if owned:
            dispatcher.close()
