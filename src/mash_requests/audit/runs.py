"""Run locks: how a run that sends tells the others it is alive, and learns that one died.

Every run that sends holds a lock of its own for as long as it lives, and names it in the
``prepared`` events it writes (``details["run"]`` and ``details["run_lock"]``). The
operating system or the database releases the lock the moment the process dies, ``kill -9``
included, so another run can tell at once whether a request in flight still belongs to a
live run. Nothing is ever decided from a run's age: a live run is never second-guessed.

- **SQLite** (``run_lock = "file"``): one file per run in a folder beside the log
  (``dispatch-log.sqlite3-runs/<run>.lock``), held with ``fcntl.flock`` (``msvcrt.locking``
  on Windows). The file appears already locked (it is locked under a temporary name, then
  renamed), and is removed when the run ends; a file that can be locked, or is missing,
  belongs to a run that is dead.
- **PostgreSQL** (``run_lock = "advisory"``): a session-level advisory lock held by a
  connection of the run's own; the server releases it when the session ends.
- **Neither possible** (``run_lock = "lease"``): a folder that cannot be written, a file
  system without locks. Other runs then treat this run's requests as its own until a lease
  has passed (see :mod:`mash_requests.claims`).

Psycopg is imported when a PostgreSQL lock is first used, never when this module is.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from mash_requests.errors import LogError

if TYPE_CHECKING:
    import psycopg

    from mash_requests.audit import LogSettings

#: A run id: what ``details["run"]`` holds. Anything else read from a log is not trusted as
#: a file name.
RUN_ID = re.compile(r"^[0-9a-f]{16}$")

#: ``details["run_lock"]`` values: how the run's liveness can be told.
FILE, ADVISORY, LEASE = "file", "advisory", "lease"

# The first key of our two-key advisory locks: "mash" in ASCII, so they never meet another
# application's locks (nor our own migration lock, which uses the one-key form).
_ADVISORY_NAMESPACE = 0x6D617368
#: Connect timeout for the lock connection when the DSN sets none.
_CONNECT_TIMEOUT_SECONDS = 10


class RunLocks(Protocol):
    """A run's own lock, and the means to ask whether another run's lock is still held."""

    #: The kind of lock other runs of this log hold, which :meth:`is_alive` can ask about:
    #: "file" or "advisory".
    family: str
    #: What this run holds: ``family``, or "lease" when its lock could not be taken.
    kind: str

    def acquire(self) -> str:
        """Start a run: take its lock and return its id. ``kind`` says what was taken."""
        ...

    def is_alive(self, run_id: str) -> bool | None:
        """Whether the run with this id still holds its lock; None when it cannot be told."""
        ...

    def check_held(self) -> None:
        """Raise LogError if this run's lock has been lost (its connection or file is gone)."""
        ...

    def release(self) -> None:
        """End the run: release its lock. Safe to call twice."""
        ...


def open_run_locks(settings: LogSettings) -> RunLocks:
    """The run locks that go with the configured log."""
    if settings.backend == "postgres":
        if settings.dsn is None:
            raise ValueError("LogSettings for postgres needs a dsn")
        return AdvisoryRunLocks(settings.dsn)
    return FileRunLocks(settings.path)


def new_run_id() -> str:
    return secrets.token_hex(8)


class FileRunLocks:
    """Run locks as files beside a SQLite log, one per run, locked by the operating system."""

    def __init__(self, log_path: Path) -> None:
        # Resolved, so runs that name one log by different paths share one folder of locks.
        log_path = Path(log_path).resolve()
        self.folder = log_path.parent / f"{log_path.name}-runs"
        self.family = self.kind = FILE
        self.run_id: str | None = None
        self._fd: int | None = None

    def _path(self, run_id: str) -> Path:
        return self.folder / f"{run_id}.lock"

    def acquire(self) -> str:
        """Take a lock file for a new run; without one the run falls back to a lease."""
        if self.run_id is not None:
            return self.run_id
        run_id = new_run_id()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._fd = _create_locked(self.folder, run_id, self._path(run_id))
            self.kind = FILE
        except OSError:
            # A folder we cannot write, or a file system without locks: other runs will
            # wait out a lease on our requests instead.
            self._fd = None
            self.kind = LEASE
        self.run_id = run_id
        self._sweep()
        return run_id

    def is_alive(self, run_id: str) -> bool | None:
        if run_id == self.run_id:
            return True
        if not RUN_ID.match(run_id):
            return None
        path = self._path(run_id)
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return False  # the run ended (or died and was swept): nobody holds it
        except OSError:
            return None
        try:
            if not _try_lock(fd):
                return True
            # We hold a dead run's lock: remove its file so later checks need not lock it.
            with contextlib.suppress(OSError):
                path.unlink()
            return False
        except OSError:
            return None
        finally:
            os.close(fd)

    def check_held(self) -> None:
        if self._fd is None or self.run_id is None:
            return
        try:
            same = os.path.samestat(os.fstat(self._fd), os.stat(self._path(self.run_id)))
        except OSError:
            same = False
        if not same:
            raise LogError(
                f"this run's lock file {self._path(self.run_id)} was removed while it was "
                "sending, so other runs may take it for dead; it stopped before sending more. "
                "Do not delete files in that folder while runs are sending"
            )

    def release(self) -> None:
        if self._fd is None or self.run_id is None:
            return
        # Removed while still locked, so no other run can find the file unlocked meanwhile.
        with contextlib.suppress(OSError):
            self._path(self.run_id).unlink()
        os.close(self._fd)
        self._fd = None

    def _sweep(self, limit: int = 100) -> None:
        """Remove lock files of runs that died (kill -9 leaves them); a few per run start."""
        try:
            names = [p.stem for _, p in zip(range(limit), self.folder.glob("*.lock"), strict=False)]
        except OSError:
            return
        for name in names:
            self.is_alive(name)


