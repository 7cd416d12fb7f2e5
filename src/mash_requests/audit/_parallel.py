"""Verifying one log in several processes, each walking its own range of ``seq``.

The chain is split at fixed ``seq`` values b1 < b2 < …: range 0 is (0, b1], range 1 is
(b1, b2], … and the last is open-ended. A worker for range *i* starts from the head the
sequential walk would have after row b_i if the log is intact there: row b_i's own ``seq``,
``hash`` and ``prev_hash`` (the hash of the row before it). The ranges are then joined in
order, and range *i*'s outcome is taken only if range *i-1* ended without a break at exactly
that head. Otherwise (a break in an earlier range wins; a head that differs means the log is
not intact around b_i) the rest of the log is walked here, from where range *i-1* ended. So
the result is, field for field, the one the sequential walk gives; the tests check that at
every split point of tampered logs.

Workers are fresh interpreters running this module (``python -m``), never a fork of the
caller and never a re-import of its ``__main__``: a script that verifies a log cannot be
started twice by accident. The job, with the DSN and HMAC key, goes through a pipe. A worker
that cannot be started or dies is replaced by walking its range here: slower, same result.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from mash_requests.audit._rows import ChainSource, DatabaseCheck, VerifiedHead
from mash_requests.audit.chain import format_time, parse_time
from mash_requests.audit.verify import (
    Break,
    Checkpoint,
    VerifyResult,
    _close,
    _Verifier,
    account_for_every_row,
    against_stored_heads,
    row_at,
)
from mash_requests.errors import LogError, MashRequestsError

#: Below this many events one process is quicker than starting others (~0.1-0.3 s each).
PARALLEL_MIN_EVENTS = 100_000

#: From this many events to walk, one worker is worth starting when this process is busy.
ONE_WORKER_MIN_EVENTS = 20_000

#: Workers beyond this add little: the database (or the disk) becomes the limit.
MAX_WORKERS = 4

#: (after_seq, upto_seq): the rows after_seq < seq <= upto_seq; None is open-ended.
Range = tuple[int, int | None]

#: Where a resumed walk starts: (seq, hash, hash before it, events up to it).
Start = tuple[int, str, str | None, int]


def default_workers() -> int:
    """The processes to use: the CPUs this process may run on, at most :data:`MAX_WORKERS`."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_WORKERS))


