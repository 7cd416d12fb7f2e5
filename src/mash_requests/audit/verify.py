"""Proving the dispatch log is as it was written: chain verification and checkpoints.

:func:`verify_chain` reads every stored row once, in ``seq`` order, in constant memory (a
large log in ranges, one process per CPU: see :mod:`~mash_requests.audit._parallel`), and
reports the first problem, naming the event and what happened to it:

- ``changed``: a record no longer matches its hash, or a column disagrees with its record;
- ``removed``: events are missing (a gap in ``seq``, or later events renumbered to hide one);
- ``inserted``: an event was slipped in and the events after it renumbered;
- ``reordered``: an event is stored at a position other than the one it was written at;
- ``hash mismatch``: an event does not link to the hash of the event before it (one of the two
  was altered and re-hashed), or the log disagrees with a checkpoint;
- ``outside the chain``: rows stored with a ``seq`` that is no chain position (0, negative,
  NULL): the log never writes one, so someone went around it. Readers leave them out;
- ``log tables``: the log's own small tables (``log_meta``, ``schema_migrations``) hold rows
  the log never writes;
- ``database``: the database's own consistency check (SQLite ``PRAGMA integrity_check``,
  PostgreSQL amcheck) found a table and its index disagreeing, or a damaged page. Readers
  find rows through indexes, so such a log may hide rows from a query even when every row
  verifies.

Every row of every table the log owns is either walked or named: the walk covers ``seq``
1..head one by one (a gap, a duplicate, a renumbered row is a break), and the rows outside
that range and the metadata rows are counted by the database afterwards.

Without an HMAC key, someone who can write the database could rebuild a whole consistent chain
from some point on; removing the newest events leaves no trace in the chain at all. A
:class:`Checkpoint` (count, seq and hash of the head, kept somewhere else: printed into the
case system, mailed to the DPO, committed to a repository) closes both gaps: verifying against
it proves the log still extends exactly that head. ``[log] hmac_key`` closes the first one too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mash_requests.audit._files import atomic_write_text
from mash_requests.audit._rows import (
    INDEXED_FIELDS,
    ChainRow,
    ChainSource,
    DatabaseCheck,
    VerifiedHead,
)
from mash_requests.audit.chain import (
    GENESIS_HASH,
    RECORD_VERSION,
    decode_record,
    format_time,
    parse_time,
)
from mash_requests.audit.events import EventStore
from mash_requests.errors import InputError, LogError

if TYPE_CHECKING:
    from mash_requests.audit._parallel import Verification

CHECKPOINT_FORMAT = "mash-requests dispatch-log checkpoint"
CHECKPOINT_VERSION = 1


class Break(StrEnum):
    """What is wrong at the first broken event."""

    CHANGED = "changed"
    REMOVED = "removed"
    INSERTED = "inserted"
    REORDERED = "reordered"
    HASH_MISMATCH = "hash mismatch"
    OUTSIDE = "outside the chain"
    TABLES = "log tables"
    DATABASE = "database"


#: Breaks found by the walk itself (at ``broken_seq``); the others are found beside it.
_CHAIN = frozenset(
    {Break.CHANGED, Break.REMOVED, Break.INSERTED, Break.REORDERED, Break.HASH_MISMATCH}
)


@dataclass(frozen=True)
class Checkpoint:
    """The head of an intact log at one moment: keep it away from the log itself."""

    #: Number of events in the log (equal to ``seq`` in an intact log).
    count: int
    #: ``seq`` of the newest event (0 for an empty log).
    seq: int
    #: Hash of the newest event (the genesis hash for an empty log).
    hash: str
    #: When the checkpoint was made (UTC).
    time: datetime


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of :func:`verify_chain`."""

    ok: bool
    #: Events read and found intact (all of them when ``ok``).
    count: int
    #: ``seq`` and hash of the last intact event (0 and the genesis hash when there is none).
    head_seq: int
    head_hash: str
    #: The first event that is not as written (None when ``ok``).
    broken_seq: int | None = None
    problem: Break | None = None
    #: One sentence saying what was found; never the content of an event.
    detail: str = ""
    #: The checkpoint the log was checked against, if any.
    checkpoint: Checkpoint | None = None
    #: Rows whose seq is no chain position (0, negative, NULL): how many, and the first few.
    outside_count: int = 0
    outside_seqs: tuple[int | None, ...] = ()
    #: Rows of the log's metadata tables that the log never writes, one sentence each.
    table_problems: tuple[str, ...] = ()
    #: The database's own consistency check, when it was asked for.
    database: DatabaseCheck | None = None
    #: The first seq walked by this verification (1, or the one after a verified head).
    verified_from: int = 1
    #: The stored verified head this verification started after, if it resumed.
    earlier: VerifiedHead | None = None

    def verified_upto(self) -> int:
        """The last seq this verification walked and found intact (before any break)."""
        if self.broken_seq is not None and self.problem in _CHAIN:
            return min(self.head_seq, self.broken_seq - 1)
        return self.head_seq

    def coverage_lines(self) -> list[str]:
        """What was verified now and what earlier, and when: for the report and the CLI."""
        upto = self.verified_upto()
        if upto >= self.verified_from:
            now = f"verified now: seq {self.verified_from}..{upto}"
        else:
            now = f"verified now: no event after seq {self.verified_from - 1}"
        lines = [now]
        e = self.earlier
        if e is not None:
            seal = (
                "HMAC-keyed: it cannot be placed or moved without the log's key"
                if e.keyed
                else "not keyed: anyone able to write the database could have placed it"
            )
            lines.append(
                f"verified earlier: seq 1..{e.seq} at {format_time(e.verified_at)} (stored "
                f"verified head, {seal}); those rows were not read again now: "
                "`mash-requests audit verify` reads every row"
            )
        return lines

    def summary(self) -> str:
        """One line for a person: intact with its head, or where and how it is broken."""
        text = self._chain_summary()
        failed = self.database is not None and self.database.ran and not self.database.ok
        also = [
            problem
            for problem in (
                self.outside_detail(),
                *self.table_problems,
                self.database.summary() if self.database is not None and failed else "",
            )
            if problem and problem != self.detail
        ]
        return "; also ".join([text, *also])

    def to_json(self, location: str = "") -> dict[str, Any]:
        """The result as one JSON object (``audit verify --json``; shape in the README)."""
        upto = self.verified_upto()
        e, cp, db = self.earlier, self.checkpoint, self.database
        return {
            "log": location,
            "status": "intact" if self.ok else "broken",
            "intact": self.ok,
            "events": self.count,
            "head": {"seq": self.head_seq, "hash": self.head_hash},
            "verified_now": (
                {"from": self.verified_from, "to": upto} if upto >= self.verified_from else None
            ),
            "verified_earlier": (
                {"from": 1, "to": e.seq, "at": format_time(e.verified_at), "keyed": e.keyed}
                if e is not None
                else None
            ),
            "break": (
                {"seq": self.broken_seq, "problem": str(self.problem), "detail": self.detail}
                if not self.ok
                else None
            ),
            "rows_outside_chain": {"count": self.outside_count, "seqs": list(self.outside_seqs)},
            "log_table_problems": list(self.table_problems),
            "database_check": (
                {
                    "ran": db.ran,
                    "ok": db.ok,
                    "method": db.method,
                    "findings": list(db.findings),
                    "note": db.note,
                }
                if db is not None
                else None
            ),
            "checkpoint": (
                {"seq": cp.seq, "count": cp.count, "hash": cp.hash, "time": format_time(cp.time)}
                if cp is not None
                else None
            ),
        }

    def lines(self) -> list[str]:
        """What a person reads: :meth:`summary`, what was verified now and earlier, then the
        database check, if run."""
        lines = [self.summary()]
        if self.earlier is not None:
            lines.extend(self.coverage_lines())
        if self.database is not None and (self.database.ok or not self.database.ran):
            lines.append(self.database.summary())
        return lines

    def outside_detail(self) -> str:
        """The sentence naming the rows outside the chain ("" when there are none)."""
        if not self.outside_count:
            return ""
        seqs = ", ".join("NULL" if seq is None else str(seq) for seq in self.outside_seqs)
        more = ", …" if self.outside_count > len(self.outside_seqs) else ""
        return (
            f"{self.outside_count} row(s) stored with a seq outside the chain 1..{self.head_seq} "
            f"(seq {seqs}{more}): not written by the log; audit query and the report leave them out"
        )

    def _chain_summary(self) -> str:
        if self.ok:
            against = (
                f"; extends the checkpoint of {format_time(self.checkpoint.time)} "
                f"(seq {self.checkpoint.seq})"
                if self.checkpoint
                else ""
            )
            head = f"head seq {self.head_seq} hash {self.head_hash}"
            if self.earlier is not None:
                e = self.earlier
                split = (
                    f" (seq {self.verified_from}..{self.head_seq} verified now, 1..{e.seq} "
                    f"verified earlier at {format_time(e.verified_at)})"
                    if self.head_seq >= self.verified_from
                    else f" (all verified earlier at {format_time(e.verified_at)})"
                )
                return f"intact: {self.count} events{split}, {head}{against}"
            return f"intact: {self.count} events, {head}{against}"
        where = f" at seq {self.broken_seq}" if self.broken_seq is not None else ""
        return f"BROKEN{where} ({self.problem}): {self.detail}"


