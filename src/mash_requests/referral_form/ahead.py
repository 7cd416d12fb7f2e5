"""Checking forms ahead of need, in a helper process, while a batch sends the cases before.

A batch spends much of its time checking each case's form (pypdf, pure Python, so a thread
cannot run it beside the sending). :class:`CheckAhead` runs :func:`check_form` for the next
cases' forms in one helper process while this one sends: the caller names a case's form
with :meth:`CheckAhead.submit` a few cases early, and asks for the verdict with
:meth:`CheckAhead.result` when it reaches the case.

What a verdict from the helper may decide is narrow, so the log proves the same as without
it: the helper reads the file itself and returns the SHA-256 of the bytes it checked; a
verdict is used only for the bytes the caller read and will attach (same hash, same case
reference, same password), and only an acceptance is used: a refusal (perhaps a time-out
on a loaded machine) is decided afresh by the caller. Anything amiss with the helper (it
cannot start, dies, takes too long) makes :meth:`result` return None, and the caller checks
the form itself, as it would without one.

The helper holds none of the caller's files or locks (it is a new program, started with
only its pipes) and ends when its input closes, so a caller killed with ``kill -9`` leaves
nothing running for longer than the check in hand, and no lock held. Run as
``python -m mash_requests.referral_form.ahead``: it reads pickled requests on stdin and
writes pickled answers on stdout; it is started only by :class:`CheckAhead`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pickle
import select
import struct
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mash_requests.referral_form.check import CHECK_TIME_LIMIT
from mash_requests.referral_form.verdict import Verdict

log = logging.getLogger(__name__)

#: How long :meth:`CheckAhead.result` waits for the helper's answer beyond the check's own
#: time limit before giving up on the helper and letting the caller check the form itself.
_SLACK = 10.0


@dataclass(frozen=True)
class _Request:
    """One form to check: where it is, for which case, how (as ``check_form`` takes them)."""

    path: str
    case_ref: str
    password: str | None
    max_size: int
    case_ref_field: str | None


@dataclass(frozen=True)
class _Answer:
    """The helper's verdict on the bytes it read (``sha256`` names them); None if unread."""

    sha256: str | None
    verdict: Verdict | None


#: Each answer on the helper's output is this length, then that many bytes of pickle.
_LENGTH = struct.Struct(">Q")


class _HelperGone(Exception):
    """Internal: the helper cannot answer; the message says why."""


