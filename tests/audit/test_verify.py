"""Chain verification: an intact log verifies; every kind of tampering is caught and named."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from audit_helpers import RawLog, StoreFactory, prepared, sent

from mash_requests.audit import Event, EventKind, EventStore
from mash_requests.audit.chain import GENESIS_HASH, Chain
from mash_requests.audit.events import EVENT_FIELDS
from mash_requests.audit.verify import (
    Break,
    Checkpoint,
    make_checkpoint,
    read_checkpoint,
    verify_chain,
    write_checkpoint,
)
from mash_requests.errors import InputError, LogError

KEY = b"0123456789abcdef0123456789abcdef"


def fill(store: EventStore, n: int = 6) -> None:
    """Append ``n`` events alternating prepared/sent over several cases."""
    store.append_many([(prepared if i % 2 == 0 else sent)(f"C-{i // 2}") for i in range(n)])


# -- intact logs ---------------------------------------------------------------------------


def test_empty_log_is_intact(store: EventStore) -> None:
    """An empty log verifies with no events and the genesis hash as head."""
    result = verify_chain(store)
    assert (result.ok, result.count, result.head_seq, result.head_hash) == (
        True,
        0,
        0,
        GENESIS_HASH,
    )


def test_intact_log_verifies_with_its_head(store: EventStore) -> None:
    """An untouched log verifies; the head is the last event appended."""
    fill(store)
    last = store.append(sent("C-9"))
    result = verify_chain(store)
    assert result.ok
    assert (result.count, result.head_seq, result.head_hash) == (7, 7, last.hash)
    assert result.summary().startswith("intact: 7 events, head seq 7")


def test_keyed_log_verifies(store_factory: StoreFactory) -> None:
    """A log chained with HMAC-SHA256 verifies with its key."""
    store = store_factory(hmac_key=KEY)
    fill(store)
    assert verify_chain(store).ok


# -- tampering ---------------------------------------------------------------------------


@pytest.mark.parametrize("field", [f for f in EVENT_FIELDS if f != "kind"])
def test_edited_event_field_is_caught(store: EventStore, raw: RawLog, field: str) -> None:
    """Changing any field of a stored record, without re-hashing, is 'changed' at that event."""
    fill(store)
    value: object = {"recipients": ["x@evil.example"], "details": {"x": 1}}.get(field, "forged")
    if field in ("form_size", "form_pages", "attempt"):
        value = 99
    if field == "wait_seconds":
        value = 9.5
    raw.edit_event(3, field, value)
    result = verify_chain(store)
    assert (result.ok, result.broken_seq, result.problem) == (False, 3, Break.CHANGED)
    assert result.count == 2


def test_edited_kind_is_caught(store: EventStore, raw: RawLog) -> None:
    """Turning a 'prepared' into a 'sent' is caught as 'changed'."""
    fill(store)
    raw.edit_event(1, "kind", "sent")
    result = verify_chain(store)
    assert (result.broken_seq, result.problem) == (1, Break.CHANGED)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("case_ref", "C-other"),
        ("request_ref", "R-other"),
        ("request_key", "k-other"),
        ("partner", "housing"),
        ("gateway", "graph"),
        ("sender", "evil@example.org"),
        ("form_sha256", "00" * 32),
        ("kind", "failed"),
        ("recorded_at", "2020-01-01T00:00:00.000000Z"),
        ("prev_hash", "f" * 64),
        ("hash", "e" * 64),
        ("record", "{}"),
    ],
)
def test_edited_column_is_caught(store: EventStore, raw: RawLog, column: str, value: str) -> None:
    """Changing a stored column so it disagrees with the hashed record is 'changed'."""
    fill(store)
    raw.set_column(4, column, value)
    result = verify_chain(store)
    assert (result.ok, result.broken_seq, result.problem) == (False, 4, Break.CHANGED)


def test_edit_rehashed_with_sha256_breaks_the_next_link(store: EventStore, raw: RawLog) -> None:
    """An edit re-hashed by someone who knows SHA-256 breaks the link from the next event."""
    fill(store)
    raw.edit_event(3, "partner", "housing", rehash_with=Chain())
    result = verify_chain(store)
    assert (result.broken_seq, result.problem) == (4, Break.HASH_MISMATCH)


def test_rehashed_edit_of_keyed_log_is_caught_at_the_event(
    store_factory: StoreFactory,
) -> None:
    """Without the HMAC key, a re-hashed edit does not even match its own hash."""
    store = store_factory(hmac_key=KEY)
    fill(store)
    with RawLog.open(store) as raw:
        raw.edit_event(3, "partner", "housing", rehash_with=Chain())
    result = verify_chain(store)
    assert (result.broken_seq, result.problem) == (3, Break.CHANGED)


def test_deleted_event_is_caught_as_removed(store: EventStore, raw: RawLog) -> None:
    """Deleting an event leaves a gap in seq: 'removed' at the missing seq."""
    fill(store)
    raw.delete(3)
    result = verify_chain(store)
    assert (result.broken_seq, result.problem) == (3, Break.REMOVED)
    assert "event 3 is missing" in result.detail


def test_deleted_first_event_is_caught(store: EventStore, raw: RawLog) -> None:
    """Deleting the first event is caught: the log must start at seq 1."""
    fill(store)
    raw.delete(1)
    result = verify_chain(store)
    assert (result.broken_seq, result.problem) == (1, Break.REMOVED)


def test_deleted_and_renumbered_is_caught_as_removed(store: EventStore, raw: RawLog) -> None:
    """Deleting an event and renumbering the rest to close the gap is still 'removed'."""
    fill(store)
    raw.delete(3)
    raw.shift(3, -1)
    result = verify_chain(store)
    assert (result.broken_seq, result.problem) == (3, Break.REMOVED)


def test_inserted_event_is_caught(store: EventStore, raw: RawLog) -> None:
    """A well-formed event slipped in (later ones renumbered) is 'inserted' at its seq."""
    fill(store)
    forged = Event(EventKind.SENT, "C-1", partner="police", form_sha256="ab" * 32)
    raw.insert_after(2, forged.to_record(), Chain())
    result = verify_chain(store)
    assert (result.broken_seq, result.problem) == (3, Break.INSERTED)


@pytest.mark.parametrize(("a", "b"), [(2, 3), (2, 5), (1, 6)])
def test_swapped_events_are_caught_as_reordered(
    store: EventStore, raw: RawLog, a: int, b: int
) -> None:
    """Exchanging the places of two events is 'reordered' at the first of them."""
    fill(store)
    raw.swap(a, b)
    result = verify_chain(store)
    assert (result.broken_seq, result.problem) == (a, Break.REORDERED)


def test_removed_newest_event_needs_a_checkpoint(store: EventStore, raw: RawLog) -> None:
    """Removing the newest event leaves a valid shorter chain; a checkpoint catches it."""
    fill(store)
    checkpoint = make_checkpoint(store)
    raw.delete(6)
    assert verify_chain(store).ok  # the chain alone cannot tell
    result = verify_chain(store, checkpoint=checkpoint)
    assert (result.ok, result.broken_seq, result.problem) == (False, 6, Break.REMOVED)
    assert "newest events were removed" in result.detail


def test_rewritten_newest_event_is_caught_by_checkpoint(store: EventStore, raw: RawLog) -> None:
    """A re-hashed edit of the newest event is invisible to the chain but not to a checkpoint."""
    fill(store)
    checkpoint = make_checkpoint(store)
    raw.edit_event(6, "partner", "housing", rehash_with=Chain())
    assert verify_chain(store).ok
    result = verify_chain(store, checkpoint=checkpoint)
    assert (result.broken_seq, result.problem) == (6, Break.HASH_MISMATCH)


def test_replaced_tail_is_caught_by_checkpoint(store: EventStore, raw: RawLog) -> None:
    """Removing the tail and appending new events over it does not fool a checkpoint."""
    fill(store)
    checkpoint = make_checkpoint(store)
    raw.delete(6)
    store.append(sent("C-forged"))
    result = verify_chain(store, checkpoint=checkpoint)
    assert (result.broken_seq, result.problem) == (6, Break.HASH_MISMATCH)


def test_forged_append_to_keyed_log_is_caught(store_factory: StoreFactory) -> None:
    """Without the key, an event added after the newest one cannot be made to verify."""
    store = store_factory(hmac_key=KEY)
    fill(store)
    forged = Event(EventKind.SENT, "C-1", partner="police", form_sha256="ab" * 32)
    with RawLog.open(store) as raw:
        raw.insert_after(6, forged.to_record(), Chain())
    result = verify_chain(store)
    assert (result.broken_seq, result.problem) == (7, Break.CHANGED)


# -- checkpoints ---------------------------------------------------------------------------


def test_log_that_grew_still_extends_its_checkpoint(store: EventStore) -> None:
    """Events appended after a checkpoint keep the log verifying against it."""
    fill(store)
    checkpoint = make_checkpoint(store)
    store.append(sent("C-new"))
    result = verify_chain(store, checkpoint=checkpoint)
    assert result.ok
    assert result.count == 7
    assert "extends the checkpoint" in result.summary()


def test_checkpoint_records_the_head(store: EventStore) -> None:
    """A checkpoint holds the count, seq and hash of the newest event, and when it was made."""
    fill(store, 4)
    head = store.append(sent("C-9"))
    before = datetime.now(UTC)
    checkpoint = make_checkpoint(store)
    assert (checkpoint.count, checkpoint.seq, checkpoint.hash) == (5, 5, head.hash)
    assert checkpoint.time >= before


def test_broken_log_is_not_checkpointed(store: EventStore, raw: RawLog) -> None:
    """make_checkpoint refuses a log that does not verify."""
    fill(store)
    raw.delete(2)
    with pytest.raises(LogError, match="not checkpointed because it is broken"):
        make_checkpoint(store)


def test_checkpoint_file_round_trip(store: EventStore, tmp_path: Path) -> None:
    """A checkpoint written to a file reads back equal."""
    fill(store)
    checkpoint = make_checkpoint(store)
    path = tmp_path / "sub" / "checkpoint.json"
    write_checkpoint(checkpoint, path)
    assert read_checkpoint(path) == checkpoint


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not JSON"),
        ('{"format": "something else"}', "not a dispatch-log checkpoint"),
        (
            '{"format": "mash-requests dispatch-log checkpoint", "version": 9}',
            "version 9 is not supported",
        ),
        (
            '{"format": "mash-requests dispatch-log checkpoint", "version": 1, "count": 1}',
            "missing or invalid field",
        ),
        (
            '{"format": "mash-requests dispatch-log checkpoint", "version": 1, "count": 1,'
            ' "seq": 1, "hash": "abc", "time": "2026-01-01T00:00:00.000000Z"}',
            "count, seq or hash is not valid",
        ),
    ],
)
def test_bad_checkpoint_file_is_refused(tmp_path: Path, content: str, message: str) -> None:
    """A checkpoint file that is not one is refused naming the file."""
    path = tmp_path / "cp.json"
    path.write_text(content)
    with pytest.raises(InputError, match=f"checkpoint {path}: {message}"):
        read_checkpoint(path)


def test_missing_checkpoint_file_is_refused(tmp_path: Path) -> None:
    """A checkpoint path that does not exist names the file."""
    with pytest.raises(InputError, match="cannot read"):
        read_checkpoint(tmp_path / "nope.json")


def test_checkpoint_from_another_log_is_caught(store_factory: StoreFactory) -> None:
    """A checkpoint of a different log does not verify against this one."""
    one, other = store_factory(), store_factory()
    fill(one)
    fill(other, 7)
    checkpoint = make_checkpoint(one)
    assert isinstance(checkpoint, Checkpoint)
    result = verify_chain(other, checkpoint=checkpoint)
    assert (result.ok, result.problem) == (False, Break.HASH_MISMATCH)
