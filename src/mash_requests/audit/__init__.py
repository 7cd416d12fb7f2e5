"""The dispatch log: a tamper-evident, append-only record of every request for information.

What it holds, and what it never holds
--------------------------------------
The log keeps what evidence needs and nothing more (data minimisation, UK GDPR art. 5(1)(c),
DPA 2018 and the ICO's data sharing code): the case reference, request reference, partner
agency, recipient addresses, times, gateway ids, the referral form's SHA-256, size and page
count, the template, the operator and the outcome. It **never** holds the message body, the
referral form itself, or any detail of the child or family. Those live in the case system;
the log proves what was sent where and when, and that the referral form was attached,
without becoming a second copy of the case file that must itself be protected for 35 years.

How it is kept
--------------
Each event is stored as a canonical JSON record chained to the one before by its hash
(:mod:`~mash_requests.audit.chain`), in SQLite (default, :mod:`~mash_requests.audit.sqlite`)
or PostgreSQL (:mod:`~mash_requests.audit.postgres`). Both refuse UPDATE and DELETE in the
database itself; :func:`~mash_requests.audit.verify.verify_chain` proves nothing was changed,
removed, inserted or reordered, and a checkpoint kept elsewhere proves the tail is all there.

Configuration (``[log]``)::

    [log]
    backend = "sqlite"                      # or "postgres"
    path = "mash-data/dispatch-log.sqlite3"  # sqlite; default <data_dir>/dispatch-log.sqlite3
    dsn_env = "MASH_LOG_DSN"                 # postgres: DSN from the environment (or dsn_file)
    hmac_key_file = "/etc/mash/log.key"      # optional: HMAC-SHA256 chain (or hmac_key_env)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mash_requests._tables import Table
from mash_requests.audit.events import (
    TERMINAL_KINDS,
    Event,
    EventFilter,
    EventKind,
    EventStore,
    StoredEvent,
)

BACKENDS = ("sqlite", "postgres")

#: The file name of the SQLite log inside the data folder when ``path`` is not given.
DEFAULT_SQLITE_NAME = "dispatch-log.sqlite3"

#: An HMAC key shorter than this is refused: it would be guessable.
MIN_HMAC_KEY_LENGTH = 32


@dataclass(frozen=True)
class LogSettings:
    """Where the dispatch log lives and how its chain is hashed (validated ``[log]``).

    ``dsn`` and ``hmac_key`` come from the environment or a file, never the config text, and
    are kept out of ``repr`` because a DSN may carry a password.
    """

    backend: str = "sqlite"
    path: Path = Path("mash-data") / DEFAULT_SQLITE_NAME
    dsn: str | None = field(default=None, repr=False)
    hmac_key: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_table(cls, table: Table, *, data_dir: Path) -> LogSettings:
        """Validate the ``[log]`` table; ConfigError names the key. Opens no database."""
        backend = table.choice("backend", BACKENDS, "sqlite")
        path = table.path("path")
        dsn: str | None = None
        if backend == "postgres":
            if path is not None:
                raise table.error("path", 'is only used with backend = "sqlite"; remove it')
            dsn = table.secret("dsn")
        else:
            if "dsn_env" in table.data or "dsn_file" in table.data or "dsn" in table.data:
                raise table.error("dsn", 'is only used with backend = "postgres"')
        key_text = table.secret("hmac_key", required=False)
        table.reject_unknown()
        hmac_key: bytes | None = None
        if key_text is not None:
            if len(key_text) < MIN_HMAC_KEY_LENGTH:
                raise table.error(
                    "hmac_key",
                    f"must be at least {MIN_HMAC_KEY_LENGTH} characters; make one with "
                    'python -c "import secrets; print(secrets.token_hex(32))"',
                )
            hmac_key = key_text.encode("utf-8")
        return cls(
            backend=backend,
            path=path if path is not None else data_dir / DEFAULT_SQLITE_NAME,
            dsn=dsn,
            hmac_key=hmac_key,
        )


def open_store(settings: LogSettings, *, must_exist: bool = False) -> EventStore:
    """Open the configured log, creating its folder and schema on first use.

    With ``must_exist`` (for readers: verify, query, report) a log that does not exist yet
    is not created: ConfigError says there is no dispatch log there. Raises LogError naming
    the file or database when it cannot be opened, and when the configured HMAC key does
    not match the one the log was created with.
    """
    if settings.backend == "postgres":
        from mash_requests.audit.postgres import PostgresEventStore

        if settings.dsn is None:
            raise ValueError("LogSettings for postgres needs a dsn")
        return PostgresEventStore(settings.dsn, hmac_key=settings.hmac_key, must_exist=must_exist)
    from mash_requests.audit.sqlite import SQLiteEventStore

    return SQLiteEventStore(settings.path, hmac_key=settings.hmac_key, must_exist=must_exist)


__all__ = [
    "TERMINAL_KINDS",
    "Event",
    "EventFilter",
    "EventKind",
    "EventStore",
    "LogSettings",
    "StoredEvent",
    "open_store",
]
