"""The few calls a case-management script needs; the CLI uses exactly these.

::

    from pathlib import Path
    import mash_requests

    settings = mash_requests.load_settings(Path("mash-requests.toml"))
    result = mash_requests.send_request(settings, Path("cases/MASH-2026-0412.json"))
    for outcome in result.outcomes:
        print(outcome.partner, outcome.outcome, outcome.request_ref)

Every refusal is in the dispatch log before the error is raised.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from mash_requests.case import Case, case_ref_for_log, load_case
from mash_requests.config import Settings
from mash_requests.dispatch import CaseResult, Dispatcher
from mash_requests.errors import CaseFileError


def load_case_logged(dispatcher: Dispatcher, path: Path) -> Case:
    """Load a case file; if it is invalid, log the refusal and raise CaseFileError.

    The log entry names the file and the problem, and the case reference when the file
    had a readable one; it never copies the file's other contents.
    """
    try:
        return load_case(path)
    except CaseFileError as exc:
        dispatcher.log_rejection(
            case_ref=_case_ref_if_readable(path),
            partners=[],
            reason="invalid_case",
            detail=str(exc),
            source=str(path),
        )
        raise


def _case_ref_if_readable(path: Path) -> str:
    try:
        return case_ref_for_log(json.loads(path.read_text(encoding="utf-8-sig")))
    except (OSError, ValueError):
        return "(unknown)"


def send_request(
    settings: Settings,
    case_path: Path,
    partners: Sequence[str] | None = None,
    *,
    form_path: Path | None = None,
    form_password: str | None = None,
    resend_reason: str | None = None,
    dry_run: bool = False,
    dispatcher: Dispatcher | None = None,
) -> CaseResult:
    """Send one case's requests for information; one outcome per partner.

    ``partners`` defaults to the case file's list. Raises InputError (nothing sent, refusal
    logged) when the case, a partner, the form or a template is wrong; gateway failures do
    not raise, they are outcomes (``failed``, ``unconfirmed``).
    """
    owned = dispatcher is None
    dispatcher = dispatcher or Dispatcher(settings)
    try:
        case = load_case_logged(dispatcher, case_path) if not dry_run else load_case(case_path)
        return dispatcher.send_case(
            case,
            partners,
            form_path=form_path,
            form_password=form_password,
            resend_reason=resend_reason,
            dry_run=dry_run,
        )
    finally:
        if owned:
            dispatcher.close()
