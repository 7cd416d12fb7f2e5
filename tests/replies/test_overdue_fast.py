"""``overdue`` from the store's SQL selection gives exactly what folding the whole log gives.

The stores pick out in SQL the request keys that may still be open (``open_request_events``)
and the fold reads only their events. These tests write random histories — resends, replies
to earlier references, failures, reconciliations, bounces, chasers, automatic replies, keys
that share a reference, prepared events without a key — and compare, on SQLite and
PostgreSQL, the selection's fold and the ``overdue`` list with the whole log's.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mash_requests.audit import open_store
from mash_requests.audit import sqlite as sqlite_store
from mash_requests.audit._open_requests import INDEX_NAME, candidates_sql
from mash_requests.audit.events import Event, EventFilter, EventKind, EventStore, StoredEvent
from mash_requests.audit.sqlite import SQLiteEventStore
from mash_requests.config import Settings, load_settings
from mash_requests.replies import overdue, tracking
from mash_requests.replies.tracking import (
    TRACKED_KINDS,
    OpenRequests,
    OpenRequestSource,
    from_selection,
    open_requests,
)
from workspace import Workspace

NOW = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)  # a Monday, 10:00 in London (GMT)

OPERATIONS = (
    "prepare", "resend", "sent", "sent", "failed", "unconfirmed", "reconciled_sent",
    "reconciled_not_found", "replied", "replied", "replied_earlier", "bounced", "chased",
    "auto_reply", "shared_ref", "no_key", "same_ref_again",
)  # fmt: skip


class FoldOnly:
    """A store seen through ``events`` only: what every store offered before the selection."""

    def __init__(self, store: EventStore) -> None:
        self._store = store

    def events(self, where: EventFilter | None = None) -> Iterator[StoredEvent]:
        return self._store.events(where)

    def close(self) -> None:
        """The caller's store stays open."""


