"""The verifier's fast path passes exactly the rows its full check passes, and no others.

verify_chain checks most rows in bulk (SQLite compares record and columns itself; for
PostgreSQL the verifier does, without building ChainRow objects) and judges any row that
does not pass with the full check. These tests compare it with the full check alone, on
intact logs and on every kind of tampering, including column values chosen to slip through
a comparison that is not type- and byte-exact.
"""

from __future__ import annotations

from typing import Any

import pytest
from audit_helpers import RawLog, StoreFactory, canonical, prepared, sent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_properties import MUTATIONS, _different, events

from mash_requests.audit import Event, EventKind, EventStore
from mash_requests.audit._rows import INDEXED_FIELDS, ChainSource
from mash_requests.audit.chain import Chain
from mash_requests.audit.verify import Break, Checkpoint, VerifyResult, _Verifier, make_checkpoint

KEY = b"0123456789abcdef0123456789abcdef"


def both(
    store: EventStore, checkpoint: Checkpoint | None = None
) -> tuple[VerifyResult, VerifyResult, int]:
    """(fast result, full-check result, rows the fast path left to the full check)."""
    assert isinstance(store, ChainSource)
    fast = _Verifier(store, checkpoint)
    result = fast.run()
    return result, _Verifier(store, checkpoint, fast=False).run(), fast.judged_exactly


def test_ordinary_events_all_pass_the_fast_check(store_factory: StoreFactory) -> None:
    """An intact log of everyday events, text with quotes and accents included, needs no row
    judged by the full check."""
    for key in (None, KEY):
        store = store_factory(hmac_key=key)
        store.append_many(
            [
                prepared("MASH-1", details={"rag": "amber", "note": 'said "urgent"\n'}),
                sent("MASH-1", partner='Éducation "nord" \\ 1', server_message="250 OK"),
                Event(EventKind.REJECTED, "MASH-2", reason="no_form", detail="l'école\tnord"),
                Event(EventKind.ATTEMPT_FAILED, "MASH-3", attempt=1, wait_seconds=2.5),
            ]
        )
        result, exact, judged = both(store)
        assert result == exact
        assert (result.ok, result.count, judged) == (True, 4, 0)


@pytest.mark.parametrize(
    "value",
    [
        "police\x01",  # a control character: JSON escapes it
        'police"',
        "police\\",
        "pólice",
        "Police",
        "police ",
    ],
)
def test_column_changed_to_a_near_copy_is_caught(
    store: EventStore, raw: RawLog, value: str
) -> None:
    """A column edited to a value that differs from the record only by escaping or case is
    'changed', as the full check says."""
    store.append_many([prepared("C-1"), sent("C-1"), prepared("C-2")])
    raw.set_column(2, "partner", value)
    result, exact, _ = both(store)
    assert result == exact
    assert (result.broken_seq, result.problem) == (2, Break.CHANGED)


def test_column_with_nul_is_caught_on_sqlite(store_factory: StoreFactory, backend: str) -> None:
    """A column holding the record's value followed by NUL and more text is 'changed' (SQLite;
    PostgreSQL cannot store NUL in text)."""
    if backend != "sqlite":
        pytest.skip("PostgreSQL text cannot hold NUL")
    store = store_factory()
    store.append_many([prepared("C-1"), sent("C-1")])
    with RawLog.open(store) as raw:
        raw.set_column(2, "partner", "police\x00housing")
    result, exact, _ = both(store)
    assert result == exact
    assert (result.broken_seq, result.problem) == (2, Break.CHANGED)


@pytest.mark.parametrize("column", ["partner", "prev_hash", "recorded_at", "hash", "record"])
def test_blob_column_is_caught_on_sqlite(
    store_factory: StoreFactory, backend: str, column: str
) -> None:
    """A column rewritten as a BLOB of the same bytes is 'changed' (SQLite stores any type)."""
    if backend != "sqlite":
        pytest.skip("PostgreSQL columns are typed")
    store = store_factory()
    store.append_many([prepared("C-1"), sent("C-1"), prepared("C-2")])
    with RawLog.open(store) as raw:
        ((value,),) = raw.execute(f"SELECT {column} FROM events WHERE seq = 2")  # noqa: S608
        raw.set_column(2, column, str(value).encode())
    result, exact, _ = both(store)
    assert result == exact
    assert (result.broken_seq, result.problem) == (2, Break.CHANGED)