def _create_locked(folder: Path, run_id: str, final: Path) -> int:
    """Create ``final`` already locked: locked under a temporary name, then renamed.

    A file that existed unlocked for a moment could be taken for a dead run's and removed.
    """
    if sys.platform == "win32":
        # Windows will not rename or remove a file another process has open; the lock is
        # taken at once on the final name instead.
        fd = os.open(final, os.O_RDWR | os.O_CREAT | os.O_EXCL)
        if not _try_lock(fd):
            os.close(fd)
            raise OSError("could not lock a new run file")
        return fd
    temporary = folder / f".{run_id}.creating"
    fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        if not _try_lock(fd):
            raise OSError("could not lock a new run file")
        os.rename(temporary, final)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    return fd


def _try_lock(fd: int) -> bool:
    """Take an exclusive lock without waiting; False when another process holds it."""
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:  # held by another process (EACCES or EDEADLOCK)
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class AdvisoryRunLocks:
    """Run locks as PostgreSQL session advisory locks, on a connection of the run's own."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self.family = self.kind = ADVISORY
        self.run_id: str | None = None
        self._conn: psycopg.Connection[Any] | None = None

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            import psycopg
            from psycopg import conninfo

            extra: dict[str, Any] = {}
            if "connect_timeout" not in conninfo.conninfo_to_dict(self._dsn):
                extra["connect_timeout"] = _CONNECT_TIMEOUT_SECONDS
            try:
                self._conn = psycopg.connect(self._dsn, autocommit=True, **extra)
            except psycopg.Error as exc:
                raise LogError(
                    f"cannot open the run lock connection to the dispatch log database "
                    f"({type(exc).__name__}); check [log] dsn"
                ) from None
        return self._conn

    def _ask(self, sql: str, run_id: str) -> bool:
        import psycopg

        try:
            row = self._connection().execute(sql, (_ADVISORY_NAMESPACE, _key(run_id))).fetchone()
        except psycopg.Error as exc:
            raise LogError(
                f"the run lock connection to the dispatch log database failed "
                f"({type(exc).__name__}); check the server and [log] dsn"
            ) from None
        return bool(row and row[0])

    def acquire(self) -> str:
        if self.run_id is not None:
            return self.run_id
        while True:
            run_id = new_run_id()
            if self._ask("SELECT pg_try_advisory_lock(%s, %s)", run_id):
                self.run_id = run_id
                return run_id
            # Another live run's id hashes to the same key: take another id.

    def is_alive(self, run_id: str) -> bool | None:
        if run_id == self.run_id:
            return True  # a session re-enters its own advisory locks: never ask about ours
        if not RUN_ID.match(run_id):
            return None
        if self._ask("SELECT pg_try_advisory_lock(%s, %s)", run_id):
            self._ask("SELECT pg_advisory_unlock(%s, %s)", run_id)
            return False
        return True

    def check_held(self) -> None:
        if self.run_id is None:
            return
        held = self._ask(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'"
            " AND pid = pg_backend_pid() AND granted AND objsubid = 2"
            " AND classid = (%s::bigint & 4294967295)::oid"
            " AND objid = (%s::bigint & 4294967295)::oid)",
            self.run_id,
        )
        if not held:
            raise LogError(
                "this run lost its lock in the dispatch log database (its connection was "
                "closed), so other runs may take it for dead; it stopped before sending more"
            )

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(Exception):
            # Unlocked before closing: the server ends a closed session a moment later.
            if self.run_id is not None and not conn.closed:
                conn.execute(
                    "SELECT pg_advisory_unlock(%s, %s)",
                    (_ADVISORY_NAMESPACE, _key(self.run_id)),
                )
        with contextlib.suppress(Exception):
            conn.close()


def _key(run_id: str) -> int:
    """The advisory lock's second key for a run: 32 bits of its id's hash, signed."""
    value = int.from_bytes(hashlib.sha256(run_id.encode()).digest()[:4], "big")
    return value - 2**32 if value >= 2**31 else value