class History:
    """Writes a random history of requests as the commands would, with chosen due times."""

    PARTNERS = ("police", "health", "education")

    def __init__(self, store: EventStore, rng: random.Random) -> None:
        self.store = store
        self.rng = rng
        #: Each key's references, oldest first (None: prepared without a request key).
        self.keys: dict[str, list[str]] = {}
        self.no_key: set[str] = set()
        self.count = 0

    def _new_ref(self, partner: str) -> str:
        self.count += 1
        return f"MASH-2026-{self.count:04d}-{partner.upper()}-{self.count:05X}"

    def _fields(self, ref: str, key: str | None) -> dict[str, Any]:
        partner = ref.rsplit("-", 2)[1].lower()
        return {
            "case_ref": ref.rsplit("-", 2)[0],
            "request_ref": ref,
            "request_key": key,
            "partner": partner,
            "message_id": f"<{ref}.0123456789abcdef@testbury.gov.uk>",
        }

    def prepare(self, key: str | None, ref: str) -> None:
        rng = self.rng
        due = NOW + timedelta(hours=rng.choice([-300, -80, -30, -5, -1, 0.5, 2, 30, 200]))
        details: dict[str, Any] = {"rag": rng.choice(["red", "amber", "green", "purple"])}
        if rng.random() < 0.9:  # older logs have no due time: the timescales give it
            details["due"] = due.isoformat()
        self.store.append(Event(EventKind.PREPARED, details=details, **self._fields(ref, key)))
        name = key if key is not None else ref
        self.keys.setdefault(name, []).append(ref)
        if key is None:
            self.no_key.add(name)

    def follow_up(self, kind: EventKind, ref: str, **details: Any) -> None:
        # Follow-up events carry the key only in details, as the reply commands write them.
        fields = self._fields(ref, None)
        if kind in (EventKind.SENT, EventKind.FAILED, EventKind.UNCONFIRMED):
            fields["request_key"] = self._key_of(ref)
        self.store.append(Event(kind, details=details, **fields))

    def _key_of(self, ref: str) -> str | None:
        for key, refs in self.keys.items():
            if ref in refs:
                return None if key in self.no_key else key
        return None

    def step(self) -> None:
        rng = self.rng
        op = rng.choice(OPERATIONS)
        partner = rng.choice(self.PARTNERS)
        if op == "prepare" or not self.keys:
            self.prepare(f"key-{self.count + 1}", self._new_ref(partner))
            if rng.random() < 0.7:
                self.follow_up(EventKind.SENT, self.keys[f"key-{self.count}"][-1])
            return
        key = rng.choice(list(self.keys))
        refs = self.keys[key]
        latest = refs[-1]
        if op == "resend":
            self.prepare(None if key in self.no_key else key, self._new_ref(partner))
        elif op == "shared_ref":  # another key's prepared with the same reference
            self.prepare(f"key-{self.count + 1}-shared", rng.choice(refs))
            self.count += 1
        elif op == "no_key":
            self.prepare(None, self._new_ref(partner))
        elif op == "same_ref_again":
            self.prepare(None if key in self.no_key else key, latest)
        elif op == "replied_earlier":
            self.follow_up(EventKind.REPLIED, rng.choice(refs), channel="email")
        elif op == "replied":
            self.follow_up(EventKind.REPLIED, latest, channel="phone")
        elif op == "reconciled_sent":
            self.follow_up(EventKind.RECONCILED, latest, outcome="sent")
        elif op == "reconciled_not_found":
            self.follow_up(EventKind.RECONCILED, latest, outcome="not_found")
        elif op == "bounced":
            self.follow_up(EventKind.BOUNCED, latest, status=rng.choice(["5.1.1", None]))
        elif op == "auto_reply":
            self.follow_up(EventKind.AUTO_REPLY, latest, auto_type="out_of_office")
        elif op == "chased":  # a reminder's steps: only outcome "sent" (or none) counts
            outcome = rng.choice([None, "sent", "handing_over", "failed", "unconfirmed"])
            details = {} if outcome is None else {"outcome": outcome}
            self.follow_up(EventKind.CHASED, latest, **details)
        else:
            kind = {
                "sent": EventKind.SENT, "failed": EventKind.FAILED,
                "unconfirmed": EventKind.UNCONFIRMED,
            }[op]  # fmt: skip
            self.follow_up(kind, rng.choice(refs) if rng.random() < 0.2 else latest)


def whole_fold(store: EventStore) -> OpenRequests:
    state = OpenRequests()
    state.fold(store.events(EventFilter(kinds=TRACKED_KINDS)))
    return state


def selection(store: EventStore) -> OpenRequests:
    assert isinstance(store, OpenRequestSource)
    return from_selection(store)


# -- the fold, on random histories -------------------------------------------------------------


