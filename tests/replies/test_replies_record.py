"""``replies record``: answers that came by phone, in a meeting or in the partner's system."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from replies_helpers import run_cli, send_example

from mash_requests.audit.events import EventKind
from mash_requests.config import load_settings
from mash_requests.errors import InputError
from mash_requests.replies import parse_received, record_reply
from workspace import Workspace

LONDON = ZoneInfo("Europe/London")


def _now_local() -> str:
    return datetime.now(LONDON).strftime("%Y-%m-%d %H:%M")


def test_an_answer_by_phone_is_recorded_with_the_operator(workspace: Workspace) -> None:
    """The answer is a replied event: channel, time (UTC), operator, the request's fields."""
    sent = send_example(workspace)
    when = _now_local()
    code, out, _ = run_cli(
        "replies", "record", sent["police"].request_ref, "--received", when,
        "--channel", "phone", "--config", str(workspace.config),
    )  # fmt: skip
    assert code == 0, out
    assert out.startswith(f"recorded: {sent['police'].request_ref} (police, case MASH-2026-0412)")
    [event] = [e for e in workspace.events() if e.kind is EventKind.REPLIED]
    assert event.operator == "tester"
    assert event.details["channel"] == "phone"
    assert event.details["source"] == "manual"
    expected = datetime.strptime(when, "%Y-%m-%d %H:%M").replace(tzinfo=LONDON).astimezone(UTC)
    assert event.details["received_at"] == expected.isoformat()
    assert event.request_ref == sent["police"].request_ref
    assert event.message_id == sent["police"].message_id


def test_a_recorded_answer_takes_the_request_off_the_overdue_list(workspace: Workspace) -> None:
    """An answer recorded by hand stops the clock like an email reply."""
    sent = send_example(workspace, rag="red")
    config = ("--config", str(workspace.config))
    _, before, _ = run_cli("overdue", "--within", "5", "--format", "jsonl", *config)
    assert sent["police"].request_ref in before
    run_cli(
        "replies",
        "record",
        sent["police"].request_ref,
        "--received",
        _now_local(),
        "--channel",
        "meeting",
        *config,
    )
    _, after, _ = run_cli("overdue", "--within", "5", "--format", "jsonl", *config)
    assert sent["police"].request_ref not in after and sent["health"].request_ref in after


def test_an_unknown_reference_is_refused(workspace: Workspace) -> None:
    """A reference the log does not know: exit 2, nothing recorded."""
    send_example(workspace)
    code, _, err = run_cli(
        "replies", "record", "MASH-2026-0412-POLICE-00000", "--received", _now_local(),
        "--channel", "phone", "--config", str(workspace.config),
    )  # fmt: skip
    assert code == 2
    assert "no request 'MASH-2026-0412-POLICE-00000' in the dispatch log" in err
    assert not [e for e in workspace.events() if e.kind is EventKind.REPLIED]


def test_an_unsent_request_is_refused(workspace: Workspace) -> None:
    """A request whose send failed was never with the partner: exit 2."""
    from mash_requests.audit import open_store
    from mash_requests.audit.events import Event

    settings = load_settings(workspace.config)
    store = open_store(settings.log)
    try:
        store.append_many(
            [
                Event(
                    EventKind.PREPARED,
                    "MASH-1",
                    request_ref="MASH-1-POLICE-ABCDE",
                    partner="police",
                ),
                Event(
                    EventKind.FAILED, "MASH-1", request_ref="MASH-1-POLICE-ABCDE", partner="police"
                ),
            ]
        )
    finally:
        store.close()
    code, _, err = run_cli(
        "replies", "record", "MASH-1-POLICE-ABCDE", "--received", _now_local(),
        "--channel", "phone", "--config", str(workspace.config),
    )  # fmt: skip
    assert code == 2 and "was not sent (its last outcome is failed)" in err


def test_a_time_in_the_future_is_refused(workspace: Workspace) -> None:
    """An answer cannot come tomorrow: exit 2."""
    sent = send_example(workspace)
    tomorrow = (datetime.now(LONDON) + timedelta(days=1)).strftime("%Y-%m-%d %H:%M")
    code, _, err = run_cli(
        "replies", "record", sent["police"].request_ref, "--received", tomorrow,
        "--channel", "phone", "--config", str(workspace.config),
    )  # fmt: skip
    assert code == 2 and "is in the future" in err


def test_a_time_before_the_request_was_sent_is_refused(workspace: Workspace) -> None:
    """An answer cannot come before the question: exit 2."""
    sent = send_example(workspace)
    code, _, err = run_cli(
        "replies", "record", sent["police"].request_ref, "--received", "2020-01-01 09:00",
        "--channel", "phone", "--config", str(workspace.config),
    )  # fmt: skip
    assert code == 2 and "is before request" in err


@pytest.mark.parametrize("text", ["yesterday", "2026-04-13", "13/04/2026 10:15", ""])
def test_a_time_that_is_not_a_time_is_refused(workspace: Workspace, text: str) -> None:
    """TIME must be YYYY-MM-DD HH:MM or ISO 8601: the error names both."""
    sent = send_example(workspace)
    code, _, err = run_cli(
        "replies", "record", sent["police"].request_ref, "--received", text,
        "--channel", "phone", "--config", str(workspace.config),
    )  # fmt: skip
    assert code == 2 and "expected YYYY-MM-DD HH:MM" in err


def test_an_unknown_channel_is_refused(workspace: Workspace) -> None:
    """--channel is one of phone, email, meeting, system."""
    sent = send_example(workspace)
    code, _, err = run_cli(
        "replies", "record", sent["police"].request_ref, "--received", _now_local(),
        "--channel", "fax", "--config", str(workspace.config),
    )  # fmt: skip
    assert code == 2 and "fax" in err


def test_recording_the_same_answer_twice_adds_nothing(workspace: Workspace) -> None:
    """The same request, channel and time again: "already recorded", one event."""
    sent = send_example(workspace)
    args = (
        "replies", "record", sent["police"].request_ref, "--received", _now_local(),
        "--channel", "system", "--config", str(workspace.config),
    )  # fmt: skip
    assert run_cli(*args)[0] == 0
    code, out, _ = run_cli(*args)
    assert code == 0 and out.startswith("already recorded")
    assert len([e for e in workspace.events() if e.kind is EventKind.REPLIED]) == 1


def test_parse_received_reads_local_and_iso_times() -> None:
    """Local "YYYY-MM-DD HH:MM" takes the zone; ISO 8601 keeps its own offset."""
    local = parse_received("2026-07-01 10:15", LONDON)
    assert local.astimezone(UTC) == datetime(2026, 7, 1, 9, 15, tzinfo=UTC)  # BST
    iso = parse_received("2026-07-01T10:15:00+00:00", LONDON)
    assert iso == datetime(2026, 7, 1, 10, 15, tzinfo=UTC)


def test_the_api_refuses_a_naive_time(workspace: Workspace) -> None:
    """record_reply needs an aware datetime: a naive one is an InputError, not a guess."""
    sent = send_example(workspace)
    with pytest.raises(InputError, match="time zone"):
        record_reply(
            load_settings(workspace.config),
            sent["police"].request_ref,
            received=datetime(2026, 7, 1, 10, 15),
            channel="phone",
        )
