"""The stores' fast read for ``overdue``: only the events of requests that may still be open.

:mod:`mash_requests.replies.tracking` folds the log into the requests still open. Folding a
million events in Python takes tens of seconds, yet nearly every request is answered. So the
stores narrow the log in SQL to the request keys that *may* still be open and return every
event of those keys (all their references, every cycle), which the same Python fold then
reads (SQLite in one statement, :func:`candidates_sql`; PostgreSQL in steps). The narrowing is
conservative, so the fold's result is the one it gives on the whole log:

- A reference is *unclosed* when its last ``prepared``, ``replied`` or ``failed`` event is a
  ``prepared``, or when it was prepared more than once. Every key that prepared an unclosed
  reference is read in full.
- So a key is left out only when its latest reference was prepared once, by this key, and
  has a ``replied`` or ``failed`` after that. When the fold reaches that event the reference
  is this key's alone, so the key closes; nothing but a new ``prepared`` opens it again, and
  there is none.
- Two keys can share a reference only by both preparing it (5 random characters can repeat):
  it is then unclosed, and both keys are read in full, as the fold needs.
- Whatever else closes a request (a reconciliation that found nothing, a reply to an earlier
  reference of the key) is left to the fold: those keys are read in full.

The index :data:`INDEX_NAME` (a migration of both stores) covers the first step, so it
reads one small index, not the events' records. Like the other indexes it is derived from the
events and holds nothing of its own: ``audit verify`` checks the events.

Like every reader, each step reads only the chain's rows (``seq`` 1..head): a row someone
stored around the log, with a seq of 0 or below or (PostgreSQL, the primary key dropped)
NULL, is neither folded nor the head. ``overdue`` says when there are any
(:func:`mash_requests.audit.query.outside_chain_warning`).
"""

from __future__ import annotations

from collections.abc import Sequence

from mash_requests.audit.events import EventKind

#: The index the query scans (added by a migration of both stores).
INDEX_NAME = "events_request_cycle"

#: Kinds the index holds: what opens a request's cycle, and what certainly closes it.
_OPENS = str(EventKind.PREPARED)
_CLOSES = (str(EventKind.FAILED), str(EventKind.REPLIED))
_CYCLE_KINDS = f"kind IN ('{_OPENS}', '{_CLOSES[0]}', '{_CLOSES[1]}')"

#: The migration's index: SQLite keeps ``seq`` (the rowid) in every index entry.
SQLITE_INDEX = (
    f"CREATE INDEX {INDEX_NAME} ON events (request_ref, kind, request_key) WHERE {_CYCLE_KINDS}"
)
#: The same for PostgreSQL, with ``seq`` in the entry so the scan never visits the table.
POSTGRES_INDEX = (
    f"CREATE INDEX {INDEX_NAME} ON events (request_ref, kind, request_key, seq)"
    f" WHERE {_CYCLE_KINDS}"
)
MIGRATION_DESCRIPTION = "index of prepared, replied and failed events by request reference"


def _literals(kinds: Sequence[str]) -> str:
    # Event kinds only (checked against the closed set), so they can be literals: a partial
    # index is used only when the query's condition is visibly the index's.
    return ", ".join(f"'{EventKind(kind)}'" for kind in kinds) or "NULL"


def maybe_open_keys_sql(*, indexed: bool = True) -> str:
    """SQLite: the fold's keys (``request_key``, or the reference without one) that may be
    open. No parameters.

    A reference is *unclosed* when its last event among those the index holds is a
    ``prepared``, or when it was prepared more than once (two keys can share it only then);
    every key that prepared an unclosed reference may be open. Only the chain's rows are
    read: ``+seq > 0``, whose unary plus stops the planner scanning a range of the rowid
    (= seq) in place of the index it is told to use (every index entry holds the rowid, so
    the test reads nothing more). The bare ``kind`` beside a single ``max(seq)`` is the kind
    of the row holding that maximum (documented SQLite behaviour). The planner is told which
    index to use: without statistics it prefers the ``kind`` index, which reads most of the
    log. Without ``indexed`` (a log opened by a reader before a writer added the index) the
    same query runs on the older indexes.
    """
    cycle = f"INDEXED BY {INDEX_NAME}" if indexed else ""
    return f"""
    WITH unclosed AS (
        SELECT request_ref, kind, max(seq) FROM events {cycle}
        WHERE {_CYCLE_KINDS} AND request_ref IS NOT NULL AND +seq > 0
        GROUP BY request_ref
        HAVING kind = '{_OPENS}' OR sum(kind = '{_OPENS}') > 1
    )
    SELECT DISTINCT {_FOLD_KEY} AS request_key
    FROM unclosed JOIN events e {cycle} ON e.request_ref = unclosed.request_ref
    WHERE e.{_CYCLE_KINDS} AND e.kind = '{_OPENS}' AND +e.seq > 0
    """  # noqa: S608  (constants only)


