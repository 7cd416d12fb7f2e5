"""Sample events for the dispatch-log tests (no personal data, as in real use)."""

from __future__ import annotations

from mash_requests.audit import Event, EventKind


def sent(case_ref: str = "C-1", **fields: object) -> Event:
    """A ``sent`` event with typical evidence; keyword arguments override fields."""
    values: dict[str, object] = {
        "request_ref": f"{case_ref}-police",
        "request_key": f"key-{case_ref}-police",
        "partner": "police",
        "recipients": ("mash@police.uk",),
        "gateway": "smtp",
        "sender": "mash@council.gov.uk",
        "message_id": f"<{case_ref}@council.gov.uk>",
        "form_sha256": "ab" * 32,
        "form_filename": "referral.pdf",
    }
    values.update(fields)
    return Event(EventKind.SENT, case_ref, **values)  # type: ignore[arg-type]


def prepared(case_ref: str = "C-1", **fields: object) -> Event:
    """A ``prepared`` event for the same request as :func:`sent`."""
    values: dict[str, object] = {
        "request_ref": f"{case_ref}-police",
        "request_key": f"key-{case_ref}-police",
        "partner": "police",
        "recipients": ("mash@police.uk",),
        "template": "rfi-police",
        "operator": "jsmith",
    }
    values.update(fields)
    return Event(EventKind.PREPARED, case_ref, **values)  # type: ignore[arg-type]
