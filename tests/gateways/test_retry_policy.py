"""send_with_retry: what each kind of gateway failure leads to."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

from mash_requests._tables import Table
from mash_requests.errors import (
    AmbiguousGatewayError,
    ConfigError,
    Failure,
    GatewayError,
    PermanentGatewayError,
    TransientGatewayError,
)
from mash_requests.gateways.base import OutgoingMessage, Receipt
from mash_requests.retry import (
    AttemptFailure,
    RetryPolicy,
    SendStatus,
    WaitSource,
    send_with_retry,
)

NO_JITTER = RetryPolicy(max_attempts=5, max_seconds=300, initial_wait=1, max_wait=60, jitter=0)


class ScriptedGateway:
    """A gateway that fails as scripted, then accepts."""

    name = "scripted"

    def __init__(self, failures: Iterable[Exception]) -> None:
        self.failures = list(failures)
        self.sent: list[str] = []
        self.calls = 0

    def send(self, message: OutgoingMessage) -> Receipt:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(message.message_id)
        return Receipt(self.name, message.message_id, gateway_id=f"id-{self.calls}")

    def close(self) -> None:
        pass


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


class LookupGateway(ScriptedGateway):
    """A scripted gateway that can also look in Sent Items.

    ``in_sent_items`` answers every lookup, or one per lookup from a list (the last repeats);
    each lookup takes ``lookup_seconds`` of ``time``.
    """

    def __init__(
        self,
        failures: Iterable[Exception],
        *,
        in_sent_items: bool | Exception | list[bool],
        time: FakeTime | None = None,
        lookup_seconds: float = 0,
    ) -> None:
        super().__init__(failures)
        self.in_sent_items = in_sent_items
        self.time = time
        self.lookup_seconds = lookup_seconds
        self.lookups = 0

    def find_sent(self, message_id: str) -> Receipt | None:
        self.lookups += 1
        if self.time is not None:
            self.time.now += self.lookup_seconds
        answer = self.in_sent_items
        if isinstance(answer, list):
            answer = answer[min(self.lookups, len(answer)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return Receipt(self.name, message_id, gateway_id="found") if answer else None


def run(
    gateway: ScriptedGateway,
    message: OutgoingMessage,
    policy: RetryPolicy = NO_JITTER,
    time: FakeTime | None = None,
):
    time = time or FakeTime()
    failures: list[AttemptFailure] = []
    result = send_with_retry(
        gateway, message, policy, on_failure=failures.append, sleep=time.sleep, clock=time.clock
    )
    return result, failures, time


def test_first_attempt_success_is_sent_without_waiting(message: OutgoingMessage) -> None:
    """A message accepted at once is sent after one attempt with no wait and no failure."""
    result, failures, time = run(ScriptedGateway([]), message)
    assert result.status is SendStatus.SENT
    assert result.attempts == 1
    assert result.receipt is not None and result.receipt.gateway_id == "id-1"
    assert failures == [] and time.sleeps == []


def test_transient_failures_are_retried_with_exponential_waits(message: OutgoingMessage) -> None:
    """Two transient failures are retried after 1 s then 2 s, and the third attempt is sent."""
    gateway = ScriptedGateway([TransientGatewayError("busy", server_message="451 busy")] * 2)
    result, failures, time = run(gateway, message)
    assert result.status is SendStatus.SENT and result.attempts == 3
    assert time.sleeps == [1, 2]
    assert failures == [
        AttemptFailure(1, "transient", "451 busy", 1, WaitSource.POLICY),
        AttemptFailure(2, "transient", "451 busy", 2, WaitSource.POLICY),
    ]
    assert gateway.sent == [message.message_id]


def test_server_hint_longer_than_backoff_is_honoured(message: OutgoingMessage) -> None:
    """A fractional Retry-After of 2.128 s is waited exactly, not the 1 s backoff."""
    gateway = ScriptedGateway([TransientGatewayError("429", retry_after=2.128)])
    result, failures, time = run(gateway, message)
    assert result.status is SendStatus.SENT
    assert time.sleeps == [2.128]
    assert failures[0].wait_seconds == 2.128


def test_server_hint_may_exceed_max_wait(message: OutgoingMessage) -> None:
    """A server hint longer than max_wait is still honoured (sooner would be refused)."""
    policy = RetryPolicy(max_attempts=3, max_seconds=600, initial_wait=1, max_wait=5, jitter=0)
    gateway = ScriptedGateway([TransientGatewayError("busy", retry_after=297.749)])
    result, _, time = run(gateway, message, policy)
    assert result.status is SendStatus.SENT
    assert time.sleeps == [297.749]


def test_jitter_stays_within_bounds(message: OutgoingMessage) -> None:
    """With jitter the first wait lies between initial_wait and initial_wait + jitter."""
    policy = RetryPolicy(max_attempts=2, initial_wait=1, max_wait=60, jitter=1)
    _, _, time = run(ScriptedGateway([TransientGatewayError("x")]), message, policy)
    assert 1 <= time.sleeps[0] <= 2


def test_permanent_failure_is_not_retried(message: OutgoingMessage) -> None:
    """A permanent refusal fails at once with the server's words, after one attempt."""
    words = "550 5.1.1 <dsl@school.example>: Recipient address rejected"
    gateway = ScriptedGateway([PermanentGatewayError("refused", server_message=words)])
    result, failures, time = run(gateway, message)
    assert result.status is SendStatus.FAILED
    assert result.attempts == 1 and gateway.calls == 1
    assert result.error_class == "permanent" and result.server_message == words
    assert words in result.reason
    assert failures == [AttemptFailure(1, "permanent", words, None)]
    assert time.sleeps == []


