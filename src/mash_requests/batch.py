"""Batch sending: the day's contacts from a JSON Lines or CSV file, resumable and visible.

Two passes over the file, both streaming (a case is held in memory only while it is sent):

1. **Validate** every row — case fields, partner keys, the referral form's presence — and
   report every bad row (row number, field, problem). Unless ``skip_invalid``, one bad row
   stops the batch before anything is sent.
2. **Send** each valid case through the same :class:`~mash_requests.dispatch.Dispatcher` as
   ``send-request``, so the same checks and log apply. What the log holds decides what is
   sent: a request recorded sent is not sent again (``already_sent``); one an earlier run
   left ``unconfirmed`` stays so (a person checks it); one another live run is sending is
   come back to once the rest is done, and waited for (bounded); one left in flight by a
   run that died is settled at once (see :mod:`mash_requests.claims`). So running a batch
   again after a crash, ``kill -9`` or Ctrl-C sends exactly what was not sent, and two runs
   of one batch at once share the work and both end with everything sent once.

Formats:

- JSON Lines (``.jsonl``, ``.ndjson``): one case object per line, as in a case file.
- CSV (``.csv``): a header row with the columns in :data:`CSV_COLUMNS`; ``partners`` is a list
  of keys separated by ``;``. Empty optional cells may be left blank; a row whose cells
  are all empty (as Excel leaves after the last case) is skipped, as is a blank JSON line.

Files are read as UTF-8, with or without a byte-order mark, unless another ``encoding`` is
given (Excel's "CSV (Comma delimited)" on a Western-European Windows is ``cp1252``).
``referral_form`` paths are relative to the batch file's folder.

Instead of a file, :func:`send_batch` takes any iterable of cases, each a case file's path,
a mapping shaped like a case file, or a :class:`~mash_requests.case.Case` (held in memory;
a mapping's relative ``referral_form`` resolves against ``base_dir`` or the current folder).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import os
import signal
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from mash_requests._files import NotRegularFileError, open_regular_file
from mash_requests.api import CaseLike, as_case
from mash_requests.audit.events import EventKind
from mash_requests.case import Case, case_ref_for_log, decode_case_json, parse_case
from mash_requests.claims import Standing, State
from mash_requests.config import Settings
from mash_requests.dispatch import Dispatcher, Outcome
from mash_requests.errors import CaseFileError, InputError, LogError, RecipientError

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

#: The default encoding: UTF-8, with or without the byte-order mark Excel writes.
DEFAULT_ENCODING = "utf-8-sig"

#: The count of a batch stopped early (Ctrl-C) for the valid rows' requests it never
#: reached, or reached and stopped before claiming: nothing of them is in the log from
#: this run, and running the batch again sends them.
NOT_STARTED = "not_started"

#: The summary's categories, in the order they are reported. Every request of the valid
#: rows is in exactly one.
SUMMARY_ORDER: tuple[str, ...] = (
    Outcome.SENT,
    Outcome.SKIPPED,
    Outcome.IN_FLIGHT,
    Outcome.UNCONFIRMED,
    Outcome.FAILED,
    Outcome.REJECTED,
    NOT_STARTED,
    Outcome.DRY_RUN,
)


@dataclass(frozen=True)
class RowProblem:
    """One bad row: where it is and what is wrong (never the row's personal data)."""

    row: int
    message: str
    case_ref: str = "(unknown)"


@dataclass(frozen=True, order=True)
class UnsentRequest:
    """One request of a batch that did not end sent, and why (never the case's details).

    ``outcome`` is ``rejected``, ``failed``, ``unconfirmed`` or ``in_flight``; ``reason``
    the refusal's code (``wrong_case`` …) for ``rejected``, else the outcome's sentence
    (for ``failed``, the gateway's words and what to do). ``request_ref`` is None for a
    request refused before it was made.
    """

    row: int
    case_ref: str
    partner: str
    outcome: str
    reason: str
    request_ref: str | None = None


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
    """What a batch did. ``interrupted`` means it stopped early on request (Ctrl-C);
    ``aborted`` that it was a second Ctrl-C, which broke the case in hand off.

    ``counts`` has one entry per request of the valid rows, by :class:`Outcome`: ``sent``
    (by this run), ``already_sent`` (recorded sent by an earlier or a concurrent run),
    ``in_flight`` (another live run was still sending it when this one stopped waiting),
    ``unconfirmed`` (this run's, or left so by an earlier run; also the one a second Ctrl-C
    caught in the gateway's hands, whose outcome the log does not hold), ``failed``,
    ``rejected`` (refused before sending), ``not_started`` (:data:`NOT_STARTED`: not reached
    before the batch was stopped), ``dry_run``.
    """

    problems: list[RowProblem] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)
    #: (row, case reference, reason) of each case refused while sending.
    refused: list[tuple[int, str, str]] = field(default_factory=list)
    #: (row, case reference, partner, request reference) of each unconfirmed request.
    unconfirmed: list[tuple[int, str, str, str]] = field(default_factory=list)
    #: Every request not recorded sent (refused, failed, unconfirmed, in flight elsewhere),
    #: one each, with its reason: what a person acts on.
    unsent: list[UnsentRequest] = field(default_factory=list)
    interrupted: bool = False
    aborted: bool = False
    validated_rows: int = 0

    @property
    def all_sent(self) -> bool:
        """Every request of every row is recorded sent (by this run or another)."""
        not_sent = sum(
            n for k, n in self.counts.items() if k not in (Outcome.SENT, Outcome.SKIPPED)
        )
        return not_sent == 0 and not self.problems and not self.interrupted


