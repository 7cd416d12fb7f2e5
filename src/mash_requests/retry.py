"""Sending one message with retries, and never sending it twice.

:func:`send_with_retry` hands a message to a gateway until it is accepted, refused for good,
or the :class:`RetryPolicy` runs out, and returns a :class:`SendResult`; it never raises a
gateway error. What it does with each kind of failure:

- transient (certainly not accepted): wait, then try again. The wait grows exponentially
  with jitter, and is never shorter than the server's own hint (``Retry-After``, EWS
  ``BackOffMilliseconds``); each reported failure says whether its wait came from the
  server's hint or from the policy;
- permanent (refused): stop at once, ``failed``;
- ambiguous (may have been accepted): a gateway that can look in Sent Items is asked
  whether the message is there, twice: after a wait of at least ``lookup_delay`` and again
  ``lookup_delay`` later. Found: ``sent``. Not there either time: the message is sent again.
  The lookup failing: ``unconfirmed``. A gateway that cannot look (SMTP) ends
  ``unconfirmed`` at once: a person checks before anything is resent;
- anything else a gateway raises (a bug, a library error it did not translate) is taken
  as ambiguous: it may have happened after the message left. Only the exception's type
  is recorded, never its text, which may quote the message.

The lookups wait because a mail system files a message in Sent Items some time after
accepting it (Exchange can take well over the few seconds of a backoff); looking too early
finds nothing and sends a duplicate. So a resend happens only when both lookups fit in
``max_seconds`` and another attempt is allowed; otherwise the message is looked up as often
as the time left allows and, not found, ends ``unconfirmed``, never resent blindly.

The reason a failed or unconfirmed result gives is built in one place, :func:`_reason`,
from the gateway's error: its message is already the sentence a person acts on (what
failed, the server's words, the fix; see :mod:`mash_requests.errors`), so a refusal reads
exactly as ``gateway check`` prints it. Retries that ran out say how many attempts were
made; an unconfirmed result adds what is unknown and what to check.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING

from mash_requests.errors import (
    AmbiguousGatewayError,
    Failure,
    GatewayError,
    PermanentGatewayError,
    TransientGatewayError,
)
from mash_requests.gateways.base import Gateway, OutgoingMessage, Receipt, SentItemsLookup

if TYPE_CHECKING:
    from tenacity import RetryCallState

    from mash_requests._tables import Table


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep trying one message (the ``[retry]`` table).

    ``max_attempts`` counts sends, the first included; ``max_seconds`` bounds the whole
    effort: a wait that would end past it is not started. Waits grow from ``initial_wait``
    (doubling, plus up to ``jitter`` seconds at random) up to ``max_wait``; a server's
    own hint is honoured even when longer than ``max_wait``.

    ``lookup_delay`` is how long Sent Items is given to show a message whose answer was
    lost: the first lookup waits at least that long, the second that long again. With
    ``max_seconds`` below twice ``lookup_delay`` such a message is never resent: it ends
    unconfirmed unless a lookup finds it.
    """

    max_attempts: int = 5
    max_seconds: float = 300
    initial_wait: float = 1
    max_wait: float = 60
    jitter: float = 1
    lookup_delay: float = 30

    @classmethod
    def from_table(cls, table: Table) -> RetryPolicy:
        """Read ``[retry]``; every key optional, raises ConfigError naming a bad key."""
        default = cls()
        policy = cls(
            max_attempts=table.integer("max_attempts", default.max_attempts, minimum=1),
            max_seconds=table.number("max_seconds", default.max_seconds, minimum=0),
            initial_wait=table.number("initial_wait", default.initial_wait, minimum=0),
            max_wait=table.number("max_wait", default.max_wait, minimum=0),
            jitter=table.number("jitter", default.jitter, minimum=0),
            lookup_delay=table.number("lookup_delay", default.lookup_delay, minimum=0),
        )
        if policy.max_wait < policy.initial_wait:
            raise table.error(
                "max_wait",
                f"must be at least initial_wait ({policy.initial_wait}), got {policy.max_wait}",
            )
        table.reject_unknown()
        return policy


class WaitSource(StrEnum):
    """Where the wait before the next attempt came from."""

    #: The server's own hint (``Retry-After``, EWS ``BackOffMilliseconds``) set the wait.
    SERVER = "server"
    #: The ``[retry]`` policy set it (backoff, or ``lookup_delay`` before a Sent Items look).
    POLICY = "policy"


