"""Properties of the hash chain: any appends verify; any single tampering fails verification."""

from __future__ import annotations

from typing import Any

from audit_helpers import RawLog, StoreFactory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mash_requests.audit import Event, EventKind
from mash_requests.audit._rows import INDEXED_FIELDS
from mash_requests.audit.chain import Chain
from mash_requests.audit.verify import make_checkpoint, verify_chain

# No NUL (refused by the store) and no surrogates (not Unicode); anything else goes.
text = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=12)
optional_text = st.none() | text
scalar = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | text
    | st.floats(allow_nan=False, allow_infinity=False)
)

events = st.builds(
    Event,
    kind=st.sampled_from(list(EventKind)),
    case_ref=text,
    request_ref=optional_text,
    request_key=optional_text,
    partner=optional_text,
    recipients=st.lists(text, max_size=3).map(tuple),
    gateway=optional_text,
    sender=optional_text,
    form_sha256=optional_text,
    form_size=st.none() | st.integers(0, 2**40),
    attempt=st.none() | st.integers(1, 10),
    wait_seconds=st.none() | st.floats(0, 1e6, allow_nan=False),
    detail=optional_text,
    details=st.dictionaries(text, scalar, max_size=3),
)

SETTINGS = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

MUTATIONS = [
    "edit_field",
    "edit_field_rehashed",
    "edit_column",
    "delete",
    "delete_renumber",
    "swap",
    "insert",
]


@SETTINGS
@given(batches=st.lists(st.lists(events, min_size=1, max_size=4), max_size=6))
def test_any_sequence_of_appends_verifies(
    store_factory: StoreFactory, batches: list[list[Event]]
) -> None:
    """Whatever events are appended, singly or in batches, the log verifies and reads back."""
    store = store_factory()
    try:
        for batch in batches:
            if len(batch) == 1:
                store.append(batch[0])
            else:
                store.append_many(batch)
        appended = [event for batch in batches for event in batch]
        result = verify_chain(store)
        assert result.ok, result.summary()
        assert result.count == len(appended)
        assert [s.event for s in store.events()] == appended
    finally:
        store.close()


def _different(value: Any) -> Any:
    """A value of the same shape that is certainly not ``value``."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value + 1.5 if value < 1e300 else 0.0
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, list):
        return [*value, "x@example.org"]
    if isinstance(value, dict):
        return {**value, "forged": True}
    return "forged"


@SETTINGS
@given(
    log=st.lists(events, min_size=2, max_size=8),
    mutation=st.sampled_from(MUTATIONS),
    data=st.data(),
)
def test_any_single_tampering_fails_verification(
    store_factory: StoreFactory, log: list[Event], mutation: str, data: st.DataObject
) -> None:
    """One edit, deletion, swap or insertion anywhere fails verification against a checkpoint."""
    store = store_factory()
    try:
        store.append_many(log)
        checkpoint = make_checkpoint(store)
        n = len(log)
        seq = data.draw(st.integers(1, n), label="seq")
        with RawLog.open(store) as raw:
            if mutation.startswith("edit_field"):
                field = data.draw(st.sampled_from(sorted(raw.record(seq)["event"])), label="field")
                old = raw.record(seq)["event"][field]
                new = next(k for k in EventKind if k != old) if field == "kind" else _different(old)
                rehash = Chain() if mutation == "edit_field_rehashed" else None
                raw.edit_event(seq, field, new, rehash_with=rehash)
            elif mutation == "edit_column":
                column = data.draw(
                    st.sampled_from(["hash", "prev_hash", "recorded_at", *INDEXED_FIELDS]),
                    label="column",
                )
                ((old,),) = raw.execute(f"SELECT {column} FROM events WHERE seq = ?", [seq])  # noqa: S608
                if column == "recorded_at":
                    new = "1999-01-01T00:00:00.000000Z"
                elif column == "kind":
                    new = "sent" if old != "sent" else "failed"
                else:
                    new = _different(old or "")
                raw.set_column(seq, column, new)
            elif mutation == "delete":
                raw.delete(seq)
            elif mutation == "delete_renumber":
                raw.delete(seq)
                raw.shift(seq, -1)
            elif mutation == "swap":
                other = data.draw(st.integers(1, n).filter(lambda s: s != seq), label="other")
                raw.swap(seq, other)
            else:  # insert; after the newest event it would be an append (see test_verify)
                after = data.draw(st.integers(1, n - 1), label="after")
                forged = Event(EventKind.SENT, "C-forged", form_sha256="ab" * 32)
                raw.insert_after(after, forged.to_record(), Chain())
        result = verify_chain(store, checkpoint=checkpoint)
        assert not result.ok, f"{mutation} at {seq} went unnoticed"
        assert result.broken_seq is not None
    finally:
        store.close()