class CheckAhead:
    """One helper process checking forms ahead of need; see the module docstring."""

    def __init__(self, *, max_size: int, case_ref_field: str | None) -> None:
        self._max_size = max_size
        self._case_ref_field = case_ref_field
        self._process: subprocess.Popen[bytes] | None = None
        self._broken = False
        #: Requests sent, answers not yet read, in the order the helper answers them.
        self._pending: deque[_Request] = deque()
        #: Answers read, not yet asked for.
        self._answers: dict[_Request, _Answer] = {}
        #: Bytes read from the helper, not yet a whole answer.
        self._buffer = bytearray()

    @property
    def outstanding(self) -> int:
        """How many submitted forms have no answer read yet."""
        return len(self._pending)

    def submit(self, path: Path, case_ref: str, password: str | None) -> None:
        """Start checking a form the caller will need soon (nothing if the helper is out)."""
        request = self._request(path, case_ref, password)
        if request in self._answers or request in self._pending:
            return
        process = self._helper()
        if process is None or process.stdin is None:
            return
        try:
            pickle.dump(request, process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            process.stdin.flush()
        except OSError:
            self._give_up("it stopped taking work")
            return
        self._pending.append(request)

    def result(
        self, path: Path, case_ref: str, password: str | None, data: bytes
    ) -> Verdict | None:
        """The helper's acceptance of exactly ``data`` for this case, or None.

        None when the form was not submitted, the helper read other bytes (the file changed),
        refused the form (the caller decides a refusal itself), or failed. Waits for the
        answer if the helper is still checking it.
        """
        request = self._request(path, case_ref, password)
        if request not in self._answers and request in self._pending:
            self._read_until(request)
        answer = self._answers.pop(request, None)
        if answer is None or answer.verdict is None or not answer.verdict.accepted:
            return None
        if answer.sha256 != hashlib.sha256(data).hexdigest():
            return None
        return answer.verdict

    def close(self) -> None:
        """End the helper: close its input (it exits), reap it; kill it if it lingers."""
        process, self._process = self._process, None
        self._pending.clear()
        self._answers.clear()
        self._buffer.clear()
        if process is None:
            return
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        try:
            process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> CheckAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the helper ------------------------------------------------------------------------

    def _request(self, path: Path, case_ref: str, password: str | None) -> _Request:
        return _Request(
            str(Path(path).absolute()), case_ref, password, self._max_size, self._case_ref_field
        )

    def _helper(self) -> subprocess.Popen[bytes] | None:
        if self._broken or os.name == "nt":  # select() cannot wait on a Windows pipe
            return None
        if self._process is None:
            try:
                self._process = subprocess.Popen(
                    [sys.executable, "-m", __name__],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    close_fds=True,
                    env={**os.environ, "PYTHONSAFEPATH": "1"},
                )
            except OSError as exc:
                self._give_up(f"it could not start ({type(exc).__name__})")
                return None
        return self._process

    def _read_until(self, wanted: _Request) -> None:
        process = self._process
        if process is None or process.stdout is None:
            self._pending.clear()
            return
        while self._pending:
            try:
                answer = pickle.loads(self._frame(process.stdout.fileno()))  # noqa: S301 - ours
            except _HelperGone as gone:
                self._give_up(str(gone))
                return
            except Exception as exc:  # a torn answer
                self._give_up(f"its answer could not be read ({type(exc).__name__})")
                return
            request = self._pending.popleft()
            if not isinstance(answer, _Answer):
                self._give_up("it answered out of turn")
                return
            self._answers[request] = answer
            if request == wanted:
                return

    def _frame(self, fd: int) -> bytes:
        """The next answer's bytes: a length, then that many bytes (read unbuffered, so
        that waiting on the pipe never misses an answer already read into a buffer)."""
        needed = _LENGTH.size
        while True:
            if len(self._buffer) >= _LENGTH.size:
                needed = _LENGTH.size + _LENGTH.unpack_from(self._buffer)[0]
                if len(self._buffer) >= needed:
                    frame = bytes(self._buffer[_LENGTH.size : needed])
                    del self._buffer[:needed]
                    return frame
            ready, _, _ = select.select([fd], [], [], CHECK_TIME_LIMIT + _SLACK)
            if not ready:
                raise _HelperGone("it took too long to answer")
            chunk = os.read(fd, max(65536, needed - len(self._buffer)))
            if not chunk:
                raise _HelperGone("it stopped")
            self._buffer += chunk

    def _give_up(self, why: str) -> None:
        """Stop using the helper for the rest of the run; the caller checks forms itself."""
        log.info("form checks ahead of need stopped: %s; forms are checked in turn", why)
        self._broken = True
        self.close()


def _answer(request: _Request) -> _Answer:
    from mash_requests._files import read_regular_file
    from mash_requests.referral_form.check import check_form

    try:
        data = read_regular_file(Path(request.path))  # never a pipe: it would hang the helper
    except OSError:
        return _Answer(None, None)  # the caller reads it and says what is wrong
    verdict = check_form(
        data,
        request.case_ref,
        password=request.password,
        max_size=request.max_size,
        case_ref_field=request.case_ref_field,
    )
    return _Answer(hashlib.sha256(data).hexdigest(), verdict)


def _serve(stdin: BinaryIO, stdout: BinaryIO) -> None:
    """The helper's loop: a request in, its answer out, until the input closes."""
    while True:
        try:
            request = pickle.load(stdin)  # noqa: S301 - from the process that started us
        except EOFError:
            return
        answer = pickle.dumps(_answer(request), protocol=pickle.HIGHEST_PROTOCOL)
        stdout.write(_LENGTH.pack(len(answer)) + answer)
        stdout.flush()


if __name__ == "__main__":  # pragma: no cover - run as the helper, tested through CheckAhead
    # Serve from the module by its own name, so answers pickle as the caller knows them.
    import signal

    from mash_requests.referral_form import ahead

    # Ctrl-C is for the caller to handle (a batch finishes its case): it closes our input.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(BrokenPipeError, KeyboardInterrupt):
        ahead._serve(sys.stdin.buffer, sys.stdout.buffer)