def row_at(source: ChainSource, seq: int) -> ChainRow | None:
    """The chain's row at ``seq``, if there is one."""
    rows = source.chain_rows(seq - 1, seq)
    try:
        row = next(rows, None)
    finally:
        _close(rows)
    return row if row is not None and row.seq == seq else None


def against_stored_heads(
    source: ChainSource, walked: VerifyResult, head: VerifiedHead | None
) -> VerifyResult:
    """``walked`` (an intact walk) broken if the log no longer holds what a verification
    stored in it: ``head``, the furthest verified head stored when the walk began (one
    stored meanwhile, by a verification running beside this one, may be past where this
    walk ended), must still be there, with its hash.

    Without this, removing the newest events leaves no trace in the chain, and a verify run
    afterwards would find the shorter log intact and store a head that hides the removal.
    A head the log's own writer could forge proves nothing against a rewrite (see the module
    docstring); under an HMAC key it cannot be placed or moved without the key.
    """
    if not walked.ok or head is None:
        return walked
    when = format_time(head.verified_at)
    if head.seq > walked.head_seq:
        return replace(
            walked,
            ok=False,
            broken_seq=walked.head_seq + 1,
            problem=Break.REMOVED,
            detail=f"the log ends at seq {walked.head_seq} but the verification of {when} "
            f"recorded seq {head.seq}: the newest events were removed",
        )
    row = row_at(source, head.seq)
    if row is None or row.hash != head.hash:
        # Intact only up to the event before the head: what comes after is rewritten.
        return replace(
            walked,
            ok=False,
            count=min(walked.count, head.seq - 1),
            head_seq=head.seq - 1,
            head_hash=row.prev_hash if row is not None else walked.head_hash,
            broken_seq=head.seq,
            problem=Break.HASH_MISMATCH,
            detail=f"event {head.seq} differs from the verification of {when}: the log was "
            "rewritten up to here",
        )
    return walked