def test_retries_exhausted_fail_with_last_server_words(message: OutgoingMessage) -> None:
    """After max_attempts transient failures the result is failed with the last server words."""
    errors = [TransientGatewayError("t", server_message=f"451 try {i}") for i in range(1, 4)]
    policy = RetryPolicy(max_attempts=3, initial_wait=1, max_wait=60, jitter=0)
    result, failures, time = run(ScriptedGateway(errors), message, policy)
    assert result.status is SendStatus.FAILED
    assert result.attempts == 3
    assert result.server_message == "451 try 3" and result.error_class == "transient"
    assert [f.wait_seconds for f in failures] == [1, 2, None]
    assert time.sleeps == [1, 2]


def test_wait_beyond_max_seconds_is_not_started(message: OutgoingMessage) -> None:
    """A server hint that would end past max_seconds stops the retries instead of waiting."""
    policy = RetryPolicy(max_attempts=5, max_seconds=60, initial_wait=1, max_wait=60, jitter=0)
    gateway = ScriptedGateway([TransientGatewayError("busy", retry_after=297.749)])
    result, failures, time = run(gateway, message, policy)
    assert result.status is SendStatus.FAILED and result.attempts == 1
    assert time.sleeps == []
    assert failures[-1].wait_seconds is None
    # The reason says why it stopped, and what to do: not only "gave up after 1 attempt".
    assert result.reason.endswith(
        "the server asked to wait 297.749 s, longer than the 60 s [retry] max_seconds (60 s) "
        "left: it was not sent; send it again once that wait is over"
    )


def test_ambiguous_without_lookup_is_unconfirmed_and_never_resent(
    message: OutgoingMessage,
) -> None:
    """An ambiguous failure on a gateway that cannot look in Sent Items is unconfirmed at once."""
    gateway = ScriptedGateway([AmbiguousGatewayError("lost", server_message="timed out")])
    result, failures, time = run(gateway, message)
    assert result.status is SendStatus.UNCONFIRMED
    assert gateway.calls == 1 and time.sleeps == []
    assert result.error_class == "ambiguous" and result.server_message == "timed out"
    assert failures == [AttemptFailure(1, "ambiguous", "timed out", None)]


def test_ambiguous_then_found_in_sent_items_is_sent_without_resending(
    message: OutgoingMessage,
) -> None:
    """An ambiguous failure whose message is found in Sent Items is sent, with no second send."""
    gateway = LookupGateway([AmbiguousGatewayError("504")], in_sent_items=True)
    result, failures, _ = run(gateway, message)
    assert result.status is SendStatus.SENT
    assert result.receipt is not None and result.receipt.gateway_id == "found"
    assert gateway.calls == 1 and gateway.lookups == 1
    assert "Sent Items" in result.reason
    assert [f.error_class for f in failures] == ["ambiguous"]


def test_ambiguous_then_not_found_twice_is_sent_again_once(message: OutgoingMessage) -> None:
    """An ambiguous failure whose message is in Sent Items at neither lookup is sent again once."""
    gateway = LookupGateway([AmbiguousGatewayError("504")], in_sent_items=False)
    result, _, time = run(gateway, message)
    assert result.status is SendStatus.SENT
    assert gateway.calls == 2 and gateway.sent == [message.message_id]
    assert result.attempts == 2 and gateway.lookups == 2
    assert time.sleeps == [30, 30]


