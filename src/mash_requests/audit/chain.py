"""The hash chain: how one event is written down and fingerprinted.

Every stored event is kept as one *canonical record*: a JSON object holding the format
version ``v``, ``seq``, ``recorded_at``, ``prev_hash`` and the event's fields under
``event``; keys sorted, no whitespace, UTF-8 with non-ASCII characters kept as they are,
datetimes as ISO-8601 UTC with microseconds (``2026-11-26T16:17:00.123456Z``), floats as
Python's shortest round-tripping ``repr``. The event's hash is the SHA-256 of those bytes in
lowercase hex, or HMAC-SHA256 under a secret key when ``[log] hmac_key`` is configured (then
someone who can edit the database still cannot forge a chain that verifies). The first
event's ``prev_hash`` is :data:`GENESIS_HASH`.

Verification hashes the stored bytes, never a re-encoding, so a record written by this
version stays verifiable by a later one even if ``Event`` grows new fields.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from mash_requests.audit.events import EVENT_FIELDS, Event, EventKind
from mash_requests.errors import LogError

#: ``prev_hash`` of the first event of every log.
GENESIS_HASH = "0" * 64

#: Version of the canonical record layout, stored in each record as ``v``.
RECORD_VERSION = 1

#: Names a log records for how its hashes are made.
SHA256 = "sha256"
HMAC_SHA256 = "hmac-sha256"

# A fixed message whose HMAC is stored with the log so that a wrong key is noticed when the
# log is opened, not after days of events that can never verify. It reveals nothing of the key.
_KEY_CHECK_MESSAGE = b"mash-requests dispatch log key check v1"

_SCALARS = (str, int, float, bool, type(None))


def format_time(moment: datetime) -> str:
    """``moment`` as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC: fixed width, so it sorts as text.

    Naive datetimes are refused: a log that lasts decades must not depend on a server's
    local time zone.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"dispatch log times must be timezone-aware, got naive {moment!r}")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    """The inverse of :func:`format_time` (ValueError for anything else)."""
    if len(text) != 27 or text[-1] != "Z":
        raise ValueError(f"expected YYYY-MM-DDTHH:MM:SS.ffffffZ, got {text!r}")
    # fromisoformat is ~20x faster than strptime, which dominated reading events; since
    # Python 3.11 it reads the "Z" itself (as datetime.UTC).
    return datetime.fromisoformat(text)


class Chain:
    """Encodes records and computes their hashes for one log (with or without a key)."""

    def __init__(self, hmac_key: bytes | None = None) -> None:
        if hmac_key is not None and not hmac_key:
            raise ValueError("an HMAC key must not be empty")
        self._key = hmac_key

    @property
    def algorithm(self) -> str:
        """``"sha256"`` or ``"hmac-sha256"``: recorded with the log when it is created."""
        return SHA256 if self._key is None else HMAC_SHA256

    @property
    def key_check(self) -> str:
        """A value stored with a keyed log that proves a later key is the same key."""
        if self._key is None:
            return ""
        return hmac.new(self._key, _KEY_CHECK_MESSAGE, hashlib.sha256).hexdigest()

    def digest(self, data: bytes) -> str:
        """The lowercase hex hash of ``data`` under this chain's algorithm."""
        if self._key is None:
            return hashlib.sha256(data).hexdigest()
        # hmac.digest: the one-shot C path, several times faster than hmac.new per record.
        return hmac.digest(self._key, data, "sha256").hex()

    def seal(
        self, *, seq: int, recorded_at: datetime, prev_hash: str, event: Event
    ) -> tuple[str, str]:
        """``(record, hash)`` for an event about to be stored; the record is the stored text."""
        record = encode_record(seq=seq, recorded_at=recorded_at, prev_hash=prev_hash, event=event)
        return record, self.digest(record.encode("utf-8"))


