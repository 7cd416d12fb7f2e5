"""One batch sent by several processes: ``send-batch --workers N``.

The parent validates the batch (as a batch of one process does) and logs its bad rows; then
it hands valid cases, one at a time, to N worker processes and adds up what they report.
Each worker is a *run* of its own (:mod:`mash_requests.claims`): its own lock, its own
gateway connection and its own connection to the shared log, through the same
:class:`~mash_requests.dispatch.Dispatcher` as one process. So the log decides who sends
what, exactly as for two runs of one batch started together; the per-mailbox rate limit is
counted from the same log; and every crash guarantee of one run holds for each worker.

Each worker has a pipe of its own for cases and one for reports (no lock is shared between
processes, so a worker killed at any moment cannot block the others). A worker that stops
without saying so (``kill -9``, out of memory) is replaced, and the cases it had not
reported are given to its replacement: the log settles what the dead worker left in flight
(a request it had handed over to SMTP becomes ``unconfirmed``; one it had only claimed is
sent) and says which were sent already. Workers stop, after the case in hand, on Ctrl-C
(which reaches them too), when the parent asks, or when the parent has died.

A case is counted when its worker reports it, and a worker reports it only once its
outcomes are in the log; a report lost with a killed worker is made good by the case being
sent again by the replacement (its requests then count as already sent).

A second Ctrl-C stops the batch at once: the parent sends every worker SIGTERM (on POSIX;
on Windows the console's Ctrl-C reaches them all), which a worker takes as its own second
Ctrl-C: it breaks off the case in hand, reports it as the log holds it, and exits. The
parent waits :data:`ABORT_WAIT_SECONDS` at most for that; cases no worker reported are
returned to the caller, who counts them as the log holds them.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import pickle
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any

from mash_requests.errors import LogError

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from mash_requests.batch import BatchProgress, BatchResult
    from mash_requests.case import Case
    from mash_requests.config import Settings

logger = logging.getLogger(__name__)

#: Cases handed to a worker ahead of the one it is sending, so it never waits for the next.
AHEAD = 2
#: How often a waiting worker looks at its parent, and a waiting parent at its workers.
POLL_SECONDS = 0.2
#: How long the parent waits for workers to finish their case after it stopped them.
STOP_WAIT_SECONDS = 60.0
#: How long the parent waits for workers to break off their case after a second Ctrl-C;
#: one that has not ended by then is killed (the log copes: see :mod:`mash_requests.claims`).
ABORT_WAIT_SECONDS = 5.0

# Messages. Parent to worker: a task (row number, case, partners or None), ``None`` (no
# more cases: finish what you hold and exit), or ``_STOP`` (stop after the case in hand).
# Worker to parent: ("case", report), ("exit", interrupted), ("error", exception, row).
_STOP = "stop"


@dataclass
class CaseReport:
    """What a worker decided for one case: counts of its final outcomes, as a batch counts
    them, and the partners another live run still holds (come back to later)."""

    number: int
    delta: BatchResult
    held: list[str] = field(default_factory=list)


@dataclass
class _Worker:
    ident: int
    process: BaseProcess
    tasks: Connection
    reports: Connection
    #: Rows given to this worker and not yet reported final: number -> (case, partners).
    holding: dict[int, tuple[Case, list[str] | None]] = field(default_factory=dict)
    #: Rows reported with partners held elsewhere: not counted against AHEAD.
    parked: set[int] = field(default_factory=set)
    told_done: bool = False
    said_exit: bool = False

    @property
    def busy(self) -> int:
        return len(self.holding) - len(self.parked)


def send_with_workers(
    settings: Settings,
    cases: Iterator[tuple[int, Case]],
    result: BatchResult,
    state: BatchProgress,
    *,
    workers: int,
    dry_run: bool,
    progress: Callable[[BatchProgress], None] | None,
    stop_requested: Callable[[], bool],
    abort_requested: Callable[[], bool] = lambda: False,
) -> list[tuple[int, Case, list[str] | None]]:
    """Send ``cases`` (row number, case) with ``workers`` processes; add up into ``result``.

    Raises the first LogError (or other error) a worker meets, after stopping the others;
    sets ``result.interrupted`` when stopped early (``stop_requested``: after the case in
    hand; ``abort_requested``: at once), or when workers kept dying (more than ``workers``
    replacements) and cases were left unsent. Returns the cases (row number, case, the
    partners asked or None for all) given to workers that ended without reporting them.
    """
    from mash_requests.batch import BatchLogError

    context = multiprocessing.get_context("spawn")
    pool: dict[int, _Worker] = {}
    replacements = 0
    idents = iter(range(1_000_000))
    exhausted = stopping = aborting = False
    abort_deadline = 0.0
    failure: tuple[BaseException, int] | None = None
    unreported: list[tuple[int, Case, list[str] | None]] = []

    def start(ident: int) -> _Worker:
        task_reader, task_writer = context.Pipe(duplex=False)
        report_reader, report_writer = context.Pipe(duplex=False)
        process = context.Process(
            target=_work,
            args=(settings, dry_run, task_reader, report_writer),
            name=f"mash-requests send-batch worker {ident}",
        )
        process.start()
        # The child's ends belong to the child now: closed here, so a dead child reads as
        # end-of-file on its report pipe, and a dead parent as one on the task pipe.
        task_reader.close()
        report_writer.close()
        worker = _Worker(ident, process, task_writer, report_reader)
        pool[ident] = worker
        return worker

    def give(worker: _Worker, message: object) -> bool:
        try:
            worker.tasks.send(message)
        except (OSError, EOFError):
            return False  # it died: found and handled by the loop below
        return True

    def stop_all() -> None:
        nonlocal stopping
        stopping = True
        for worker in pool.values():
            if worker.process.is_alive():
                give(worker, _STOP)

    def abort_all() -> None:
        """Break off every worker's case in hand (a worker's own second Ctrl-C)."""
        nonlocal aborting, abort_deadline
        stop_all()
        aborting = True
        abort_deadline = time.monotonic() + ABORT_WAIT_SECONDS
        if sys.platform != "win32":  # there terminate() is a kill; Ctrl-C reached them
            for worker in pool.values():
                if worker.process.is_alive():
                    worker.process.terminate()

    for _ in range(workers):
        start(next(idents))
    try:
        while True:
            if stop_requested() and not stopping:
                result.interrupted = True
                stop_all()
            if abort_requested() and not aborting:
                result.interrupted = True
                abort_all()
            if aborting and time.monotonic() >= abort_deadline:
                for worker in pool.values():
                    if worker.process.is_alive():
                        worker.process.kill()
            # Hand out cases to the workers with least in hand.
            while not exhausted and not stopping:
                live = [w for w in pool.values() if w.process.is_alive() and not w.told_done]
                free = min(live, key=lambda w: w.busy, default=None)
                if free is None or free.busy >= AHEAD:
                    break
                try:
                    number, case = next(cases)
                except StopIteration:
                    exhausted = True
                    break
                free.holding[number] = (case, None)
                give(free, (number, case, None))
            if exhausted or stopping:
                for worker in pool.values():
                    if not worker.told_done and worker.process.is_alive():
                        worker.told_done = give(worker, None)
            if all(not w.process.is_alive() and w.said_exit for w in pool.values()):
                break
            failures: list[tuple[BaseException, int]] = []
            _receive(pool, result, state, progress, failures)
            if failures and failure is None:
                failure = failures[0]
                stop_all()
            # Workers that stopped with cases in hand, or without saying so (killed):
            # replace them, with those cases.
            for worker in [w for w in pool.values() if _dead(w)]:
                del pool[worker.ident]
                left = worker.holding
                if not worker.said_exit:
                    logger.warning(
                        "a send-batch worker stopped unexpectedly (exit code %s) with %d "
                        "case(s) in hand",
                        worker.process.exitcode,
                        len(left),
                    )
                if not left and (exhausted or stopping):
                    continue
                if stopping or replacements >= workers:
                    result.interrupted = True
                    unreported.extend((n, case, partners) for n, (case, partners) in left.items())
                    continue
                replacements += 1
                fresh = start(next(idents))
                for number, (case, partners) in left.items():
                    fresh.holding[number] = (case, partners)
                    give(fresh, (number, case, partners))
                if exhausted:
                    fresh.told_done = give(fresh, None)
            if not pool:
                break
    except BaseException:
        stop_all()
        _join(pool, STOP_WAIT_SECONDS)
        raise
    _join(pool, max(0.0, abort_deadline - time.monotonic()) if aborting else STOP_WAIT_SECONDS)
    if not exhausted:
        result.interrupted = True  # stopped, or every worker was lost, before the end
    if failure is not None:
        error, row = failure
        if isinstance(error, LogError):
            raise BatchLogError(error, result, row) from error
        raise error
    for worker in pool.values():
        if worker.holding:
            result.interrupted = True
            unreported.extend((n, case, partners) for n, (case, partners) in worker.holding.items())
    return sorted(unreported, key=lambda item: item[0])


def _dead(worker: _Worker) -> bool:
    """Ended without saying so, or with cases not done (e.g. its own Ctrl-C), once
    everything it sent has been read."""
    ended = not worker.process.is_alive() and worker.reports.closed
    return ended and (not worker.said_exit or bool(worker.holding))


def _receive(
    pool: dict[int, _Worker],
    result: BatchResult,
    state: BatchProgress,
    progress: Callable[[BatchProgress], None] | None,
    failures: list[tuple[BaseException, int]],
) -> None:
    """Read what the workers report (waiting up to POLL_SECONDS); add it up."""
    readers = {w.reports: w for w in pool.values() if not w.reports.closed}
    sentinels = {w.process.sentinel: w for w in pool.values() if w.reports.closed}
    ready = wait([*readers, *sentinels], timeout=POLL_SECONDS)
    for item in ready:
        worker = readers.get(item)  # type: ignore[call-overload]
        if worker is None:
            continue  # a process ended: looked at by the caller
        try:
            message = worker.reports.recv()
        except (EOFError, OSError, pickle.UnpicklingError):
            # The worker is gone (or died mid-message): nothing more comes from it.
            worker.reports.close()
            worker.process.join(5)
            continue
        kind = message[0]
        if kind == "case":
            report: CaseReport = message[1]
            _add(result, state, report.delta)
            if report.held:
                case, _ = worker.holding[report.number]
                worker.holding[report.number] = (case, report.held)
                worker.parked.add(report.number)
            else:
                worker.holding.pop(report.number, None)
                worker.parked.discard(report.number)
            if progress is not None:
                progress(state)
        elif kind == "exit":
            worker.said_exit = True
            if message[1]:
                result.interrupted = True
        elif kind == "error":
            worker.said_exit = True
            failures.append((message[1], message[2]))


def _add(result: BatchResult, state: BatchProgress, delta: BatchResult) -> None:
    for outcome, n in delta.counts.items():
        result.counts[outcome] += n
        state.counts[outcome] += n
        state.done += n
    result.refusals.update(delta.refusals)
    result.refused.extend(delta.refused)
    result.unconfirmed.extend(delta.unconfirmed)
    result.unsent.extend(delta.unsent)


def _join(pool: dict[int, _Worker], seconds: float) -> None:
    """Wait for every worker to end; one that will not is killed (the log copes: see
    :mod:`mash_requests.claims`)."""
    deadline = time.monotonic() + seconds
    for worker in pool.values():
        worker.process.join(max(0.0, deadline - time.monotonic()))
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(5)
        with contextlib.suppress(OSError):
            worker.tasks.close()
        with contextlib.suppress(OSError):
            worker.reports.close()


# -- in the worker ---------------------------------------------------------------------------


def _work(settings: Settings, dry_run: bool, tasks: Connection, reports: Connection) -> None:
    """A worker process: send the cases it is given, report each once it is in the log."""
    from mash_requests.batch import BatchProgress, BatchResult, _Abort, _Run, _StopFlag
    from mash_requests.dispatch import Dispatcher

    parent = multiprocessing.parent_process()
    inbox: deque[Any] = deque()
    row = [0]  # the row in hand, for an error's report

    def parent_gone() -> bool:
        return parent is not None and not parent.is_alive()

    def read(timeout: float) -> None:
        """Move what the parent sent into ``inbox``; a closed pipe reads as "stop"."""
        try:
            while tasks.poll(timeout):
                inbox.append(tasks.recv())
                timeout = 0
        except (EOFError, OSError):
            inbox.append(_STOP)

    def report(message: object) -> None:
        try:
            reports.send(message)
        except (OSError, ValueError):
            inbox.append(_STOP)  # the parent is gone: stop after this case

    try:
        with Dispatcher(settings) as dispatcher, _StopFlag(terminate=True) as flag:
            run = _Run(dispatcher, BatchResult(), BatchProgress(total_requests=0), dry_run=dry_run)
            later: list[tuple[int, Case, list[str]]] = []

            def send(number: int, case: Case, partners: list[str] | None, final: bool) -> None:
                row[0] = number
                run.result = BatchResult()
                try:
                    held = run.send(number, case, partners, final=final, flag=flag)
                except _Abort:
                    # Broken off by a second Ctrl-C: counted as the log holds it.
                    report(("case", CaseReport(number, run.result)))
                    raise
                report(("case", CaseReport(number, run.result, held)))
                if held:
                    later.append((number, case, held))

            while True:
                read(0 if inbox else POLL_SECONDS)
                if flag.stop or _STOP in inbox or parent_gone():
                    report(("exit", True))
                    return
                if not inbox:
                    continue
                task = inbox.popleft()
                if task is None:
                    break
                number, case, partners = task
                send(number, case, partners, final=dry_run)
            # Cases another live run was sending: come back to them, as one process does.
            until = time.monotonic() + dispatcher.in_flight_wait
            while later:
                read(0)
                if flag.stop or _STOP in inbox or parent_gone():
                    report(("exit", True))
                    return
                final = time.monotonic() >= until
                waiting, later = later, []
                for number, case, partners in waiting:
                    send(number, case, partners, final)
                if later:
                    time.sleep(0.5)
            report(("exit", False))
    except _Abort:
        with contextlib.suppress(OSError, ValueError):
            reports.send(("exit", True))
    except KeyboardInterrupt:
        pass  # Ctrl-C before or after sending: the parent counts what was not reported
    except BaseException as exc:  # the parent raises it: sent as it is, if it pickles
        error: BaseException
        if isinstance(exc, LogError):
            error = LogError(str(exc))  # its words say what went out and what did not
        else:
            try:
                # Whether it survives the trip to the parent: our own bytes, read back here.
                error = pickle.loads(pickle.dumps(exc))  # noqa: S301
            except Exception:
                error = RuntimeError(f"a send-batch worker failed: {type(exc).__name__}: {exc}")
        with contextlib.suppress(OSError, ValueError):
            reports.send(("error", error, row[0]))
    finally:
        reports.close()