def account_for_every_row(
    source: ChainSource, result: VerifyResult, database: DatabaseCheck | None = None
) -> VerifyResult:
    """``result`` with the rows the walk cannot reach named (seq outside 1..head, metadata)
    and the database's own check, if one was run.

    The walk reads ``seq`` > 0 in order and breaks on any gap, duplicate or renumbering in
    it, so together with these counts every row of every table the log owns is either
    verified or reported. Both are cheap: an index seek and two tiny tables.
    """
    count, seqs = source.rows_outside_chain()
    problems = source.log_table_problems()
    damaged = database is not None and database.ran and not database.ok
    if not count and not problems and not damaged:
        return replace(result, database=database) if database is not None else result
    changes: dict[str, Any] = {
        "outside_count": count,
        "outside_seqs": seqs,
        "table_problems": problems,
        "database": database,
        "ok": False,
    }
    if result.ok:
        marked = replace(result, **changes)
        if count:
            changes.update(
                broken_seq=seqs[0] if seqs else None,
                problem=Break.OUTSIDE,
                detail=marked.outside_detail(),
            )
        elif problems:
            changes.update(broken_seq=None, problem=Break.TABLES, detail=problems[0])
        else:
            assert database is not None
            changes.update(broken_seq=None, problem=Break.DATABASE, detail=database.summary())
    return replace(result, **changes)