#: The fold's key: the request key, or the reference where there is none (or it is "").
_FOLD_KEY = "coalesce(nullif(e.request_key, ''), e.request_ref)"


def candidates_sql(kinds: Sequence[str], *, indexed: bool = True) -> str:
    """SQLite, in one statement: ``(seq, hash, record)`` of every event of ``kinds`` of the
    keys :func:`maybe_open_keys_sql` gives, every reference they prepared included."""
    return f"""
    WITH maybe_open AS ({maybe_open_keys_sql(indexed=indexed)}
    ), their_refs AS (
        SELECT e.request_ref FROM maybe_open m JOIN events e ON e.request_key = m.request_key
        WHERE e.kind = '{_OPENS}' AND +e.seq > 0
        UNION
        SELECT e.request_ref FROM maybe_open m JOIN events e ON e.request_ref = m.request_key
        WHERE e.kind = '{_OPENS}' AND (e.request_key IS NULL OR e.request_key = '')
            AND +e.seq > 0
    )
    SELECT seq, hash, record FROM events INDEXED BY events_request_ref
    WHERE request_ref IN (SELECT request_ref FROM their_refs) AND kind IN ({_literals(kinds)})
        AND +seq > 0
    ORDER BY seq
    """  # noqa: S608  (constant kinds, checked; no value from outside)


# PostgreSQL, in steps: from one statement the planner guesses tens of thousands of keys
# where there are a few thousand, and reads the whole table. Each list goes back as an array
# joined through unnest, so that each of its values is one probe of an index.

#: Step 1: the unclosed references, as in :func:`maybe_open_keys_sql`.
POSTGRES_UNCLOSED_REFS = f"""
    SELECT request_ref FROM events
    WHERE {_CYCLE_KINDS} AND request_ref IS NOT NULL AND seq > 0
    GROUP BY request_ref
    HAVING max(seq) FILTER (WHERE kind = '{_OPENS}') = max(seq)
        OR count(*) FILTER (WHERE kind = '{_OPENS}') > 1
"""  # noqa: S608  (constants only)

#: Step 2: the keys that prepared those references (``%s``: the list of references).
POSTGRES_KEYS_OF_REFS = f"""
    SELECT DISTINCT {_FOLD_KEY}
    FROM unnest(%s::text[]) AS r(request_ref) JOIN events e ON e.request_ref = r.request_ref
    WHERE e.{_CYCLE_KINDS} AND e.kind = '{_OPENS}' AND e.seq > 0
"""  # noqa: S608  (constants only)

#: Step 3: every reference those keys prepared (``%s``: the list of keys). LATERAL makes each
#: key one probe of the ``request_key`` index (joined, the planner scans every prepared).
POSTGRES_REFS_OF_KEYS = """
    SELECT e.request_ref FROM unnest(%s::text[]) AS k(request_key), LATERAL (
        SELECT request_ref FROM events
        WHERE request_key = k.request_key AND kind = 'prepared' AND seq > 0
        UNION ALL
        SELECT request_ref FROM events
        WHERE request_ref = k.request_key AND kind = 'prepared'
            AND (request_key IS NULL OR request_key = '') AND seq > 0
    ) AS e
"""


def postgres_events_of_refs_sql(kinds: Sequence[str]) -> str:
    """Step 4: ``(seq, hash, record)`` of the events of ``kinds`` of the distinct references
    in ``%s`` (a list), in no order (sorting megabytes of records would spill to disk on the
    server; the caller sorts by seq)."""
    return (
        "SELECT e.seq, e.hash, e.record"  # noqa: S608  (constant kinds, checked)
        " FROM (SELECT DISTINCT unnest(%s::text[]) AS request_ref) AS r JOIN events e"
        " ON e.request_ref = r.request_ref"
        f" WHERE e.kind IN ({_literals(kinds)}) AND e.seq > 0"
    )


def head_sql(kinds: Sequence[str]) -> str:
    """``(seq, hash)`` of the last event of ``kinds`` (no row for none)."""
    return (
        f"SELECT seq, hash FROM events WHERE kind IN ({_literals(kinds)})"  # noqa: S608
        " AND seq > 0 ORDER BY seq DESC LIMIT 1"
    )
