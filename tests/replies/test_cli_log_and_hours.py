"""The commands that read the log refuse a log that is not there, and hours out of range.

A mistyped ``[log] path`` must not be answered "(0 requests)" or "Nothing to chase" (a
manager would conclude nothing is overdue), nor leave an empty log behind that later reads
as "intact: 0 events". ``--within nan`` or ``1e309`` are usage errors, not tracebacks.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from replies_helpers import run_cli, send_example, with_replies_folder

from workspace import Workspace

# -- --within HOURS --------------------------------------------------------------------------

_OUT_OF_RANGE = ["nan", "NaN", "1e309", "inf", "-inf", "-1", "100001"]
_WITHIN_COMMANDS = {"overdue": ("overdue",), "chase": ("chase", "--dry-run")}


@pytest.mark.parametrize("hours", _OUT_OF_RANGE)
@pytest.mark.parametrize("command", sorted(_WITHIN_COMMANDS))
def test_within_out_of_range_is_a_usage_error(
    workspace: Workspace, command: str, hours: str
) -> None:
    """--within outside 0..100000 (nan and infinity too): exit 2 naming the option and the
    range; no traceback, nothing written."""
    send_example(workspace)
    before = workspace.log_path.stat().st_size
    args = (*_WITHIN_COMMANDS[command], "--within", hours, "--config", str(workspace.config))
    code, out, err = run_cli(*args)
    assert code == 2, err
    assert "Invalid value for '--within'" in err
    assert "is not in the range 0<=x<=100000" in err
    assert "Traceback" not in err and out == ""
    assert workspace.log_path.stat().st_size == before


@pytest.mark.parametrize("command", sorted(_WITHIN_COMMANDS))
def test_the_largest_within_lists_every_open_request(workspace: Workspace, command: str) -> None:
    """--within 100000 (the top of the range) works: every request sent is due within it."""
    sent = send_example(workspace)
    args = (*_WITHIN_COMMANDS[command], "--within", "100000", "--config", str(workspace.config))
    code, out, err = run_cli(*args)
    assert code in (0, 1), err
    assert sent["police"].request_ref in out


# -- a log that is not there -----------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def missing_log(
    request: pytest.FixtureRequest, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The workspace's config names a log that is not there: the start of the Error line.

    SQLite: a mistyped path. PostgreSQL: a schema of its own with no tables in it.
    """
    if request.param == "sqlite":
        with workspace.config.open("a", encoding="utf-8") as handle:
            handle.write('\n[log]\npath = "data/dispatch-log.sqlite"\n')
        path = workspace.root / "data" / "dispatch-log.sqlite"  # not .sqlite3: a typo
        yield f"Error: no dispatch log at {path}; check [log] path in the config (or [mash]"
        return
    dsn = os.environ.get("MASH_TEST_POSTGRES_DSN")
    if not dsn:
        pytest.skip("PostgreSQL tests need MASH_TEST_POSTGRES_DSN (see .ci/run)")
    import psycopg
    from psycopg import conninfo

    schema = f"nolog_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}".encode())
    monkeypatch.setenv(
        "MASH_NOLOG_TEST_DSN", conninfo.make_conninfo(dsn, options=f"-c search_path={schema}")
    )
    with workspace.config.open("a", encoding="utf-8") as handle:
        handle.write('\n[log]\nbackend = "postgres"\ndsn_env = "MASH_NOLOG_TEST_DSN"\n')
    try:
        yield "Error: no dispatch log at postgresql://"
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            tables = conn.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = %s", (schema,)
            ).fetchone()
            conn.execute(f"DROP SCHEMA {schema} CASCADE".encode())
        assert tables == (0,), "a command created the log's tables in an empty schema"


_NEED_A_LOG = {
    "overdue": ("overdue",),
    "overdue-within": ("overdue", "--within", "336"),
    "overdue-json": ("overdue", "--json"),
    "chase-dry-run": ("chase", "--dry-run"),
    "chase": ("chase",),
    "chase-request": ("chase", "--dry-run", "--request", "MASH-2026-0412-POLICE-1BAC7"),
    "reconcile": ("reconcile",),
    "replies-record": (
        "replies", "record", "MASH-2026-0412-POLICE-1BAC7",
        "--received", "2026-06-01 10:00", "--channel", "phone",
    ),
    "replies-fetch": ("replies", "fetch"),
    "replies-fetch-dry-run": ("replies", "fetch", "--dry-run"),
}  # fmt: skip


@pytest.mark.parametrize("args", list(_NEED_A_LOG.values()), ids=list(_NEED_A_LOG))
def test_a_command_that_reads_the_log_refuses_one_that_is_not_there(
    workspace: Workspace, missing_log: str, args: tuple[str, ...]
) -> None:
    """No log where [log] says: exit 2, "no dispatch log at …", and no log created."""
    with_replies_folder(workspace)
    before = sorted(p.relative_to(workspace.root) for p in workspace.root.rglob("*"))
    code, out, err = run_cli(*args, "--config", str(workspace.config))
    assert code == 2, (out, err)
    assert missing_log in err
    assert "(0 requests)" not in out and "Nothing to chase" not in out
    after = sorted(p.relative_to(workspace.root) for p in workspace.root.rglob("*"))
    assert after == before


def test_sending_still_creates_the_log(workspace: Workspace) -> None:
    """send-request on a fresh set-up creates the log (and overdue then reads it)."""
    assert not workspace.log_path.exists()
    send_example(workspace)
    assert workspace.log_path.is_file()
    code, _, err = run_cli("overdue", "--config", str(workspace.config))
    assert code == 0, err


@pytest.mark.parametrize("hours", [float("nan"), float("inf"), -1.0, 100_001.0])
def test_the_python_api_refuses_within_hours_out_of_range(
    workspace: Workspace, hours: float
) -> None:
    """overdue() and chase() from a script: InputError naming the argument, no traceback
    from deep inside (timedelta refuses nan and overflows on 1e309)."""
    import mash_requests
    from mash_requests.errors import InputError

    settings = mash_requests.load_settings(workspace.config)
    send_example(workspace)
    with pytest.raises(InputError, match="within_hours must be 0 to 100000 hours"):
        mash_requests.overdue(settings, within_hours=hours)
    with pytest.raises(InputError, match="within_hours must be 0 to 100000 hours"):
        mash_requests.chase(settings, within_hours=hours, dry_run=True)


def test_the_cli_and_the_library_share_the_within_bound() -> None:
    """The CLI keeps its own copy (so --help does not import the replies pipeline)."""
    from mash_requests.cli._common import MAX_WITHIN_HOURS as CLI_BOUND
    from mash_requests.replies.overdue import MAX_WITHIN_HOURS

    assert CLI_BOUND == MAX_WITHIN_HOURS