@dataclass(frozen=True)
class AttemptFailure:
    """One failed attempt, as the dispatch log records it."""

    attempt: int
    #: "transient", "ambiguous" or "permanent".
    error_class: str
    #: The server's own words (never credentials or message content).
    server_message: str
    #: Seconds until the next attempt; None when there is no further attempt.
    wait_seconds: float | None
    #: Whether the server's hint or our policy set ``wait_seconds``; None with no wait.
    wait_from: WaitSource | None = None


class SendStatus(StrEnum):
    """How sending one message ended."""

    #: The gateway accepted the message (or it was found in Sent Items).
    SENT = "sent"
    #: Refused for good, or every attempt failed; certainly not accepted.
    FAILED = "failed"
    #: May have been accepted and that could not be proved: a person must check.
    UNCONFIRMED = "unconfirmed"


@dataclass(frozen=True)
class SendResult:
    """The outcome of :func:`send_with_retry`."""

    status: SendStatus
    #: The gateway's receipt when ``status`` is SENT, else None.
    receipt: Receipt | None
    #: One sentence for a person: what happened.
    reason: str
    #: How many times the message was handed to the gateway.
    attempts: int
    #: The last failure's class ("transient", "ambiguous", "permanent"); None when sent.
    error_class: str | None
    #: The last failure's server words; "" when none.
    server_message: str
    #: What failed last (connection, TLS, credentials …); None when sent.
    failure: Failure | None = None


class _Unconfirmed(Exception):
    """Internal: the outcome is unknown and must not be retried.

    ``error`` is the failure whose words are recorded; ``reason`` the finished sentence.
    """

    def __init__(self, error: GatewayError, reason: str) -> None:
        super().__init__(reason)
        self.error = error
        self.reason = reason


def _describe(error: GatewayError) -> str:
    """The server's words of one attempt, for the attempt_failed event."""
    return error.server_message or str(error)


def _sentence(error: GatewayError) -> str:
    """The error's own sentence, with the server's words added if it left them out.

    Gateways build the sentence (what failed, the server's words, the fix); one that
    forgot the words still has them reach the person, in brackets at the end.
    """
    sentence = " ".join(str(error).split()) or f"{type(error).__name__} from the gateway"
    words = error.server_message.strip().rstrip(".")
    if words and words not in sentence:
        sentence += f" ({words})"
    return sentence


def _reason(error: GatewayError, *, attempts: int = 0, unknown: str = "") -> str:
    """The one sentence a failed or unconfirmed result gives as its reason.

    Refused for good: the error's sentence as it is (``gateway check`` prints the same).
    Retries ran out: the sentence after how many attempts were made. Unconfirmed: the
    sentence, then ``unknown`` (what cannot be known and what to check).
    """
    sentence = _sentence(error)
    if unknown:
        return f"{sentence}; {unknown}"
    if isinstance(error, PermanentGatewayError):
        return sentence
    return f"gave up after {attempts} attempt{'' if attempts == 1 else 's'}: {sentence}"


#: The end of an unconfirmed reason from a gateway that can look in Sent Items.
_CHECK_SENT_MAIL = "check the sent mail before resending"