def test_first_lookup_waits_lookup_delay_not_the_shorter_backoff(
    message: OutgoingMessage,
) -> None:
    """After an ambiguous failure the first lookup waits lookup_delay, not the 1 s backoff."""
    gateway = LookupGateway([AmbiguousGatewayError("504")], in_sent_items=True)
    _, _, time = run(gateway, message)
    assert time.sleeps == [30]


def test_server_hint_longer_than_lookup_delay_is_waited_before_the_lookup(
    message: OutgoingMessage,
) -> None:
    """A Retry-After of 45 s on an ambiguous failure is waited in full before the lookup."""
    gateway = LookupGateway([AmbiguousGatewayError("504", retry_after=45)], in_sent_items=True)
    _, _, time = run(gateway, message)
    assert time.sleeps == [45]


def test_message_found_at_the_second_lookup_is_not_resent(message: OutgoingMessage) -> None:
    """A message filed in Sent Items only after the first lookup is found by the second."""
    gateway = LookupGateway([AmbiguousGatewayError("504")], in_sent_items=[False, True])
    result, _, time = run(gateway, message)
    assert result.status is SendStatus.SENT and "Sent Items" in result.reason
    assert gateway.calls == 1 and gateway.lookups == 2
    assert time.sleeps == [30, 30]


def test_ambiguous_failure_report_counts_both_lookup_waits(message: OutgoingMessage) -> None:
    """The ambiguous attempt's reported wait is the wait until a resend: both lookup delays."""
    gateway = LookupGateway(
        [AmbiguousGatewayError("504", server_message="504")], in_sent_items=False
    )
    _, failures, _ = run(gateway, message)
    assert failures == [AttemptFailure(1, "ambiguous", "504", 60, WaitSource.POLICY)]


def test_lookup_delay_zero_looks_after_the_backoff_only(message: OutgoingMessage) -> None:
    """With lookup_delay 0 the lookups wait only the backoff, and the resend follows at once."""
    policy = RetryPolicy(max_attempts=5, initial_wait=1, max_wait=60, jitter=0, lookup_delay=0)
    gateway = LookupGateway([AmbiguousGatewayError("504")], in_sent_items=False)
    result, _, time = run(gateway, message, policy)
    assert result.status is SendStatus.SENT and gateway.lookups == 2
    assert time.sleeps == [1]


def test_no_time_to_look_twice_ends_unconfirmed_without_resending(
    message: OutgoingMessage,
) -> None:
    """With max_seconds too short for two lookups, a message not found is unconfirmed."""
    policy = RetryPolicy(max_attempts=5, max_seconds=50, jitter=0, lookup_delay=30)
    gateway = LookupGateway([AmbiguousGatewayError("504")], in_sent_items=False)
    result, failures, time = run(gateway, message, policy)
    assert result.status is SendStatus.UNCONFIRMED and result.error_class == "ambiguous"
    assert gateway.calls == 1 and gateway.lookups == 1
    assert time.sleeps == [30]
    assert failures[-1].wait_seconds is None


def test_slow_first_lookup_leaving_no_time_ends_unconfirmed(message: OutgoingMessage) -> None:
    """A first lookup that uses up the time for the second ends unconfirmed, not resent."""
    policy = RetryPolicy(max_attempts=5, max_seconds=100, jitter=0, lookup_delay=30)
    time = FakeTime()
    gateway = LookupGateway(
        [AmbiguousGatewayError("504")], in_sent_items=False, time=time, lookup_seconds=50
    )
    result, _, _ = run(gateway, message, policy, time)
    assert result.status is SendStatus.UNCONFIRMED and "no time is left" in result.reason
    assert gateway.calls == 1 and gateway.lookups == 1


def test_ambiguous_last_attempt_is_looked_up_twice_before_unconfirmed(
    message: OutgoingMessage,
) -> None:
    """An ambiguous last attempt is looked up twice, lookup_delay apart, then unconfirmed."""
    policy = RetryPolicy(max_attempts=1, jitter=0, lookup_delay=30)
    gateway = LookupGateway([AmbiguousGatewayError("504")], in_sent_items=False)
    result, _, time = run(gateway, message, policy)
    assert result.status is SendStatus.UNCONFIRMED
    assert gateway.lookups == 2 and time.sleeps == [30, 30]


def test_lookup_failure_after_ambiguous_is_unconfirmed(message: OutgoingMessage) -> None:
    """When Sent Items cannot be searched after an ambiguous failure, nothing is resent."""
    gateway = LookupGateway(
        [AmbiguousGatewayError("504")],
        in_sent_items=TransientGatewayError("down", server_message="503 Service Unavailable"),
    )
    result, failures, _ = run(gateway, message)
    assert result.status is SendStatus.UNCONFIRMED
    assert gateway.calls == 1
    assert "503 Service Unavailable" in result.reason
    assert len(failures) == 1  # the ambiguous attempt, reported once