def verify_chain(
    store: EventStore,
    *,
    checkpoint: Checkpoint | None = None,
    workers: int | None = None,
    check_database: bool = True,
    record: bool = False,
) -> VerifyResult:
    """Check every event's hash, seq and link, and (optionally) that ``checkpoint`` still holds.

    Streams the log in ``seq`` order with constant memory. A log of 100,000 events or more is
    split into ranges walked side by side by ``workers`` processes (default: one per CPU, at
    most 4; ``workers=1``: this process alone); the result is the same either way. With
    ``check_database`` the database's own consistency check runs meanwhile, in a thread (on
    SQLite it reads the whole file: the longest part on a large log). Raises LogError when
    the log cannot be read; a log that is readable but not intact is a result, not an
    exception. With ``record`` an intact result is stored in the log as a verified head that
    later reports start from (see :func:`start_verification`).
    """
    return start_verification(
        store,
        checkpoint=checkpoint,
        workers=workers,
        check_database=check_database,
        record=record,
    ).result()


def start_verification(
    store: EventStore,
    *,
    checkpoint: Checkpoint | None = None,
    workers: int | None = None,
    walk_first_here: bool = True,
    check_database: bool = False,
    resume: bool = False,
    record: bool = False,
) -> Verification:
    """Start :func:`verify_chain`'s work and return at once; ``.result()`` waits for it.

    With ``walk_first_here=False`` every range goes to a worker process, so this one is free
    for other work meanwhile (the report tallies its period). With ``resume`` (and no
    ``checkpoint``) the walk starts after the newest stored verified head whose row still
    holds its hash, and the result says what it verified now and what earlier, and when
    (``verified_from``, ``earlier``, :meth:`VerifyResult.coverage_lines`); rows outside the
    chain and the metadata tables are still all checked. With ``record`` an intact result
    is stored as a new verified head. Close the returned object if its result is never
    asked for.
    """
    from mash_requests.audit._parallel import Verification

    if not isinstance(store, ChainSource):
        raise TypeError(f"{type(store).__name__} does not expose its rows for verification")
    return Verification(
        store,
        checkpoint,
        workers=workers,
        walk_first_here=walk_first_here,
        check_database=check_database,
        resume=resume,
        record=record,
    )