def _csv_row_to_case(row: dict[str | None, Any], source: str, header: int) -> dict[str, Any]:
    # csv.DictReader puts the cells beyond the header's under the key None: an unquoted
    # comma (in an address, say) shifts every later cell, so no field's value can be trusted.
    extra = row.get(None)
    if extra:
        raise CaseFileError(
            f"{source} has {header + len(extra)} fields, the header has {header}: a comma "
            "inside a cell (an address, the concerns) was not quoted; put that cell in "
            "double quotes",
        )
    missing = [c for c in CSV_COLUMNS if c not in row and c not in _OPTIONAL_CSV]
    if missing:
        raise CaseFileError(
            f"{source}: no column {missing[0]!r}; see the README's CSV columns",
            field=missing[0],
        )
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


def _blank_row(row: dict[str | None, Any]) -> bool:
    """Every cell of the CSV row is empty or spaces (cells beyond the header too)."""
    cells: list[Any] = []
    for key, value in row.items():
        cells.extend(value if key is None and isinstance(value, list) else [value])
    return all(not (cell or "").strip() for cell in cells)


class BatchEncodingError(InputError):
    """The batch file is not in the encoding it was read with.

    ``encoding`` is the one tried; ``suggestion`` an encoding the file does decode in
    (``cp1252`` for a Windows/Excel export), or None.
    """

    default_reason = "encoding"

    def __init__(self, message: str, *, encoding: str, suggestion: str | None) -> None:
        super().__init__(message, field="encoding")
        self.encoding = encoding
        self.suggestion = suggestion


def check_encoding(encoding: str) -> str:
    """The codec to read a batch with; InputError for a name Python does not know.

    Any spelling of UTF-8 reads with or without a byte-order mark.
    """
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise BatchEncodingError(
            f"unknown text encoding {encoding!r}; use e.g. utf-8 or cp1252",
            encoding=encoding,
            suggestion=None,
        ) from None
    return DEFAULT_ENCODING if name in ("utf-8", "utf-8-sig") else name


def _encoding_error(path: Path, encoding: str) -> BatchEncodingError:
    """Where the file stops decoding, and the encoding it most likely is in."""
    raw = path.read_bytes()
    try:
        raw.decode(encoding)
        where = ""
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        where = f" (byte 0x{raw[exc.start]:02x} on line {line})"
    shown = "UTF-8" if encoding == DEFAULT_ENCODING else encoding
    suggestion = None
    for candidate in ("cp1252",):
        if candidate == encoding:
            continue
        try:
            raw.decode(candidate)
        except UnicodeDecodeError:
            continue
        suggestion = candidate
    if suggestion:
        advice = (
            f"it reads as {suggestion} (Windows-1252), which Excel's 'CSV (Comma delimited)' "
            f"writes: read it with the encoding {suggestion}, or save it from Excel as "
            "'CSV UTF-8 (Comma delimited)'"
        )
    else:
        advice = "give the encoding it was saved in, or save it as UTF-8"
    return BatchEncodingError(
        f"batch file {path}: is not {shown} text{where}; {advice}",
        encoding=encoding,
        suggestion=suggestion,
    )