def split(head_seq: int, parts: int, start: int = 0) -> list[Range]:
    """``parts`` ranges of about equal size covering seq start+1..head_seq, the last
    open-ended."""
    parts = max(1, min(parts, head_seq - start))
    starts = [start + (head_seq - start) * i // parts for i in range(parts)]
    ends: list[int | None] = [*starts[1:], None]
    return list(zip(starts, ends, strict=True))


def walk_range(source: ChainSource, checkpoint: Checkpoint | None, span: Range) -> dict[str, Any]:
    """Walk one range from the head an intact log has at its start; the JSON a worker returns.

    ``assumed`` is that head (``[seq, hash, hash before]``), or None when row ``after_seq``
    does not exist (then the range is not walked: the join walks it from the real head).
    """
    after, upto = span
    walker = _Verifier(source, checkpoint)
    if after > 0:
        rows = source.chain_rows(after - 1, after)
        try:
            start = next(rows, None)
        finally:
            _close(rows)
        if start is None or start.seq != after:
            return {"assumed": None}
        walker.head_seq, walker.head_hash, walker.before_head_hash = (
            start.seq,
            start.hash,
            start.prev_hash,
        )
    assumed = [walker.head_seq, walker.head_hash, walker.before_head_hash]
    broken = walker.walk(after, upto)
    part: dict[str, Any] = {
        "assumed": assumed,
        "count": walker.count,
        "head": [walker.head_seq, walker.head_hash, walker.before_head_hash],
        "broken": None,
    }
    if broken is not None:
        part["broken"] = [broken.broken_seq, str(broken.problem), broken.detail]
    return part


def join(
    source: ChainSource,
    checkpoint: Checkpoint | None,
    parts: Sequence[dict[str, Any] | None],
    start: Start | None = None,
) -> VerifyResult:
    """The sequential walk's result from the ranges' parts, in order.

    The parts stop at the first range that was not walked (None: it is walked here, with
    everything after it) or that found a break; otherwise the last range is open-ended and
    they cover the whole log (from ``start`` on, when the walk resumes from a verified head).
    """
    walker = _Verifier(source, checkpoint)
    if start is not None:
        walker.begin_at(*start)
    for part in parts:
        head = [walker.head_seq, walker.head_hash, walker.before_head_hash]
        if part is None or part["assumed"] != head:
            # The range before ended elsewhere than an intact log would (or this one was not
            # walked): go on from where it ended, as the sequential walk does.
            broken = walker.walk(walker.head_seq, None)
            return broken if broken is not None else walker.finish()
        before = walker.count
        walker.count += part["count"]
        walker.head_seq, walker.head_hash, walker.before_head_hash = part["head"]
        if part["broken"] is not None:
            broken_seq, problem, detail = part["broken"]
            return VerifyResult(
                ok=False,
                count=before + part["count"],
                head_seq=walker.head_seq,
                head_hash=walker.head_hash,
                broken_seq=broken_seq,
                problem=Break(problem),
                detail=detail,
                checkpoint=checkpoint,
            )
    return walker.finish()


class Verification:
    """A verification under way: :meth:`result` waits for it. Close it if you never ask.

    With ``walk_first_here`` this process walks range 0 itself while the workers walk the
    others; without, every range goes to a worker and this process is free meanwhile (the
    report tallies its period then).
    """

    def __init__(
        self,
        source: ChainSource,
        checkpoint: Checkpoint | None,
        *,
        workers: int | None,
        walk_first_here: bool,
        check_database: bool = False,
        resume: bool = False,
        record: bool = False,
    ) -> None:
        self._source = source
        # The database's own check reads on a connection of its own, in a thread (SQLite and
        # psycopg release the GIL while the database works), overlapping the walk.
        self._database: concurrent.futures.Future[DatabaseCheck] | None = None
        if check_database:
            pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="db-check")
            self._database = pool.submit(source.database_check)
            pool.shutdown(wait=False)
        self._record = record
        # Before the walk: every event up to it was in the log then, so the walk reaches it.
        self._furthest = source.furthest_verified_head()
        self._earlier: VerifiedHead | None = None
        self._start: Start | None = None
        if resume and checkpoint is None:
            checkpoint = self._resume_point(source)
        self._checkpoint = checkpoint
        self._walk_first_here = walk_first_here
        first_seq = self._start[0] if self._start is not None else 0
        count = default_workers() if workers is None else max(1, workers)
        head = source.head_seq() if count > 1 or not walk_first_here else 0
        # While this process does other work, workers are worth it from fewer events.
        least = PARALLEL_MIN_EVENTS if walk_first_here else 2 * ONE_WORKER_MIN_EVENTS
        if workers is None and head - first_seq < least:
            count = 1
        self._ranges = split(head, count, first_seq) if count > 1 else [(first_seq, None)]
        self._workers: dict[int, subprocess.Popen[bytes]] = {}
        # While this process does other work (walk_first_here=False), even a single range is
        # walked by a worker once that is worth its start-up: the walk overlaps that work.
        self._in_workers = len(self._ranges) > 1 or (
            not walk_first_here and workers is None and head - first_seq >= ONE_WORKER_MIN_EVENTS
        )
        if self._in_workers:
            first = 1 if walk_first_here else 0
            for index in range(first, len(self._ranges)):
                worker = _start_worker(source, checkpoint, self._ranges[index])
                if worker is not None:
                    self._workers[index] = worker

    def result(self) -> VerifyResult:
        """Wait for every range and join them, then account for the rows the walk cannot
        reach (see :func:`~mash_requests.audit.verify.account_for_every_row`); LogError if
        the log cannot be read."""
        try:
            walked = self._walked()
        finally:
            database = self._database.result() if self._database is not None else None
        if self._start is not None:
            walked = replace(walked, verified_from=self._start[0] + 1, earlier=self._earlier)
        walked = against_stored_heads(self._source, walked, self._furthest)
        result = account_for_every_row(self._source, walked, database)
        if self._record and result.ok and result.head_seq > 0:
            with contextlib.suppress(LogError):  # a read-only log: nothing to resume from
                self._source.record_verified_head(result.head_seq, result.count, result.head_hash)
        return result

    def _resume_point(self, source: ChainSource) -> Checkpoint | None:
        """Start after the newest sealed verified head whose row still holds its hash.

        A head whose row is gone or differs cannot be started from: it becomes a checkpoint
        of a whole walk instead, which then names what happened there.
        """
        head = source.latest_verified_head()
        if head is None:
            return None
        row = row_at(source, head.seq)
        if row is None or row.hash != head.hash:
            return Checkpoint(count=head.count, seq=head.seq, hash=head.hash, time=head.verified_at)
        self._start = (head.seq, head.hash, row.prev_hash, head.count)
        self._earlier = head
        return None

    def _walked(self) -> VerifyResult:
        try:
            if not self._in_workers:
                walker = _Verifier(self._source, self._checkpoint)
                if self._start is not None:
                    walker.begin_at(*self._start)
                return walker.run()
            parts: list[dict[str, Any] | None] = []
            for index, span in enumerate(self._ranges):
                worker = self._workers.pop(index, None)
                if worker is not None:
                    parts.append(_finish_worker(worker))
                elif index == 0 and self._walk_first_here:
                    parts.append(walk_range(self._source, self._checkpoint, span))
                else:
                    parts.append(None)
                last = parts[-1]
                if last is None or last["assumed"] is None or last["broken"]:
                    break  # the join walks the rest here, or stops at this break
            return join(self._source, self._checkpoint, parts, self._start)
        finally:
            self.close()

    def close(self) -> None:
        """Stop any worker still running (after an error, or if the result is not wanted)."""
        workers, self._workers = self._workers, {}
        for worker in workers.values():
            if worker.poll() is None:
                worker.kill()
            worker.wait()