class _Verifier:
    """Walks the chain in ``seq`` order, keeping the head reached so far.

    Every row goes through a fast check first (:meth:`_walk_fast`): the row passes only if
    every check of :meth:`_check` would pass. Any other row is read again exactly as stored
    and judged by :meth:`_check`, so what is reported about a broken or unusual row never
    depends on the fast path. :meth:`walk` covers a range of ``seq``, so that ranges can be
    walked side by side.
    """

    def __init__(
        self, source: ChainSource, checkpoint: Checkpoint | None, *, fast: bool = True
    ) -> None:
        self.source = source
        self.chain = source.chain
        self.checkpoint = checkpoint
        #: False: judge every row with :meth:`_check` (the reference the tests compare with).
        self.fast = fast
        #: Rows the fast check did not pass and :meth:`_check` judged (tests look at it).
        self.judged_exactly = 0
        self.count = 0
        self.head_seq = 0
        self.head_hash = GENESIS_HASH
        # Hash of the event before the head: recognises an event slipped in just before.
        self.before_head_hash: str | None = None

    def begin_at(self, seq: int, hash_: str, before: str | None, count: int) -> None:
        """Start after a verified head (``count`` events up to ``seq``) instead of the start."""
        self.head_seq, self.head_hash, self.before_head_hash, self.count = (
            seq,
            hash_,
            before,
            count,
        )

    def run(self) -> VerifyResult:
        broken = self.walk(self.head_seq, None)
        return broken if broken is not None else self.finish()

    def finish(self) -> VerifyResult:
        """The result once every row was walked without a break: checks the checkpoint's end."""
        cp = self.checkpoint
        if cp is not None and self.head_seq < cp.seq:
            return self._broken(
                self.head_seq + 1,
                Break.REMOVED,
                f"the log ends at seq {self.head_seq} but the checkpoint of "
                f"{format_time(cp.time)} recorded seq {cp.seq}: the newest events were removed",
            )
        return VerifyResult(
            ok=True,
            count=self.count,
            head_seq=self.head_seq,
            head_hash=self.head_hash,
            checkpoint=cp,
        )

    def walk(self, after_seq: int, upto_seq: int | None) -> VerifyResult | None:
        """Check the rows with ``after_seq < seq <= upto_seq`` (None: to the end) from the head.

        Returns the first break, or None with the head moved to the last row. If the fast read
        itself fails (SQLite refuses to render a BLOB column as JSON), the rest of the range
        is read the exact way, whose LogError then says what cannot be read.
        """
        if not self.fast:
            return self._walk_exact(after_seq, upto_seq)
        try:
            return self._walk_fast(after_seq, upto_seq)
        except LogError:
            return self._walk_exact(self.head_seq, upto_seq)

    def _advance(self, seq: int, hash_: str) -> None:
        self.before_head_hash = self.head_hash
        self.count += 1
        self.head_seq = seq
        self.head_hash = hash_

    def _walk_fast(self, after_seq: int, upto_seq: int | None) -> VerifyResult | None:
        batches = self.source.chain_batches(after_seq, upto_seq)
        passes = (
            self._pass_checked_rows if self.source.columns_checked_in_database else self._pass_rows
        )
        try:
            for batch in batches:
                index = passes(batch, 0)
                while index < len(batch):
                    # batch[index] did not pass: judge it as stored, then go on after it.
                    seq = batch[index][0]
                    if seq <= self.head_seq:
                        # Rows come in seq order from after the head: this seq was just
                        # walked, so it is stored twice (possible once a key is dropped).
                        return self._broken(seq, Break.REORDERED, f"seq {seq} is stored twice")
                    broken = self._check_next_exactly()
                    if broken is not None:
                        return broken
                    index = passes(batch, index + 1)
        finally:
            _close(batches)
        return None

    def _pass_checked_rows(self, batch: list[tuple[Any, ...]], start: int) -> int:
        """Move the head over the rows from ``start`` that pass; the index of the first that
        does not. Rows are ``(seq, record bytes, hash, prev_hash, agrees)``, where the
        database compared the record's v, seq, prev_hash, recorded_at and indexed fields
        with the columns."""
        digest = self.chain.digest
        cp_seq = self.checkpoint.seq if self.checkpoint is not None else -1
        head_seq, head_hash, before, count = (
            self.head_seq,
            self.head_hash,
            self.before_head_hash,
            self.count,
        )
        try:
            for index in range(start, len(batch)):
                seq, record, hash_, prev_hash, agrees = batch[index]
                if not (
                    agrees
                    and seq == head_seq + 1
                    and prev_hash == head_hash
                    and seq != cp_seq
                    and digest(record) == hash_
                ):
                    return index
                before, head_seq, head_hash, count = head_hash, seq, hash_, count + 1
            return len(batch)
        finally:
            self.head_seq, self.head_hash, self.before_head_hash, self.count = (
                head_seq,
                head_hash,
                before,
                count,
            )

    def _pass_rows(self, batch: list[tuple[Any, ...]], start: int) -> int:
        """As :meth:`_pass_checked_rows`, for rows ``(seq, record text, hash, prev_hash,
        recorded_at text, *indexed)`` whose record is compared with the columns here."""
        digest = self.chain.digest
        cp_seq = self.checkpoint.seq if self.checkpoint is not None else -1
        loads = _RAW_DECODE
        fields = INDEXED_FIELDS
        head_seq, head_hash, before, count = (
            self.head_seq,
            self.head_hash,
            self.before_head_hash,
            self.count,
        )
        try:
            for index in range(start, len(batch)):
                row = batch[index]
                seq = row[0]
                if not (
                    seq == head_seq + 1
                    and row[3] == head_hash
                    and seq != cp_seq
                    and _agrees(row, loads, fields)
                    and digest(row[1].encode("utf-8")) == row[2]
                ):
                    return index
                before, head_seq, head_hash, count = head_hash, seq, row[2], count + 1
            return len(batch)
        finally:
            self.head_seq, self.head_hash, self.before_head_hash, self.count = (
                head_seq,
                head_hash,
                before,
                count,
            )

    def _check_next_exactly(self) -> VerifyResult | None:
        """Read the row after the head as stored and judge it with :meth:`_check`."""
        self.judged_exactly += 1
        stream = self.source.chain_rows(after_seq=self.head_seq)
        try:
            rows = _Peekable(stream)
            row = next(rows, None)
            if row is None:  # it went away meanwhile: nothing left to judge here
                return None
            broken = self._check(row, rows)
            if broken is None:
                self._advance(row.seq, row.hash)
            return broken
        finally:
            _close(stream)

    def _walk_exact(self, after_seq: int, upto_seq: int | None) -> VerifyResult | None:
        # Unbounded above, so that a renumbered row at the end of the range can look at the next.
        stream = self.source.chain_rows(after_seq=after_seq)
        try:
            rows = _Peekable(stream)
            for row in rows:
                if upto_seq is not None and row.seq > upto_seq:
                    return None
                broken = self._check(row, rows)
                if broken is not None:
                    return broken
                self._advance(row.seq, row.hash)
            return None
        finally:
            _close(stream)

    def _check(self, row: ChainRow, rows: _Peekable) -> VerifyResult | None:
        expected = self.head_seq + 1
        if row.seq > expected:
            missing = (
                f"event {expected} is"
                if row.seq == expected + 1
                else (f"events {expected} to {row.seq - 1} are")
            )
            return self._broken(expected, Break.REMOVED, f"{missing} missing (gap in seq)")
        if row.seq < expected:
            return self._broken(row.seq, Break.REORDERED, f"seq {row.seq} is stored twice")
        try:
            if not isinstance(row.record, str):  # e.g. rewritten as a BLOB in SQLite
                raise TypeError("a record is text")
            document = decode_record(row.record)
        except (ValueError, TypeError):
            return self._broken(row.seq, Break.CHANGED, "the stored record is not readable")
        if self.chain.digest(row.record.encode("utf-8")) != row.hash:
            return self._broken(
                row.seq, Break.CHANGED, "the record does not match its hash (edited after writing)"
            )
        written_seq = document.get("seq")
        if written_seq != row.seq:
            return self._renumbered(row, document, rows)
        mismatch = _column_mismatch(row, document)
        if mismatch:
            return self._broken(
                row.seq,
                Break.CHANGED,
                f"column {mismatch} disagrees with the hashed record (edited after writing)",
            )
        if document["prev_hash"] != self.head_hash:
            return self._broken(
                row.seq,
                Break.HASH_MISMATCH,
                f"event {row.seq} does not link to the hash of event {self.head_seq}: one of "
                "them was changed and re-hashed, or events between them were replaced",
            )
        cp = self.checkpoint
        if cp is not None and row.seq == cp.seq and row.hash != cp.hash:
            return self._broken(
                row.seq,
                Break.HASH_MISMATCH,
                f"event {row.seq} differs from the checkpoint of {format_time(cp.time)}: "
                "the log was rewritten up to here",
            )
        return None

    def _renumbered(self, row: ChainRow, document: dict[str, Any], rows: _Peekable) -> VerifyResult:
        """An intact record stored under another seq: find out which tampering explains it."""
        written = document.get("seq")
        if not isinstance(written, int):
            return self._broken(row.seq, Break.CHANGED, "the stored record has no valid seq")
        if written == row.seq - 1 and document.get("prev_hash") == self.before_head_hash:
            return self._broken(
                self.head_seq,
                Break.INSERTED,
                f"event {self.head_seq} was inserted: the event after it was written as "
                f"{written} and links to the event before it",
            )
        if written > row.seq:
            following = rows.peek()
            offset = written - row.seq
            if following is None or _written_seq(following) == following.seq + offset:
                return self._broken(
                    row.seq,
                    Break.REMOVED,
                    f"the event stored as {row.seq} was written as {written}: "
                    f"{offset} event(s) were removed and later ones renumbered",
                )
        return self._broken(
            row.seq,
            Break.REORDERED,
            f"the event stored as {row.seq} was written as {written}",
        )

    def _broken(self, seq: int, problem: Break, detail: str) -> VerifyResult:
        return VerifyResult(
            ok=False,
            count=self.count,
            head_seq=self.head_seq,
            head_hash=self.head_hash,
            broken_seq=seq,
            problem=problem,
            detail=detail,
            checkpoint=self.checkpoint,
        )