def read_rows(
    path: Path, *, encoding: str = DEFAULT_ENCODING
) -> Iterator[tuple[int, dict[str, Any] | CaseFileError]]:
    """Stream ``(row number, case data or the error that row has)`` from a batch file."""
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".ndjson", ".csv"):
        raise InputError(
            f"batch file {path}: expected a .jsonl or .csv file", reason="batch_unreadable"
        )
    codec = check_encoding(encoding)
    try:
        # Only a regular file: a named pipe would wait for a writer forever.
        handle = io.TextIOWrapper(open_regular_file(path), encoding=codec, newline="")
    except NotRegularFileError as exc:
        raise InputError(
            f"batch file {path}: {exc.strerror}; give a .jsonl or .csv file",
            reason="batch_unreadable",
        ) from None
    except OSError as exc:
        raise InputError(
            f"batch file {path}: cannot be read ({exc.strerror})", reason="batch_unreadable"
        ) from exc
    with handle:
        try:
            if suffix == ".csv":
                reader = csv.DictReader(handle)
                header = set(reader.fieldnames or ())
                width = len(reader.fieldnames or ())
                missing = [c for c in CSV_COLUMNS if c not in header and c not in _OPTIONAL_CSV]
                if missing:
                    raise InputError(
                        f"batch file {path}: the header has no column {', '.join(missing)}; "
                        "see the README's batch file columns",
                        reason="batch_unreadable",
                        field=missing[0],
                    )
                for number, row in enumerate(reader, start=2):  # row 1 is the header
                    if _blank_row(row):
                        continue  # Excel leaves rows of empty cells after the last case
                    source = f"{path} row {number}"
                    try:
                        yield number, _csv_row_to_case(row, source, width)
                    except CaseFileError as exc:
                        yield number, exc
                return
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    data = decode_case_json(line, source=f"{path} row {number}", one_line=True)
                except CaseFileError as exc:
                    yield number, exc
                else:
                    yield number, data
        except UnicodeDecodeError:
            raise _encoding_error(path, codec) from None
        except csv.Error as exc:
            raise InputError(
                f"batch file {path}: not readable as CSV ({exc}); check for an unclosed quote",
                reason="batch_unreadable",
            ) from None


class _Source:
    """Where a batch's cases come from: a file (streamed) or cases given in memory."""

    def __init__(
        self,
        source: Path | str | os.PathLike[str] | Iterable[CaseLike],
        *,
        encoding: str,
        base_dir: Path | None,
    ) -> None:
        self.path: Path | None = None
        self.cases: list[CaseLike] = []
        if isinstance(source, str | os.PathLike):
            self.path = Path(source)
            check_encoding(encoding)
        else:
            self.cases = list(source)
        self.encoding = encoding
        self.base_dir = base_dir

    def name(self, number: int) -> str:
        return f"{self.path} row {number}" if self.path is not None else f"case {number}"

    def rows(self) -> Iterator[tuple[int, Any]]:
        if self.path is not None:
            yield from read_rows(self.path, encoding=self.encoding)
        else:
            yield from enumerate(self.cases, start=1)

    def case(self, number: int, data: Any) -> Case:
        """The row's case, validated (InputError naming the row otherwise)."""
        if isinstance(data, CaseFileError):
            raise data
        if self.path is not None:
            return parse_case(data, source=self.name(number), base_dir=self.path.parent)
        try:
            return as_case(data, base_dir=self.base_dir)
        except CaseFileError as exc:
            raise CaseFileError(f"{self.name(number)}: {exc}", field=exc.field) from None