def test_record_with_an_integer_where_a_column_holds_text_is_caught(
    store: EventStore, raw: RawLog
) -> None:
    """A re-hashed record saying partner 5 where the column says "5" is 'changed' as before:
    5 and "5" are different values, however a database compares them."""
    store.append_many([prepared("C-1"), sent("C-1"), prepared("C-2")])
    raw.edit_event(2, "partner", 5, rehash_with=Chain())
    raw.set_column(2, "partner", "5")
    result, exact, _ = both(store)
    assert result == exact
    assert (result.broken_seq, result.problem) == (2, Break.CHANGED)


def test_record_with_whitespace_around_it_is_judged_as_by_the_full_check(
    store: EventStore, raw: RawLog
) -> None:
    """A (re-hashed) record with whitespace around its JSON, which json.loads accepts but the
    PostgreSQL fast path leaves to the full check, verifies and reads back as before."""
    store.append_many([prepared("C-1"), sent("C-1"), prepared("C-2")])
    text = " " + canonical(raw.record(2)) + "\n"
    with raw.unguarded():
        raw.execute(
            "UPDATE events SET record = ?, hash = ? WHERE seq = 2",
            [text, Chain().digest(text.encode())],
        )
    result, exact, _ = both(store)
    assert result == exact
    # Intact in itself; its new hash no longer matches what the next event links to.
    assert (result.broken_seq, result.problem) == (3, Break.HASH_MISMATCH)
    assert [e.event.case_ref for e in store.events()] == ["C-1", "C-1", "C-2"]


SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

#: Column values an attacker might try: other types, and near copies of the stored text.
ODD_VALUES = st.sampled_from(["", " ", "\x01", '"', "\\", "é", "null", "0", 0, 1.5])


@SETTINGS
@given(
    log=st.lists(events, min_size=2, max_size=6),
    mutation=st.sampled_from([*MUTATIONS, "odd_column", "none"]),
    keyed=st.booleans(),
    with_checkpoint=st.booleans(),
    data=st.data(),
)
def test_fast_path_and_full_check_always_agree(
    store_factory: StoreFactory,
    log: list[Event],
    mutation: str,
    keyed: bool,
    with_checkpoint: bool,
    data: st.DataObject,
) -> None:
    """On any log, untouched or tampered with in any way, verify_chain's result is the full
    check's result, field for field."""
    store = store_factory(hmac_key=KEY if keyed else None)
    try:
        store.append_many(log)
        checkpoint = make_checkpoint(store) if with_checkpoint else None
        n = len(log)
        seq = data.draw(st.integers(1, n), label="seq")
        with RawLog.open(store) as raw:
            _tamper(raw, mutation, seq, n, data)
        result, exact, _ = both(store, checkpoint)
        assert result == exact
    finally:
        store.close()


def _tamper(raw: RawLog, mutation: str, seq: int, n: int, data: st.DataObject) -> None:
    if mutation.startswith("edit_field"):
        field = data.draw(st.sampled_from(sorted(raw.record(seq)["event"])), label="field")
        old = raw.record(seq)["event"][field]
        new = next(k for k in EventKind if k != old) if field == "kind" else _different(old)
        raw.edit_event(
            seq, field, new, rehash_with=Chain() if mutation == "edit_field_rehashed" else None
        )
    elif mutation in ("edit_column", "odd_column"):
        column = data.draw(
            st.sampled_from(["hash", "prev_hash", "recorded_at", *INDEXED_FIELDS]), label="column"
        )
        ((old,),) = raw.execute(f"SELECT {column} FROM events WHERE seq = ?", [seq])  # noqa: S608
        new: Any = data.draw(ODD_VALUES, label="value")
        if mutation == "edit_column":
            new = _different(str(old or ""))
        if raw.backend == "postgres":
            if column == "recorded_at":
                new = "1999-01-01T00:00:00.000000Z"
            elif not isinstance(new, str) or (column in ("kind", "case_ref") and new == ""):
                new = str(new)
        raw.set_column(seq, column, new)
    elif mutation == "delete":
        raw.delete(seq)
    elif mutation == "delete_renumber":
        raw.delete(seq)
        raw.shift(seq, -1)
    elif mutation == "swap" and n > 1:
        other = data.draw(st.integers(1, n).filter(lambda s: s != seq), label="other")
        raw.swap(seq, other)
    elif mutation == "insert":
        after = data.draw(st.integers(1, n), label="after")
        forged = Event(EventKind.SENT, "C-forged", form_sha256="ab" * 32)
        raw.insert_after(after, forged.to_record(), Chain())