def send_with_retry(
    gateway: Gateway,
    message: OutgoingMessage,
    policy: RetryPolicy,
    *,
    on_failure: Callable[[AttemptFailure], None] = lambda failure: None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> SendResult:
    """Send ``message`` through ``gateway`` under ``policy``; never raises gateway errors.

    ``on_failure`` is called once for every failed attempt, including the last one (with
    ``wait_seconds=None``). ``sleep`` and ``clock`` are injectable so tests need not wait.
    """
    from tenacity import (
        RetryError,
        Retrying,
        retry_if_exception_type,
        wait_exponential_jitter,
    )

    lookup = gateway if isinstance(gateway, SentItemsLookup) else None
    backoff = wait_exponential_jitter(
        multiplier=policy.initial_wait, max=policy.max_wait, jitter=policy.jitter
    )
    started = clock()
    attempts = 0
    reported = 0  # the last attempt number passed to on_failure
    found_after_ambiguous = False
    # The previous attempt's ambiguous failure: look in Sent Items before sending again.
    unresolved: AmbiguousGatewayError | None = None
    # Who set the wait last computed: the server's hint or our policy.
    wait_from = WaitSource.POLICY

    def time_left() -> float:
        return policy.max_seconds - (clock() - started)

    def pause(seconds: float) -> None:
        if seconds > 0:
            sleep(seconds)

    def wait(state: RetryCallState) -> float:
        nonlocal wait_from
        seconds, wait_from = backoff(state), WaitSource.POLICY
        error = _error_of(state)
        if error is not None and error.retry_after is not None and error.retry_after >= seconds:
            seconds, wait_from = error.retry_after, WaitSource.SERVER
        if isinstance(error, AmbiguousGatewayError) and policy.lookup_delay > seconds:
            # Only a gateway that can look gets here: give Sent Items time to show it.
            seconds, wait_from = policy.lookup_delay, WaitSource.POLICY
        return seconds

    def until_next_attempt(state: RetryCallState) -> float:
        # After an ambiguous failure the second lookup's wait comes before the resend too.
        extra = policy.lookup_delay if isinstance(_error_of(state), AmbiguousGatewayError) else 0
        return state.upcoming_sleep + extra

    def stop(state: RetryCallState) -> bool:
        # Do not begin a wait that would end after the deadline, nor a resend after an
        # ambiguous failure that would come before both lookups.
        out_of_time = until_next_attempt(state) > time_left()
        return state.attempt_number >= policy.max_attempts or out_of_time

    def report(error: GatewayError, wait_seconds: float | None) -> None:
        # Each attempt is reported once: a look-up failing after a reported ambiguous
        # attempt ends the run without a second report of the same attempt.
        nonlocal reported
        if attempts > reported:
            reported = attempts
            on_failure(
                AttemptFailure(
                    attempt=attempts,
                    error_class=error.error_class,
                    server_message=_describe(error),
                    wait_seconds=wait_seconds,
                    wait_from=None if wait_seconds is None else wait_from,
                )
            )

    def report_retry(state: RetryCallState) -> None:
        error = _error_of(state)
        assert error is not None
        report(error, until_next_attempt(state))

    def look_before_resending(
        error: AmbiguousGatewayError, lookup: SentItemsLookup
    ) -> Receipt | None:
        """Look twice (the wait before the first is over); None: not there, safe to resend."""
        found = _find_sent(lookup, message, gateway.name, error)
        if found is None:
            if policy.lookup_delay > time_left():
                raise _Unconfirmed(
                    error,
                    _reason(
                        error,
                        unknown="it may have been accepted; it is not (yet) in Sent Items and "
                        f"no time is left to look again: {_CHECK_SENT_MAIL}",
                    ),
                )
            pause(policy.lookup_delay)
            found = _find_sent(lookup, message, gateway.name, error)
        return found

    def attempt() -> Receipt:
        nonlocal attempts, unresolved, found_after_ambiguous
        if unresolved is not None and lookup is not None:
            error, unresolved = unresolved, None
            found = look_before_resending(error, lookup)
            if found is not None:
                found_after_ambiguous = True
                return found
        attempts += 1
        try:
            return gateway.send(message)
        except (TransientGatewayError, PermanentGatewayError):
            raise
        except Exception as exc:
            # Ambiguous, or anything a gateway should not raise (a bug, an unexpected
            # library error): it may have come after the message left, so it is treated
            # as ambiguous rather than escaping with the request's outcome unknown.
            error = (
                exc if isinstance(exc, AmbiguousGatewayError) else _unexpected(gateway.name, exc)
            )
            if lookup is None:
                raise _Unconfirmed(
                    error,
                    _reason(
                        error,
                        unknown=f"it may have been accepted, and {gateway.name} cannot look "
                        "messages up: check with the recipient or the mail server's log "
                        "before resending",
                    ),
                ) from exc
            unresolved = error
            if error is exc:
                raise
            raise error from exc

    def last_looks(error: GatewayError, lookup: SentItemsLookup) -> Receipt | None:
        """Look up to twice, lookup_delay apart, as the time left allows; no resend follows."""
        for look in range(2):
            if policy.lookup_delay <= time_left():
                pause(policy.lookup_delay)
            elif look > 0:
                break  # the first look happens even without time to wait for it
            found = _find_sent(lookup, message, gateway.name, error)
            if found is not None:
                return found
        return None

    retrying = Retrying(
        stop=stop,
        wait=wait,
        retry=retry_if_exception_type((TransientGatewayError, AmbiguousGatewayError)),
        sleep=sleep,
        before_sleep=report_retry,
    )
    try:
        receipt = retrying(attempt)
    except _Unconfirmed as unconfirmed:
        report(unconfirmed.error, None)
        return _unconfirmed(unconfirmed, attempts)
    except PermanentGatewayError as exc:
        report(exc, None)
        return _failed(exc, attempts)
    except RetryError as exhausted:
        last = exhausted.last_attempt.exception()
        assert isinstance(last, GatewayError)
        report(last, None)
        if isinstance(last, AmbiguousGatewayError) and lookup is not None:
            # The last attempt may have been accepted: look before giving up.
            try:
                found = last_looks(last, lookup)
            except _Unconfirmed as unconfirmed:
                return _unconfirmed(unconfirmed, attempts)
            if found is not None:
                return _sent(found, attempts, after_ambiguous=True)
            reason = _reason(
                last,
                unknown="it may have been accepted; it is not (yet) in Sent Items and no "
                f"attempts or time are left to resend it: {_CHECK_SENT_MAIL}",
            )
            return _unconfirmed(_Unconfirmed(last, reason), attempts)
        result = _failed(last, attempts)
        hint, left = last.retry_after, time_left()
        if attempts < policy.max_attempts and hint is not None and hint > left:
            # Stopped by the time limit, not the attempts: say what the server asked for.
            result = replace(
                result,
                reason=f"{result.reason}; the server asked to wait {hint:g} s, longer than the "
                f"{max(0.0, left):.0f} s [retry] max_seconds ({policy.max_seconds:g} s) left: it "
                "was not sent; send it again once that wait is over",
            )
        return result
    return _sent(receipt, attempts, after_ambiguous=found_after_ambiguous)


def _error_of(state: RetryCallState) -> GatewayError | None:
    if state.outcome is None or not state.outcome.failed:
        return None
    error = state.outcome.exception()
    return error if isinstance(error, GatewayError) else None


def _find_sent(
    lookup: SentItemsLookup, message: OutgoingMessage, name: str, sending: GatewayError
) -> Receipt | None:
    """Look the message up; a failed lookup makes the outcome unknowable, never a resend.

    ``sending`` is the failure that made the look necessary; the reason names both it and
    why Sent Items could not be searched, and the lookup's words are the ones recorded.
    """
    try:
        return lookup.find_sent(message.message_id)
    except Exception as exc:
        ambiguous = _unexpected(name, exc)
        raise _Unconfirmed(
            ambiguous,
            _reason(
                sending,
                unknown="it may have been accepted and Sent Items could not be searched "
                f"({_sentence(ambiguous)}): {_CHECK_SENT_MAIL}",
            ),
        ) from exc


def _unexpected(name: str, exc: Exception) -> AmbiguousGatewayError:
    """An error that is not one of the three gateway errors, as an ambiguous failure.

    Only the exception's type is kept: its text may quote the message (exchangelib's
    ValueError for a long subject does), and the log must never hold message content.
    """
    if isinstance(exc, GatewayError):
        # The base class itself: the gateway did not say which kind; its words are ours.
        return AmbiguousGatewayError(
            str(exc), server_message=exc.server_message, failure=exc.failure
        )
    kind = type(exc).__name__
    return AmbiguousGatewayError(
        f"the {name} gateway failed with an unexpected {kind}", server_message=kind
    )


def _failed(error: GatewayError, attempts: int) -> SendResult:
    return SendResult(
        status=SendStatus.FAILED,
        receipt=None,
        reason=_reason(error, attempts=attempts),
        attempts=attempts,
        error_class=error.error_class,
        server_message=error.server_message,
        failure=error.failure,
    )


def _sent(receipt: Receipt, attempts: int, *, after_ambiguous: bool) -> SendResult:
    return SendResult(
        status=SendStatus.SENT,
        receipt=receipt,
        reason=(
            "found in Sent Items after an attempt whose answer was lost"
            if after_ambiguous
            else "accepted by the gateway"
        ),
        attempts=attempts,
        error_class=None,
        server_message="",
    )


def _unconfirmed(unconfirmed: _Unconfirmed, attempts: int) -> SendResult:
    return SendResult(
        status=SendStatus.UNCONFIRMED,
        receipt=None,
        reason=unconfirmed.reason,
        attempts=attempts,
        error_class=AmbiguousGatewayError.error_class,
        server_message=unconfirmed.error.server_message,
        failure=unconfirmed.error.failure,
    )
