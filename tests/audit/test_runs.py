"""Run locks: a run's lock lives exactly as long as its process, on both log backends."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from audit_helpers import location_of

from mash_requests.audit import EventStore
from mash_requests.audit.runs import (
    LEASE,
    AdvisoryRunLocks,
    FileRunLocks,
    RunLocks,
    new_run_id,
)
from mash_requests.errors import LogError

HOLDER = """
import sys
from pathlib import Path
from mash_requests.audit.runs import AdvisoryRunLocks, FileRunLocks
backend, location = sys.argv[1], sys.argv[2]
locks = FileRunLocks(Path(location)) if backend == "sqlite" else AdvisoryRunLocks(location)
print(locks.acquire(), flush=True)
sys.stdin.read()
"""


def dead_within(locks: RunLocks, run_id: str, seconds: float = 5.0) -> bool:
    """Whether the run is seen dead within a few seconds (PostgreSQL ends a session whose
    client vanished a moment after the socket closes)."""
    deadline = time.monotonic() + seconds
    while locks.is_alive(run_id) is not False:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def locks_for(backend: str, store: EventStore) -> RunLocks:
    location = location_of(backend, store)
    return FileRunLocks(Path(location)) if backend == "sqlite" else AdvisoryRunLocks(location)


def test_lock_is_held_while_the_process_lives_and_freed_by_kill_9(
    backend: str, store: EventStore
) -> None:
    """Another process's run is alive while it runs, and dead the moment it is killed."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, backend, location_of(backend, store)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    observer = locks_for(backend, store)
    try:
        assert holder.stdout is not None
        run_id = holder.stdout.readline().strip()
        assert observer.is_alive(run_id) is True
        assert observer.is_alive(run_id) is True  # asking does not take it
        holder.kill()
        holder.wait(timeout=30)
        assert dead_within(observer, run_id)
    finally:
        holder.kill()
        observer.release()


def test_own_run_is_alive_and_a_released_one_dead(backend: str, store: EventStore) -> None:
    """A run sees itself alive; once it ends normally, others see it dead."""
    mine, other = locks_for(backend, store), locks_for(backend, store)
    run_id = mine.acquire()
    assert mine.kind == mine.family
    assert mine.is_alive(run_id) is True
    assert other.is_alive(run_id) is True
    mine.check_held()
    mine.release()
    assert dead_within(other, run_id, seconds=1.0)
    other.release()


def test_run_id_from_the_log_is_never_used_as_a_path(tmp_path: Path) -> None:
    """A forged run id such as '../x' cannot be judged (None: the lease decides)."""
    locks = FileRunLocks(tmp_path / "dispatch-log.sqlite3")
    assert locks.is_alive("../../etc/passwd") is None
    assert locks.is_alive(new_run_id()) is False


def test_no_lock_folder_falls_back_to_a_lease(tmp_path: Path) -> None:
    """Where the lock folder cannot be made, the run says so: its lock kind is 'lease'."""
    (tmp_path / "dispatch-log.sqlite3-runs").write_text("a file, not a folder")
    locks = FileRunLocks(tmp_path / "dispatch-log.sqlite3")
    locks.acquire()
    assert locks.kind == LEASE
    locks.check_held()  # nothing held, nothing to lose
    locks.release()


def test_removed_lock_file_stops_the_run(tmp_path: Path) -> None:
    """If someone deletes a live run's lock file, the run finds out before sending more."""
    locks = FileRunLocks(tmp_path / "dispatch-log.sqlite3")
    run_id = locks.acquire()
    (tmp_path / "dispatch-log.sqlite3-runs" / f"{run_id}.lock").unlink()
    with pytest.raises(LogError, match="was removed while it was sending"):
        locks.check_held()
    locks.release()


def test_dead_runs_files_are_swept_at_the_next_start(tmp_path: Path) -> None:
    """Lock files left by killed runs are removed when another run starts."""
    folder = tmp_path / "dispatch-log.sqlite3-runs"
    folder.mkdir()
    stale = folder / f"{new_run_id()}.lock"
    stale.write_text("")
    locks = FileRunLocks(tmp_path / "dispatch-log.sqlite3")
    run_id = locks.acquire()
    assert sorted(p.name for p in folder.iterdir()) == [f"{run_id}.lock"]
    locks.release()
    assert list(folder.iterdir()) == []


@pytest.mark.postgres
def test_lost_database_session_stops_the_run(backend: str, store: EventStore) -> None:
    """If the run's lock session is closed (server restart), the run finds out."""
    if backend != "postgres":
        pytest.skip("the advisory lock is PostgreSQL's")
    locks = AdvisoryRunLocks(location_of(backend, store))
    locks.acquire()
    assert locks._conn is not None
    locks._conn.close()
    with pytest.raises(LogError, match="lost its lock"):
        locks.check_held()
    locks.release()