@given(seed=st.integers(min_value=0, max_value=2**32), steps=st.integers(0, 60))
@settings(max_examples=80, deadline=None)
def test_the_selection_folds_to_the_whole_fold_sqlite(
    seed: int, steps: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """SQLite: after any history, the selection's fold is the whole log's, seq and hash too."""
    store = SQLiteEventStore(tmp_path_factory.mktemp("fold") / "log.sqlite3")
    try:
        history = History(store, random.Random(seed))
        for _ in range(steps):
            history.step()
        chosen = selection(store)
        assert chosen.to_json() == whole_fold(store).to_json()
        # The cache holds each request as dataclasses.asdict would write it.
        assert chosen.to_json()["requests"] == [asdict(r) for r in chosen.by_key.values()]
    finally:
        store.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_selection_folds_to_the_whole_fold_on_each_backend(
    log_backend: str, workspace: Workspace, seed: int
) -> None:
    """SQLite and PostgreSQL: compared every 10 steps of a 300-step history."""
    store = open_store(load_settings(workspace.config).log)
    try:
        history = History(store, random.Random(seed))
        for step in range(300):
            history.step()
            if step % 10 == 9:
                assert selection(store).to_json() == whole_fold(store).to_json(), step
    finally:
        store.close()


def test_answered_requests_are_left_out_of_the_selection(
    log_backend: str, workspace: Workspace
) -> None:
    """The selection is small: an answered or failed request's events are not read at all."""
    store = open_store(load_settings(workspace.config).log)
    try:
        history = History(store, random.Random(9))
        for n in range(40):
            ref = history._new_ref("police")
            history.prepare(f"k{n}", ref)
            history.follow_up(EventKind.SENT, ref)
            if n % 10:
                history.follow_up(EventKind.REPLIED if n % 3 else EventKind.FAILED, ref)
        assert isinstance(store, OpenRequestSource)
        seq, hash_, events = store.open_request_events([str(k) for k in TRACKED_KINDS])
        assert {e.event.request_ref for e in events} == {
            history.keys[f"k{n}"][0] for n in (0, 10, 20, 30)
        }
        last = list(store.events())[-1]
        assert (seq, hash_) == (last.seq, last.hash)
    finally:
        store.close()


def test_an_empty_log_selects_nothing(log_backend: str, workspace: Workspace) -> None:
    store = open_store(load_settings(workspace.config).log)
    try:
        assert isinstance(store, OpenRequestSource)
        assert store.open_request_events([str(k) for k in TRACKED_KINDS]) == (0, "", [])
        assert selection(store).to_json() == OpenRequests().to_json()
    finally:
        store.close()


# -- the overdue list ----------------------------------------------------------------------------


@pytest.fixture
def working_hours_config(workspace: Workspace, log_backend: str) -> Settings:
    """The workspace's settings with amber counted in working hours, on each backend."""
    text = workspace.config.read_text().replace(
        "[directory]", '[timescales]\nworking_hours = ["amber"]\n\n[directory]'
    )
    workspace.config.write_text(text)
    return load_settings(workspace.config)


@pytest.mark.parametrize("seed", [4, 5])
def test_overdue_lists_what_the_whole_fold_lists(working_hours_config: Settings, seed: int) -> None:
    """The same items, field for field (working-hours lateness, bounces, chasers), in order."""
    config = working_hours_config
    store = open_store(config.log)
    try:
        history = History(store, random.Random(seed))
        for _ in range(250):
            history.step()
        # Whatever the history did, one request in each state the list shows.
        for n, kind in enumerate((EventKind.BOUNCED, EventKind.CHASED, EventKind.SENT)):
            ref = history._new_ref("health")
            history.prepare(f"last-{n}", ref)
            history.follow_up(EventKind.SENT, ref)
            history.follow_up(kind, ref)
        for within in (None, 3.0, 48.0):
            fast = overdue(config, now=NOW, within_hours=within, store=store, use_cache=False)
            slow = overdue(
                config, now=NOW, within_hours=within, store=FoldOnly(store), use_cache=False
            )  # type: ignore[arg-type]
            assert fast == slow
        states = {item.state for item in fast}
        assert {"bounced", "overdue", "due_soon"} <= states  # the history reached every state
        assert any(item.chasers for item in fast)
        assert any(item.hours_basis == "working" for item in fast)
    finally:
        store.close()


def test_a_cache_far_behind_is_replaced_by_the_selection(
    config_sqlite: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More than CATCH_UP_EVENTS behind: the store selects again rather than fold every event."""
    store = open_store(config_sqlite.log)
    try:
        history = History(store, random.Random(6))
        for _ in range(30):
            history.step()
        cache = config_sqlite.data_dir / "cache"
        open_requests(store, cache_dir=cache, location="x")
        for _ in range(30):
            history.step()
        calls: list[Sequence[str]] = []
        select = SQLiteEventStore.open_request_events

        def counted(self: SQLiteEventStore, kinds: Sequence[str]) -> Any:
            calls.append(kinds)
            return select(self, kinds)

        monkeypatch.setattr(SQLiteEventStore, "open_request_events", counted)
        monkeypatch.setattr(tracking, "CATCH_UP_EVENTS", 1000)
        continued = open_requests(store, cache_dir=cache, location="x")
        assert calls == []  # 30 events behind: continued from the cache
        for _ in range(10):
            history.step()
        monkeypatch.setattr(tracking, "CATCH_UP_EVENTS", 5)
        replaced = open_requests(store, cache_dir=cache, location="x")
        assert len(calls) == 1
        assert replaced.to_json() == whole_fold(store).to_json()
        assert continued.seq < replaced.seq
        # … and the cache now continues from where the selection ended.
        assert open_requests(store, cache_dir=cache, location="x").to_json() == replaced.to_json()
    finally:
        store.close()


@pytest.fixture
def config_sqlite(workspace: Workspace) -> Settings:
    return load_settings(workspace.config)


# -- the index, and logs made before it ------------------------------------------------------


def test_sqlite_reads_the_index_not_the_records(tmp_path: Path) -> None:
    """The selection scans the covering index (a plan without it reads the whole log)."""
    store = SQLiteEventStore(tmp_path / "log.sqlite3")
    store.close()
    conn = sqlite3.connect(tmp_path / "log.sqlite3")
    try:
        sql = candidates_sql([str(k) for k in TRACKED_KINDS])
        plan = " | ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql))
    finally:
        conn.close()
    assert f"COVERING INDEX {INDEX_NAME}" in plan
    assert "USING INDEX events_kind" not in plan and "SCAN events" not in plan


def test_a_log_made_before_the_index_gets_it_when_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A schema-1 SQLite log opens, is migrated (the index added), and keeps its events."""
    path = tmp_path / "log.sqlite3"
    with monkeypatch.context() as old:
        old.setattr(sqlite_store, "MIGRATIONS", sqlite_store.MIGRATIONS[:1])
        old.setattr(sqlite_store, "SCHEMA_VERSION", 1)
        store = SQLiteEventStore(path)
        history = History(store, random.Random(7))
        for _ in range(40):
            history.step()
        before = whole_fold(store).to_json()
        store.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone() == (1,)
    finally:
        conn.close()
    store = SQLiteEventStore(path)
    try:
        assert selection(store).to_json() == before
    finally:
        store.close()
    conn = sqlite3.connect(path)
    try:
        latest = sqlite_store.SCHEMA_VERSION
        assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone() == (latest,)
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert INDEX_NAME in indexes
    finally:
        conn.close()


@pytest.mark.postgres
def test_a_postgres_log_made_before_the_index_gets_it_when_opened(
    workspace: Workspace, log_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same on PostgreSQL: schema 1 is migrated on open, the index added."""
    if log_backend != "postgres":
        pytest.skip("PostgreSQL only")
    from mash_requests.audit import postgres as postgres_store

    config = load_settings(workspace.config)
    with monkeypatch.context() as old:
        old.setattr(postgres_store, "MIGRATIONS", postgres_store.MIGRATIONS[:1])
        old.setattr(postgres_store, "SCHEMA_VERSION", 1)
        store = open_store(config.log)
        history = History(store, random.Random(8))
        for _ in range(40):
            history.step()
        before = whole_fold(store).to_json()
        store.close()
    store = open_store(config.log)
    try:
        assert selection(store).to_json() == before
        assert isinstance(store, postgres_store.PostgresEventStore)
        conn = store._conn
        latest = postgres_store.SCHEMA_VERSION
        assert conn.execute(b"SELECT max(version) FROM schema_migrations").fetchone() == (latest,)
        assert conn.execute(b"SELECT to_regclass('events_request_cycle')").fetchone() != (None,)
    finally:
        store.close()


def test_without_the_index_the_selection_is_slower_but_the_same(tmp_path: Path) -> None:
    """A log whose index is missing (opened by a reader before a writer migrated it) still
    gives the whole fold's result, from the older indexes."""
    path = tmp_path / "log.sqlite3"
    store = SQLiteEventStore(path)
    try:
        history = History(store, random.Random(10))
        for _ in range(80):
            history.step()
        conn = sqlite3.connect(path)
        try:
            conn.execute(f"DROP INDEX {INDEX_NAME}")
            conn.commit()
        finally:
            conn.close()
        assert selection(store).to_json() == whole_fold(store).to_json()
    finally:
        store.close()
