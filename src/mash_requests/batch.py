"""Batch sending: the day's contacts from a JSON Lines or CSV file, resumable and visible.

Two passes over the file, both streaming (a case is held in memory only while it is sent):

1. **Validate** every row — case fields, partner keys, the referral form's presence — and
   report every bad row (row number, field, problem). Unless ``skip_invalid``, one bad row
   stops the batch before anything is sent.
2. **Send** each valid case through the same :class:`~mash_requests.dispatch.Dispatcher` as
   ``send-request``, so the same checks and log apply. Requests whose key the log already
   shows as sent are skipped, so running a batch again after a crash or Ctrl-C sends only
   what was not sent, never a duplicate.

Formats:

- JSON Lines (``.jsonl``, ``.ndjson``): one case object per line, as in a case file.
- CSV (``.csv``): a header row with the columns in :data:`CSV_COLUMNS`; ``partners`` is a list
  of keys separated by ``;``. Empty optional cells may be left blank.

``referral_form`` paths are relative to the batch file's folder.
"""

from __future__ import annotations

import csv
import json
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from mash_requests.case import Case, case_ref_for_log, parse_case
from mash_requests.config import Settings
from mash_requests.dispatch import Dispatcher, Outcome
from mash_requests.errors import CaseFileError, InputError, RecipientError

#: CSV column -> case field path. ``partners`` is split on ";".
CSV_COLUMNS: dict[str, str] = {
    "case_ref": "case_ref",
    "contact_id": "contact_id",
    "rag": "rag",
    "child_name": "child.name",
    "child_date_of_birth": "child.date_of_birth",
    "child_address": "child.address",
    "consent_status": "consent.status",
    "consent_reason": "consent.reason",
    "consent_given_by": "consent.given_by",
    "concerns": "concerns",
    "worker_name": "worker.name",
    "worker_role": "worker.role",
    "worker_email": "worker.email",
    "partners": "partners",
    "referral_form": "referral_form",
}
_OPTIONAL_CSV = {"consent_reason", "consent_given_by", "referral_form"}


@dataclass(frozen=True)
class RowProblem:
    """One bad row: where it is and what is wrong (never the row's personal data)."""

    row: int
    message: str
    case_ref: str = "(unknown)"


@dataclass
class BatchProgress:
    """Running totals, passed to the progress callback after every case."""

    total_requests: int
    done: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)

    @property
    def rate(self) -> float:
        """Requests handled per second so far."""
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        rate = self.rate
        return (self.total_requests - self.done) / rate if rate > 0 else None


@dataclass
class BatchResult:
    """What a batch did. ``interrupted`` means it stopped early on request (Ctrl-C)."""

    problems: list[RowProblem] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)
    #: (row, case reference, reason) of each case refused while sending.
    refused: list[tuple[int, str, str]] = field(default_factory=list)
    interrupted: bool = False
    validated_rows: int = 0

    @property
    def all_sent(self) -> bool:
        not_sent = sum(
            n for k, n in self.counts.items() if k not in (Outcome.SENT, Outcome.SKIPPED)
        )
        return not_sent == 0 and not self.problems and not self.interrupted


def _csv_row_to_case(row: dict[str, str], source: str) -> dict[str, Any]:
    missing = [c for c in CSV_COLUMNS if c not in row and c not in _OPTIONAL_CSV]
    if missing:
        raise CaseFileError(f"{source}: no column {missing[0]!r}; see the README's CSV columns")
    data: dict[str, Any] = {}
    for column, path in CSV_COLUMNS.items():
        value: Any = (row.get(column) or "").strip()
        if column == "partners":
            value = [p.strip() for p in value.split(";") if p.strip()]
        target = data
        *parents, leaf = path.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        if value != "" or column not in _OPTIONAL_CSV:
            target[leaf] = value
    return data


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | CaseFileError]]:
    """Stream ``(row number, case data or the error that row has)`` from a batch file."""
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".ndjson", ".csv"):
        raise InputError(f"batch file {path}: expected a .jsonl or .csv file")
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise InputError(f"batch file {path}: cannot be read ({exc.strerror})") from exc
    with handle:
        try:
            if suffix == ".csv":
                reader = csv.DictReader(handle)
                header = set(reader.fieldnames or ())
                missing = [c for c in CSV_COLUMNS if c not in header and c not in _OPTIONAL_CSV]
                if missing:
                    raise InputError(
                        f"batch file {path}: the header has no column {', '.join(missing)}; "
                        "see the README's batch file columns"
                    )
                for number, row in enumerate(reader, start=2):  # row 1 is the header
                    source = f"{path} row {number}"
                    try:
                        yield number, _csv_row_to_case(row, source)
                    except CaseFileError as exc:
                        yield number, exc
                return
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    yield number, json.loads(line)
                except RecursionError:
                    yield (
                        number,
                        CaseFileError(
                            f"case file {path} row {number}: nested too deeply to be a case"
                        ),
                    )
                except json.JSONDecodeError as exc:
                    yield (
                        number,
                        CaseFileError(
                            f"case file {path} row {number}: not valid JSON at column {exc.colno}: "
                            f"{exc.msg}"
                        ),
                    )
        except UnicodeDecodeError:
            raise InputError(f"batch file {path}: is not UTF-8 text; save it as UTF-8") from None
        except csv.Error as exc:
            raise InputError(
                f"batch file {path}: not readable as CSV ({exc}); check for an unclosed quote"
            ) from None