def _validate_row(settings: Settings, source: _Source, number: int, data: Any) -> Case:
    case = source.case(number, data)
    where = source.name(number)
    for key in case.partners:
        settings.directory.get(key)
    if not case.partners:
        raise RecipientError(f"{where}: no partners listed", reason="no_partners", field="partners")
    if case.referral_form is None:
        raise InputError(
            f"{where}: no referral_form; every request needs one",
            reason="no_form",
            field="referral_form",
        )
    if case.referral_form.exists() and not case.referral_form.is_file():
        raise InputError(
            f"{where}: referral form {case.referral_form} is not a file (a folder, a named "
            "pipe or a device); check the referral_form path",
            reason="no_form",
            field="referral_form",
        )
    if not case.referral_form.is_file():
        raise InputError(
            f"{where}: referral form {case.referral_form} not found; check the "
            "referral_form path (relative to the batch file)",
            reason="no_form",
            field="referral_form",
        )
    return case


def _log_ref(data: Any) -> str:
    if isinstance(data, Case):
        return case_ref_for_log({"case_ref": data.case_ref})
    return case_ref_for_log(dict(data) if isinstance(data, dict) else data)


def validate_batch(
    settings: Settings,
    path: Path,
    *,
    encoding: str = DEFAULT_ENCODING,
) -> tuple[list[RowProblem], int, int]:
    """Check every row; return the problems, the number of valid rows and their requests."""
    return _validate(settings, _Source(path, encoding=encoding, base_dir=None))


def _validate(settings: Settings, source: _Source) -> tuple[list[RowProblem], int, int]:
    problems: list[RowProblem] = []
    valid = requests = 0
    for number, data in source.rows():
        try:
            case = _validate_row(settings, source, number, data)
        except InputError as exc:
            problems.append(RowProblem(number, str(exc), _log_ref(data)))
            continue
        valid += 1
        requests += len(case.partners)
    return problems, valid, requests


class _Abort(KeyboardInterrupt):
    """A second Ctrl-C (in a worker, also the parent's SIGTERM) while a case is in hand.

    A KeyboardInterrupt, so that nothing that catches Exception swallows it: the dispatcher
    records the outcomes it already has, and the log settles the rest (claims.py).
    """


class _StopFlag:
    """Ctrl-C finishes the case in hand, logs it, then stops; a second Ctrl-C stops at once.

    At once: inside :meth:`in_hand` (the dispatcher sending a case) :class:`_Abort` breaks
    the case off where it stands; elsewhere ``abort`` is set and the loop stops before the
    next case. Ctrl-C after that is ignored, so that the summary of what the log holds is
    still made. With ``terminate`` (a worker) SIGTERM, which the parent sends when it was
    stopped at once, is a second Ctrl-C.
    """

    def __init__(self, *, terminate: bool = False) -> None:
        self.stop = False
        self.abort = False
        self._in_hand = False
        self._signals = [signal.SIGINT] + ([signal.SIGTERM] if terminate else [])
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        for number in self._signals:
            try:
                self._previous[number] = signal.signal(number, self._handle)
            except ValueError:  # not the main thread: no handler, Ctrl-C behaves as usual
                break
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.stop or signum != signal.SIGINT:
            self.abort_now()
        self.stop = True

    def abort_now(self) -> None:
        """Stop at once: break off the case in hand, if there is one."""
        if self.abort:
            return
        self.stop = self.abort = True
        if self._in_hand:
            self._in_hand = False
            raise _Abort

    @contextmanager
    def in_hand(self) -> Iterator[None]:
        """A case being sent, which a second Ctrl-C breaks off."""
        self._in_hand = not self.abort
        try:
            yield
        finally:
            self._in_hand = False

    def __exit__(self, *exc: object) -> None:
        for number, previous in self._previous.items():
            if previous is not None:
                signal.signal(number, previous)