def _start_worker(
    source: ChainSource, checkpoint: Checkpoint | None, span: Range
) -> subprocess.Popen[bytes] | None:
    job = {
        "log": source.worker_job(),
        "after": span[0],
        "upto": span[1],
        "checkpoint": _checkpoint_json(checkpoint),
    }
    env = dict(os.environ)
    # The folder mash_requests is imported from, first: the worker runs this same code even
    # when the caller found the package through its own sys.path.
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    if not sys.executable:  # embedded: no interpreter to start
        return None
    try:
        worker = subprocess.Popen(
            [sys.executable, "-m", "mash_requests.audit._parallel"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            # Only the JSON answer matters; a worker that fails is replaced (see above).
            stderr=subprocess.DEVNULL,
            env=env,
        )
    except OSError:
        return None
    assert worker.stdin is not None
    try:
        worker.stdin.write(json.dumps(job).encode("utf-8"))
        worker.stdin.close()
    except OSError:  # it died at once; _finish_worker sees no answer
        pass
    return worker


def _finish_worker(worker: subprocess.Popen[bytes]) -> dict[str, Any] | None:
    """The worker's part; None if it gave none (the range is then walked here)."""
    assert worker.stdout is not None
    with worker.stdout:
        out = worker.stdout.read()
    worker.wait()
    try:
        answer = json.loads(out.decode("utf-8")) if worker.returncode == 0 else None
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        return None
    if "error" in answer:
        # The log could not be read: the same LogError this process would have raised.
        raise LogError(str(answer["error"]))
    return answer


def _checkpoint_json(checkpoint: Checkpoint | None) -> dict[str, Any] | None:
    if checkpoint is None:
        return None
    return {
        "count": checkpoint.count,
        "seq": checkpoint.seq,
        "hash": checkpoint.hash,
        "time": format_time(checkpoint.time),
    }


def _worker_main() -> int:
    """Walk the range a job on stdin names; print its part (or the error) as JSON."""
    from mash_requests.audit import LogSettings, open_store

    job = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    log = job["log"]
    key = bytes.fromhex(log["hmac_key"]) if log["hmac_key"] is not None else None
    cp = job["checkpoint"]
    checkpoint = (
        Checkpoint(count=cp["count"], seq=cp["seq"], hash=cp["hash"], time=parse_time(cp["time"]))
        if cp is not None
        else None
    )
    try:
        if log["backend"] == "postgres":
            settings = LogSettings(backend="postgres", dsn=log["dsn"], hmac_key=key)
        else:
            settings = LogSettings(backend="sqlite", path=Path(log["path"]), hmac_key=key)
        store = open_store(settings, must_exist=True)
        try:
            assert isinstance(store, ChainSource)
            part = walk_range(store, checkpoint, (job["after"], job["upto"]))
        finally:
            store.close()
    except MashRequestsError as exc:
        part = {"error": str(exc)}
    sys.stdout.write(json.dumps(part))
    return 0


if __name__ == "__main__":
    raise SystemExit(_worker_main())