def test_ambiguous_on_last_attempt_is_looked_up_before_giving_up(
    message: OutgoingMessage,
) -> None:
    """An ambiguous last attempt is looked up; found is sent, not found is unconfirmed."""
    policy = RetryPolicy(max_attempts=1, jitter=0)
    found = LookupGateway([AmbiguousGatewayError("504")], in_sent_items=True)
    assert run(found, message, policy)[0].status is SendStatus.SENT
    missing = LookupGateway([AmbiguousGatewayError("504")], in_sent_items=False)
    result = run(missing, message, policy)[0]
    assert result.status is SendStatus.UNCONFIRMED and missing.calls == 1


# -- where a wait came from ------------------------------------------------------------------


def test_wait_set_by_the_servers_hint_is_reported_as_the_servers(message: OutgoingMessage) -> None:
    """A Retry-After longer than the backoff is waited and reported as coming from the server."""
    gateway = ScriptedGateway([TransientGatewayError("429", retry_after=7.5)])
    _, failures, _ = run(gateway, message)
    assert (failures[0].wait_seconds, failures[0].wait_from) == (7.5, WaitSource.SERVER)


def test_wait_without_a_hint_is_reported_as_the_policys(message: OutgoingMessage) -> None:
    """Without a server hint the backoff is waited and reported as coming from the policy."""
    _, failures, _ = run(ScriptedGateway([TransientGatewayError("busy")]), message)
    assert (failures[0].wait_seconds, failures[0].wait_from) == (1, WaitSource.POLICY)


def test_hint_shorter_than_the_backoff_is_reported_as_the_policys(
    message: OutgoingMessage,
) -> None:
    """A server hint shorter than the policy's backoff leaves the wait, and its source, to us."""
    policy = RetryPolicy(max_attempts=2, initial_wait=4, max_wait=60, jitter=0)
    gateway = ScriptedGateway([TransientGatewayError("busy", retry_after=0.5)])
    _, failures, time = run(gateway, message, policy)
    assert time.sleeps == [4] and failures[0].wait_from is WaitSource.POLICY


def test_last_failure_has_no_wait_and_no_source(message: OutgoingMessage) -> None:
    """The failure that ends the sending has neither a wait nor a source of one."""
    _, failures, _ = run(ScriptedGateway([PermanentGatewayError("no", retry_after=3)]), message)
    assert (failures[-1].wait_seconds, failures[-1].wait_from) == (None, None)


# -- the reason a person reads -------------------------------------------------------------------


def test_permanent_reason_is_the_errors_own_sentence(message: OutgoingMessage) -> None:
    """A refusal's reason is the gateway's sentence unchanged, never "refused the message"."""
    error = PermanentGatewayError.explained(
        Failure.AUTHENTICATION,
        "the SMTP server smtp.x.example:587 refused the credentials",
        "535 5.7.8 Authentication credentials invalid",
        fix="check username and the password",
    )
    result, _, _ = run(ScriptedGateway([error]), message)
    assert result.reason == (
        "the SMTP server smtp.x.example:587 refused the credentials: "
        "535 5.7.8 Authentication credentials invalid; check username and the password"
    )
    assert result.failure is Failure.AUTHENTICATION
    assert result.server_message == "535 5.7.8 Authentication credentials invalid"


def test_exhausted_reason_says_how_many_attempts_were_made(message: OutgoingMessage) -> None:
    """Retries that run out give the last error's sentence after the number of attempts."""
    errors = [
        TransientGatewayError.explained(
            Failure.CONNECTION, "could not connect to SMTP server h:587", "Connection refused"
        )
    ] * 3
    policy = RetryPolicy(max_attempts=3, initial_wait=1, max_wait=60, jitter=0)
    result, _, _ = run(ScriptedGateway(errors), message, policy)
    assert result.reason == (
        "gave up after 3 attempts: could not connect to SMTP server h:587: Connection refused"
    )
    assert result.failure is Failure.CONNECTION


def test_hand_built_sentence_without_the_servers_words_still_carries_them(
    message: OutgoingMessage,
) -> None:
    """An error whose sentence leaves out the server's words gets them added to the reason."""
    error = PermanentGatewayError("the message was refused", server_message="552 too big")
    result, _, _ = run(ScriptedGateway([error]), message)
    assert result.reason == "the message was refused (552 too big)"