class _Run:
    """One pass of sending: counts every request once, when its outcome is final."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        result: BatchResult,
        state: BatchProgress,
        *,
        dry_run: bool,
    ) -> None:
        self.dispatcher = dispatcher
        self.result = result
        self.state = state
        self.dry_run = dry_run
        #: The row of the case in hand (0 before the first), for an error's message.
        self.row = 0

    def count(self, outcome: str, n: int = 1) -> None:
        self.result.counts[outcome] += n
        self.state.counts[outcome] += n
        self.state.done += n

    def send(
        self,
        number: int,
        case: Case,
        partners: Sequence[str] | None,
        *,
        final: bool,
        flag: _StopFlag | None = None,
    ) -> list[str]:
        """Send a case (or some of its partners); return the partners another live run
        holds, which are counted only when ``final``.

        A second Ctrl-C (``flag``) breaks the case off: its requests are counted as the log
        holds them (:meth:`count_from_log`) and :class:`_Abort` is raised again.
        """
        asked = list(partners) if partners else list(case.partners)
        self.row = number
        try:
            with flag.in_hand() if flag is not None else nullcontext():
                outcome = self.dispatcher.send_case(
                    case, partners, dry_run=self.dry_run, skip_sent=True
                )
        except _Abort:
            self.result.interrupted = self.result.aborted = True
            self.count_from_log(number, case, asked)
            raise
        except InputError as exc:
            self.count(Outcome.REJECTED, len(asked))
            self.result.refusals[exc.reason] += len(asked)
            self.result.refused.append((number, case.case_ref, exc.reason))
            self.result.unsent.extend(
                UnsentRequest(number, case.case_ref, partner, str(Outcome.REJECTED), exc.reason)
                for partner in asked
            )
            return []
        held = []
        for request in outcome.outcomes:
            if request.outcome is Outcome.IN_FLIGHT and not final:
                held.append(request.partner)
                continue
            if request.outcome is Outcome.UNCONFIRMED:
                self.result.unconfirmed.append(
                    (number, case.case_ref, request.partner, request.request_ref or "-")
                )
            if request.outcome not in (Outcome.SENT, Outcome.SKIPPED, Outcome.DRY_RUN):
                self.result.unsent.append(
                    UnsentRequest(
                        number,
                        case.case_ref,
                        request.partner,
                        str(request.outcome),
                        request.reason,
                        request.request_ref,
                    )
                )
            self.count(request.outcome)
        return held

    def count_from_log(
        self, number: int, case: Case, partners: Sequence[str], *, own_run: bool = True
    ) -> None:
        """Count requests of a case this run did not see to the end, as the log holds them.

        For the case a second Ctrl-C broke off (``own_run``: the events of this run are told
        apart), and the cases stopped workers never reported. Only reads the log.
        """
        standings = self._standings(case, partners)
        run = None
        if own_run and any(s is not None and s.last is not None for s in standings):
            run = self.dispatcher.claims.run_details().get("run")
        for partner, standing in zip(partners, standings, strict=True):
            last = standing.last.event if standing is not None and standing.last else None
            ours = last is not None and run is not None and last.details.get("run") == run
            outcome, reason = (
                (NOT_STARTED, "") if standing is None else _logged_outcome(standing, ours)
            )
            ref = last.request_ref if last is not None and outcome != NOT_STARTED else None
            if outcome == Outcome.UNCONFIRMED:
                self.result.unconfirmed.append((number, case.case_ref, partner, ref or "-"))
            if outcome not in (Outcome.SENT, Outcome.SKIPPED, NOT_STARTED):
                self.result.unsent.append(
                    UnsentRequest(number, case.case_ref, partner, outcome, reason, ref)
                )
            self.count(outcome)

    def _standings(self, case: Case, partners: Sequence[str]) -> list[Standing | None]:
        """What the log says of each partner's request of ``case`` (None: not looked up)."""
        from mash_requests.dispatch import request_key
        from mash_requests.referral_form import read_form

        if self.dry_run or case.referral_form is None:
            return [None] * len(partners)
        try:
            sha256 = hashlib.sha256(read_form(case.referral_form)).hexdigest()
        except InputError:
            return [None] * len(partners)  # the form is gone: nothing was sent with it
        keys = [request_key(case, partner, sha256) for partner in partners]
        return list(self.dispatcher.claims.standings(keys))


def _logged_outcome(standing: Standing, ours: bool) -> tuple[str, str]:
    """The count, and the reason, of a request the batch did not see to the end.

    What the log records sent is sent (by this run when ``ours``, else already sent); one
    handed to the gateway without an outcome, by this run or a dead one, is unconfirmed
    until the next run settles it; one another live run holds is in flight; one this run
    failed is failed; anything else (no step yet, or a claim never handed over) was not
    started, and the next run sends it.
    """
    last = standing.last.event if standing.last else None
    if last is None:
        return NOT_STARTED, ""
    if standing.state is State.SENT:
        mine = ours and last.kind is EventKind.SENT
        return str(Outcome.SENT if mine else Outcome.SKIPPED), ""
    if standing.state is State.UNCONFIRMED:
        return str(Outcome.UNCONFIRMED), last.reason or ""
    if standing.state is State.IN_FLIGHT:
        if not (ours or standing.abandoned):
            return str(Outcome.IN_FLIGHT), _HELD_ELSEWHERE
        if standing.handed_over:
            return str(Outcome.UNCONFIRMED), _STOPPED_IN_HAND
    if standing.state is State.RETRYABLE and ours and last.kind is EventKind.FAILED:
        return str(Outcome.FAILED), last.reason or ""
    return NOT_STARTED, ""