#: json.loads without its whitespace handling (~20% quicker): a record with whitespace around
#: it, which json.loads would accept, simply goes to the full check.
_RAW_DECODE = json.JSONDecoder().raw_decode


def _agrees(
    row: tuple[Any, ...], raw_decode: Callable[[str], tuple[Any, int]], fields: tuple[str, ...]
) -> bool:
    """Whether a ``(seq, record, hash, prev_hash, recorded_at, *indexed)`` row's record parses
    and says what its columns say: the same comparisons as :meth:`_Verifier._check`."""
    record = row[1]
    try:
        document, end = raw_decode(record)
    except (ValueError, TypeError):
        return False
    if end != len(record) or type(document) is not dict:
        return False
    event = document.get("event")
    return (
        type(event) is dict
        and document.get("v") == RECORD_VERSION
        and document.get("seq") == row[0]
        and document.get("prev_hash") == row[3]
        # None: the server left the time to format_time (see the PostgreSQL store).
        and row[4] is not None
        and document.get("recorded_at") == row[4]
        and tuple(map(event.get, fields)) == row[5:]
    )


def _close(stream: Iterator[Any]) -> None:
    close = getattr(stream, "close", None)
    if close is not None:
        close()


def _written_seq(row: ChainRow) -> int | None:
    try:
        value = decode_record(row.record).get("seq")
    except (ValueError, TypeError):
        return None
    return value if isinstance(value, int) else None