def encode_record(*, seq: int, recorded_at: datetime, prev_hash: str, event: Event) -> str:
    """The canonical record of one event, as text (hash its UTF-8 bytes).

    Raises LogError naming the field when the event holds something JSON cannot carry
    faithfully (a non-scalar or non-finite detail, text that is not valid Unicode).
    """
    fields = event.to_record()
    _check_values(event, fields)
    document = {
        "v": RECORD_VERSION,
        "seq": seq,
        "recorded_at": format_time(recorded_at),
        "prev_hash": prev_hash,
        "event": fields,
    }
    text = json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        # e.g. a file name read with surrogateescape; it would be stored but never hash.
        raise LogError(
            f"event for case {event.case_ref!r} holds text that is not valid Unicode "
            f"({exc.reason}); it cannot be written to the dispatch log"
        ) from exc
    return text


def _check_values(event: Event, fields: Mapping[str, Any]) -> None:
    where = f"event {event.kind} for case {event.case_ref!r}"
    for name, value in fields.items():
        if name == "recipients":
            if not all(isinstance(item, str) and "\x00" not in item for item in value):
                raise LogError(f"{where}: recipients must all be strings without NUL")
        elif name == "details":
            for key, item in value.items():
                if not isinstance(key, str):
                    raise LogError(f"{where}: details keys must be strings, got {key!r}")
                if not isinstance(item, _SCALARS):
                    raise LogError(
                        f"{where}: details[{key!r}] must be a string, number, true/false or "
                        f"null, got {type(item).__name__}"
                    )
                _check_finite(where, f"details[{key!r}]", item)
        elif not isinstance(value, _SCALARS):
            raise LogError(f"{where}: {name} must be a scalar, got {type(value).__name__}")
        else:
            _check_finite(where, name, value)


def _check_finite(where: str, name: str, value: object) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise LogError(f"{where}: {name} must be a finite number, got {value!r}")
    # PostgreSQL text cannot hold NUL; refusing it on every backend keeps logs portable.
    if isinstance(value, str) and "\x00" in value:
        raise LogError(f"{where}: {name} contains a NUL character")


#: json.loads without its whitespace handling, ~20% quicker on a record.
_RAW_DECODE = json.JSONDecoder().raw_decode


def decode_record(record: str) -> dict[str, Any]:
    """The stored record as a dict; ValueError when it is not a record of this format."""
    try:
        document, end = _RAW_DECODE(record)
    except (ValueError, TypeError):
        end = -1
    if end != len(record):
        document = json.loads(record)  # whitespace around it, or no JSON: as json.loads says
    if not isinstance(document, dict) or not isinstance(document.get("event"), dict):
        raise ValueError("not a dispatch log record")
    if document.get("v") != RECORD_VERSION:
        raise ValueError(f"unknown record version {document.get('v')!r}")
    return document


_FIELD_SET = frozenset(EVENT_FIELDS)
_KINDS = {str(kind): kind for kind in EventKind}


def event_from_fields(fields: Mapping[str, Any]) -> Event:
    """The Event a record's ``event`` object describes.

    Fields this version does not know are ignored (a newer writer); fields it knows and the
    record lacks take their defaults (an older writer).
    """
    kind = _KINDS.get(fields.get("kind"))  # type: ignore[arg-type]
    if kind is not None and len(fields) == len(_FIELD_SET) and fields.keys() <= _FIELD_SET:
        # A record of this version holds every field: fill the frozen dataclass directly,
        # as its __init__ would, without ~25 object.__setattr__ calls (readers of a large
        # log spend most of their time here).
        values = dict(fields)
        values["kind"] = kind
        values["recipients"] = tuple(values["recipients"])
        values["details"] = dict(values["details"])
        event: Event = object.__new__(Event)
        event.__dict__.update(values)
        return event
    known = {name: fields[name] for name in EVENT_FIELDS if name in fields}
    known["kind"] = EventKind(known["kind"])
    known["recipients"] = tuple(known.get("recipients", ()))
    known["details"] = dict(known.get("details", {}))
    return Event(**known)


__all__ = [
    "GENESIS_HASH",
    "HMAC_SHA256",
    "RECORD_VERSION",
    "SHA256",
    "Chain",
    "decode_record",
    "encode_record",
    "event_from_fields",
    "format_time",
    "parse_time",
]