#: The reason given for a request a run stopped at once while the gateway had it.
_STOPPED_IN_HAND = (
    "handed to the gateway when its run was stopped at once: its outcome is not in the log. "
    "Run the same command again: it looks it up in Sent Items (outbox, EWS, Graph) or, over "
    "SMTP, records it unconfirmed for a person to check; it is never sent twice"
)
#: The reason given for a request another live run was sending when the batch stopped.
_HELD_ELSEWHERE = "another run was still sending it when this run was stopped"


class BatchLogError(LogError):
    """The dispatch log failed during a batch. ``result`` holds what was counted before;
    ``error`` is the log's error (a SendLogError says what of the case went out)."""

    def __init__(self, error: LogError, result: BatchResult, row: int) -> None:
        where = (
            f"The batch stopped at row {row}; the cases it had finished are recorded and "
            "counted in the summary"
            if row
            else "The batch stopped before sending anything"
        )
        super().__init__(f"{error}. {where}")
        self.error = error
        self.result = result
        self.row = row


def send_batch(
    settings: Settings,
    source: Path | str | os.PathLike[str] | Iterable[CaseLike],
    *,
    skip_invalid: bool = False,
    dry_run: bool = False,
    progress: Callable[[BatchProgress], None] | None = None,
    dispatcher: Dispatcher | None = None,
    encoding: str = DEFAULT_ENCODING,
    base_dir: Path | None = None,
    workers: int = 1,
) -> BatchResult:
    """Validate then send every case of a batch file, or of an iterable of cases; resumable.

    See the module docstring. Raises InputError, before sending anything, when the file has
    bad rows and ``skip_invalid`` is false (``.problems`` of the error's result lists them:
    catch :class:`BatchInvalidError`), or cannot be read (:class:`BatchEncodingError` when
    it is not in ``encoding``). Raises :class:`BatchLogError` if the log fails mid-way.

    ``workers`` > 1 sends with that many processes, each a run of its own sharing the log
    (:mod:`mash_requests.workers`); ``progress`` is then called in this process. The
    settings and cases must pickle; a ``dispatcher`` cannot be given.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if workers > 1 and dispatcher is not None:
        raise ValueError("a dispatcher cannot be shared by worker processes; use workers=1")
    where = _Source(source, encoding=encoding, base_dir=base_dir)
    problems, valid, total = _validate(settings, where)
    result = BatchResult(problems=problems, validated_rows=valid)
    owned = dispatcher is None
    dispatcher = dispatcher or Dispatcher(settings)
    run = _Run(dispatcher, result, BatchProgress(total_requests=total), dry_run=dry_run)
    # Until this returns, Ctrl-C stops the batch (a second one at once), and what the log
    # holds is still counted: also when it comes while the batch is being closed.
    with _StopFlag() as flag:
        try:
            for problem in problems:
                if not dry_run:
                    dispatcher.log_rejection(
                        case_ref=problem.case_ref,
                        partners=[],
                        reason="invalid_case",
                        detail=problem.message,
                        source=where.name(problem.row),
                    )
            if problems and not skip_invalid:
                raise BatchInvalidError(result)
            if workers > 1:
                _send_with_workers(settings, where, run, flag, workers, progress)
            else:
                cases = _valid_cases(settings, where)
                if valid >= CHECK_AHEAD_FROM:
                    cases = _checked_ahead(cases, dispatcher)
                _send_in_this_process(cases, run, flag, progress)
            _not_started(run)
        except BatchLogError:
            raise
        except LogError as exc:
            raise BatchLogError(exc, result, run.row) from exc
        finally:
            if owned:
                dispatcher.close()
            else:
                dispatcher.stop_checking_ahead()
    return result


def _send_in_this_process(
    cases: Iterator[tuple[int, Case]],
    run: _Run,
    flag: _StopFlag,
    progress: Callable[[BatchProgress], None] | None,
) -> None:
    """Send the cases one by one; then those another live run was sending, waited for."""
    result = run.result
    # Cases with a request another live run is sending: come back to them at the end.
    later: list[tuple[int, Case, list[str]]] = []
    try:
        for number, case in cases:
            if flag.stop:
                result.interrupted = True
                break
            held = run.send(number, case, None, final=run.dry_run, flag=flag)
            if held:
                later.append((number, case, held))
            if progress is not None:
                progress(run.state)
        until = time.monotonic() + run.dispatcher.in_flight_wait
        while later and not flag.stop:
            final = time.monotonic() >= until
            waiting, later = later, []
            for index, (number, case, partners) in enumerate(waiting):
                try:
                    held = run.send(number, case, partners, final=final, flag=flag)
                except _Abort:
                    later.extend(waiting[index + 1 :])
                    raise
                if held:
                    later.append((number, case, held))
                if progress is not None:
                    progress(run.state)
            if later:
                time.sleep(0.5)
    except _Abort:
        pass  # the case in hand was counted as the log holds it (_Run.send)
    if flag.stop and (later or result.interrupted):
        result.interrupted = True
    # Stopped while another run was still sending some: counted as the log holds them.
    for number, case, partners in later:
        run.count_from_log(number, case, partners)


def _send_with_workers(
    settings: Settings,
    where: _Source,
    run: _Run,
    flag: _StopFlag,
    workers: int,
    progress: Callable[[BatchProgress], None] | None,
) -> None:
    """Send the cases with ``workers`` processes (:mod:`mash_requests.workers`)."""
    from mash_requests.workers import send_with_workers

    # The log (file, schema) is made here, once, before the workers open it: N processes
    # making a new SQLite log at the same moment can meet its locks.
    run.dispatcher.store  # noqa: B018

    result = run.result
    unreported = send_with_workers(
        settings,
        _valid_cases(settings, where),
        result,
        run.state,
        workers=workers,
        dry_run=run.dry_run,
        progress=progress,
        stop_requested=lambda: flag.stop,
        abort_requested=lambda: flag.abort,
    )
    result.aborted = result.aborted or (flag.abort and result.interrupted)
    # Cases given to workers that ended before reporting them: as the log holds them.
    for number, case, partners in unreported:
        run.count_from_log(number, case, partners or case.partners, own_run=False)
    result.refused.sort()
    result.unconfirmed.sort()
    result.unsent.sort()


def _not_started(run: _Run) -> None:
    """Count the valid rows' requests a stopped batch never reached, so that every request
    is in exactly one count."""
    left = run.state.total_requests - sum(run.result.counts.values())
    if run.result.interrupted and left > 0:
        run.count(NOT_STARTED, left)


#: A batch of at least this many cases checks forms ahead of need in a helper process,
#: which costs some 0.2 s to start: a form check costs some 5 to 15 ms.
CHECK_AHEAD_FROM = 16
#: How many cases ahead of the one being sent have their forms checked.
_CHECK_AHEAD_DEPTH = 3


def _checked_ahead(
    cases: Iterator[tuple[int, Case]], dispatcher: Dispatcher
) -> Iterator[tuple[int, Case]]:
    """The cases in turn, each one's form check started a few cases before it is sent."""
    window: deque[tuple[int, Case]] = deque()
    for item in cases:
        dispatcher.check_ahead(item[1])
        window.append(item)
        if len(window) > _CHECK_AHEAD_DEPTH:
            yield window.popleft()
    while window:
        yield window.popleft()


def _valid_cases(settings: Settings, where: _Source) -> Iterator[tuple[int, Case]]:
    """The valid rows' cases, streamed (bad rows were reported and logged already)."""
    for number, data in where.rows():
        try:
            yield number, _validate_row(settings, where, number, data)
        except InputError:
            continue


class BatchInvalidError(InputError):
    """The batch file has bad rows; nothing was sent. ``result.problems`` lists them."""

    default_reason = "batch_invalid"

    def __init__(self, result: BatchResult) -> None:
        count = len(result.problems)
        super().__init__(f"{count} bad row(s); nothing was sent")
        self.result = result