def _validate_row(
    settings: Settings, path: Path, number: int, data: dict[str, Any] | CaseFileError
) -> Case:
    if isinstance(data, CaseFileError):
        raise data
    case = parse_case(data, source=f"{path} row {number}", base_dir=path.parent)
    for key in case.partners:
        settings.directory.get(key)
    if not case.partners:
        raise RecipientError(f"{path} row {number}: no partners listed")
    if case.referral_form is None:
        raise InputError(f"{path} row {number}: no referral_form; every request needs one")
    if not case.referral_form.is_file():
        raise InputError(
            f"{path} row {number}: referral form {case.referral_form} not found; check the "
            "referral_form path (relative to the batch file)"
        )
    return case


def validate_batch(settings: Settings, path: Path) -> tuple[list[RowProblem], int, int]:
    """Check every row; return the problems, the number of valid rows and their requests."""
    problems: list[RowProblem] = []
    valid = requests = 0
    for number, data in read_rows(path):
        try:
            case = _validate_row(settings, path, number, data)
        except InputError as exc:
            problems.append(RowProblem(number, str(exc), case_ref_for_log(data)))
            continue
        valid += 1
        requests += len(case.partners)
    return problems, valid, requests


class _StopFlag:
    """Ctrl-C finishes the case in hand, logs it, then stops; a second Ctrl-C stops at once."""

    def __init__(self) -> None:
        self.stop = False
        self._previous: Any = None

    def __enter__(self) -> _StopFlag:
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: no handler, Ctrl-C behaves as usual
            self._previous = None
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.stop:
            raise KeyboardInterrupt
        self.stop = True

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def send_batch(
    settings: Settings,
    path: Path,
    *,
    skip_invalid: bool = False,
    dry_run: bool = False,
    progress: Callable[[BatchProgress], None] | None = None,
    dispatcher: Dispatcher | None = None,
) -> BatchResult:
    """Validate then send every case in a batch file; resumable. See the module docstring.

    Raises InputError, before sending anything, when the file has bad rows and
    ``skip_invalid`` is false (``.problems`` of the error's result lists them: catch
    :class:`BatchInvalidError`).
    """
    problems, valid, total = validate_batch(settings, path)
    result = BatchResult(problems=problems, validated_rows=valid)
    owned = dispatcher is None
    dispatcher = dispatcher or Dispatcher(settings)
    try:
        for problem in problems:
            if not dry_run:
                dispatcher.log_rejection(
                    case_ref=problem.case_ref,
                    partners=[],
                    reason="invalid_case",
                    detail=problem.message,
                    source=f"{path} row {problem.row}",
                )
        if problems and not skip_invalid:
            raise BatchInvalidError(result)
        state = BatchProgress(total_requests=total)
        with _StopFlag() as flag:
            for number, data in read_rows(path):
                if flag.stop:
                    result.interrupted = True
                    break
                try:
                    case = _validate_row(settings, path, number, data)
                except InputError:
                    continue  # reported and logged in the validation pass
                try:
                    outcome = dispatcher.send_case(case, dry_run=dry_run, skip_sent=True)
                except InputError as exc:
                    reason = _refusal_reason(exc)
                    result.counts[Outcome.REJECTED] += len(case.partners)
                    result.refusals[reason] += len(case.partners)
                    result.refused.append((number, case.case_ref, reason))
                    state.done += len(case.partners)
                    state.counts[Outcome.REJECTED] += len(case.partners)
                else:
                    for request in outcome.outcomes:
                        result.counts[request.outcome] += 1
                        state.counts[request.outcome] += 1
                        state.done += 1
                if progress is not None:
                    progress(state)
    finally:
        if owned:
            dispatcher.close()
    return result


class BatchInvalidError(InputError):
    """The batch file has bad rows; nothing was sent. ``result.problems`` lists them."""

    def __init__(self, result: BatchResult) -> None:
        count = len(result.problems)
        super().__init__(
            f"{count} bad row(s); nothing was sent. Fix them, or pass --skip-invalid to send "
            "the valid rows"
        )
        self.result = result


def _refusal_reason(exc: InputError) -> str:
    from mash_requests.errors import FormRefusedError

    if isinstance(exc, FormRefusedError):
        return str(exc.verdict.reason)
    return type(exc).__name__.removesuffix("Error").lower() or "refused"