def test_unconfirmed_reason_says_what_is_unknown_and_what_to_check(
    message: OutgoingMessage,
) -> None:
    """An unconfirmed result gives the failure's sentence, then that it may have been accepted."""
    error = AmbiguousGatewayError.explained(
        Failure.CONNECTION,
        "SMTP server h:587 gave no answer after the whole message was sent",
        "Connection unexpectedly closed",
    )
    result, _, _ = run(ScriptedGateway([error]), message)
    assert result.reason == (
        "SMTP server h:587 gave no answer after the whole message was sent: Connection "
        "unexpectedly closed; it may have been accepted, and scripted cannot look messages "
        "up: check with the recipient or the mail server's log before resending"
    )


# -- what a gateway should never raise ------------------------------------------------------

#: exchangelib's own words for a long subject: they quote the message, so must go nowhere.
CONTENT_ERROR = ValueError("'subject' value 'Request about Jamie Doe, 4 Elm Row' exceeds 255")


def test_unexpected_exception_without_lookup_is_unconfirmed(message: OutgoingMessage) -> None:
    """A gateway raising something other than a gateway error ends unconfirmed, not a traceback."""
    gateway = ScriptedGateway([CONTENT_ERROR])
    result, failures, _ = run(gateway, message)
    assert result.status is SendStatus.UNCONFIRMED and result.error_class == "ambiguous"
    assert gateway.calls == 1
    assert failures == [AttemptFailure(1, "ambiguous", "ValueError", None)]


def test_unexpected_exception_records_only_its_type(message: OutgoingMessage) -> None:
    """Only the exception's type reaches the result and the failure report, never its text."""
    result, failures, _ = run(ScriptedGateway([CONTENT_ERROR]), message)
    assert result.server_message == "ValueError"
    assert "Jamie" not in result.reason
    assert all("Jamie" not in f.server_message for f in failures)


def test_unexpected_exception_is_looked_up_like_an_ambiguous_failure(
    message: OutgoingMessage,
) -> None:
    """An unexpected exception from a gateway that can look is found in Sent Items, not resent."""
    gateway = LookupGateway([RuntimeError("bug")], in_sent_items=True)
    result, failures, time = run(gateway, message)
    assert result.status is SendStatus.SENT and gateway.calls == 1 and gateway.lookups == 1
    assert failures[0].error_class == "ambiguous" and time.sleeps == [30]


def test_unexpected_exception_from_the_lookup_is_unconfirmed(message: OutgoingMessage) -> None:
    """A lookup raising something other than a gateway error ends unconfirmed, naming its type."""
    gateway = LookupGateway([AmbiguousGatewayError("504")], in_sent_items=KeyError("x"))
    result, _, _ = run(gateway, message)
    assert result.status is SendStatus.UNCONFIRMED and gateway.calls == 1
    assert result.server_message == "KeyError"


def test_bare_gateway_error_is_treated_as_ambiguous(message: OutgoingMessage) -> None:
    """A GatewayError of no particular kind is ambiguous: unconfirmed, never resent blindly."""
    gateway = ScriptedGateway([GatewayError("odd", server_message="odd")])
    result, _, _ = run(gateway, message)
    assert result.status is SendStatus.UNCONFIRMED and gateway.calls == 1
    assert result.server_message == "odd"


def test_policy_from_table_reads_every_key(tmp_path: Path) -> None:
    """[retry] keys become the policy's fields."""
    table = Table(
        {
            "max_attempts": 3,
            "max_seconds": 120,
            "initial_wait": 0.5,
            "max_wait": 30,
            "jitter": 0,
            "lookup_delay": 45,
        },
        where="config t.toml: [retry]",
        base_dir=tmp_path,
    )
    assert RetryPolicy.from_table(table) == RetryPolicy(3, 120, 0.5, 30, 0, 45)


def test_policy_from_empty_table_is_the_default(tmp_path: Path) -> None:
    """An absent [retry] table gives the documented defaults."""
    assert RetryPolicy.from_table(Table({}, where="x", base_dir=tmp_path)) == RetryPolicy()


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_wait": 0.1}, "max_wait"),
        ({"tries": 3}, "tries"),
        ({"lookup_delay": -1}, "lookup_delay"),
    ],
)
def test_policy_from_table_refuses_bad_values(
    tmp_path: Path, data: dict[str, object], key: str
) -> None:
    """A bad or unknown [retry] key is a ConfigError naming the key."""
    table = Table(data, where="config t.toml: [retry]", base_dir=tmp_path)
    with pytest.raises(ConfigError, match=rf"\[retry\] {key}"):
        RetryPolicy.from_table(table)