def _column_mismatch(row: ChainRow, document: dict[str, Any]) -> str | None:
    """The first stored column that differs from what the hashed record says, if any."""
    if row.prev_hash != document.get("prev_hash"):
        return "prev_hash"
    if row.recorded_at != document.get("recorded_at"):
        return "recorded_at"
    fields = document["event"]
    written = tuple(fields.get(name) for name in INDEXED_FIELDS)
    if written != row.columns:
        for name, stored, value in zip(INDEXED_FIELDS, row.columns, written, strict=True):
            if stored != value:
                return name
    return None


class _Peekable:
    """An iterator of rows that can look one row ahead."""

    def __init__(self, rows: Iterator[ChainRow]) -> None:
        self._rows = rows
        self._next: ChainRow | None = None

    def __iter__(self) -> _Peekable:
        return self

    def __next__(self) -> ChainRow:
        if self._next is not None:
            row, self._next = self._next, None
            return row
        return next(self._rows)

    def peek(self) -> ChainRow | None:
        if self._next is None:
            self._next = next(self._rows, None)
        return self._next


# -- checkpoints ---------------------------------------------------------------------------


def make_checkpoint(store: EventStore) -> Checkpoint:
    """Verify the whole log and return its head as a checkpoint.

    Raises LogError when the log is not intact: a checkpoint vouches for everything before it.
    """
    result = verify_chain(store)
    if not result.ok:
        raise LogError(
            f"dispatch log {getattr(store, 'location', '')}: not checkpointed because it is "
            f"broken: {result.summary()}"
        )
    return Checkpoint(
        count=result.count,
        seq=result.head_seq,
        hash=result.head_hash,
        time=datetime.now(UTC),
    )


def write_checkpoint(checkpoint: Checkpoint, path: Path) -> None:
    """Write the checkpoint as JSON, atomically (a reader never sees half a file)."""
    document = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "count": checkpoint.count,
        "seq": checkpoint.seq,
        "hash": checkpoint.hash,
        "time": format_time(checkpoint.time),
    }
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    try:
        atomic_write_text(path, text)
    except OSError as exc:
        raise LogError(
            f"checkpoint {path}: cannot write: {exc.strerror}; check the folder is writable"
        ) from exc


def read_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint file; InputError names the file and what is wrong with it."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"checkpoint {path}: cannot read: {exc.strerror}") from exc
    except ValueError as exc:
        raise InputError(f"checkpoint {path}: not JSON ({exc})") from exc
    if not isinstance(document, dict) or document.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"checkpoint {path}: not a dispatch-log checkpoint")
    if document.get("version") != CHECKPOINT_VERSION:
        raise InputError(
            f"checkpoint {path}: version {document.get('version')!r} is not supported; "
            "upgrade mash-requests"
        )
    try:
        count, seq, hash_ = document["count"], document["seq"], document["hash"]
        time = parse_time(document["time"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"checkpoint {path}: missing or invalid field ({exc})") from exc
    valid_hash = isinstance(hash_, str) and len(hash_) == 64
    if not (isinstance(count, int) and isinstance(seq, int) and valid_hash and seq >= 0):
        raise InputError(f"checkpoint {path}: count, seq or hash is not valid")
    return Checkpoint(count=count, seq=seq, hash=hash_, time=time)


__all__ = [
    "Break",
    "Checkpoint",
    "VerifyResult",
    "make_checkpoint",
    "read_checkpoint",
    "start_verification",
    "verify_chain",
    "write_checkpoint",
]
