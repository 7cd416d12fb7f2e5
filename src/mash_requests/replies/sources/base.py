"""What every reply source is: ``messages(since, known) -> raw messages`` and ``close()``.

A source reads the mailbox (or folder) where partners' replies arrive and yields each
message's RFC 5322 bytes. It knows nothing of requests, partners or the dispatch log, and
never changes the mailbox: nothing is moved, flagged, marked read or deleted.

It raises only the gateway errors of :mod:`mash_requests.errors` (the same tree the sending
gateways use, with :class:`~mash_requests.errors.Failure` saying what failed), translated at
its boundary: :class:`~mash_requests.errors.TransientGatewayError` (try again: throttled,
unavailable, connection lost) and :class:`~mash_requests.errors.PermanentGatewayError`
(credentials refused, certificate not trusted, mailbox not found). Reading is idempotent,
so each request a source makes is retried under the one ``[retry]`` policy
(:func:`call_with_retry`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

from mash_requests.errors import TransientGatewayError

if TYPE_CHECKING:
    from mash_requests.retry import RetryPolicy

T = TypeVar("T")


@dataclass(frozen=True)
class RawMessage:
    """One message as the mailbox holds it."""

    #: The complete RFC 5322 message.
    data: bytes
    #: When the mailbox received it (IMAP INTERNALDATE, Graph receivedDateTime, EWS
    #: DateTimeReceived), UTC; None when the source cannot say (a folder of files).
    received_at: datetime | None = None
    #: A time to fall back on when neither the source nor the headers give one (a file's
    #: modification time).
    fallback_time: datetime | None = None
    #: Where it is, for error messages a person reads ("file 0001.eml", "UID 17"); never
    #: written to the log.
    where: str = ""


@runtime_checkable
class ReplySource(Protocol):
    """A mailbox or folder where replies arrive."""

    #: Short name recorded with each message's event: "folder", "imap", "graph", "ews".
    name: str

    def messages(
        self, since: datetime | None, known: Callable[[str], bool]
    ) -> Iterator[RawMessage]:
        """Messages received at or after ``since`` (every message when None).

        ``known(message_id)`` says a Message-ID was already recorded: a source that can
        list Message-IDs before downloading (Graph, EWS, IMAP) calls it once per message
        and does not yield a message it is True for. A source may yield messages from a
        little before ``since`` (IMAP searches by date).
        """
        ...

    def close(self) -> None:
        """Release connections; the source may not be used afterwards."""
        ...


class SourceSettings(Protocol):
    """Validated settings of one source; ``open()`` connects lazily and returns it."""

    @property
    def kind(self) -> str: ...

    @property
    def identity(self) -> str:
        """Names the mailbox or folder (no secrets), e.g. ``imap://user@host:993/INBOX``;
        where the last fetch got to is kept per identity."""
        ...

    def open(self, policy: RetryPolicy) -> ReplySource: ...


def call_with_retry(
    action: Callable[[], T],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run one read under the retry policy; TransientGatewayError is retried, the rest raised.

    Waits grow exponentially with jitter as for sending, never shorter than the server's own
    hint (``Retry-After``), within ``max_attempts`` and ``max_seconds``. The last
    TransientGatewayError is raised when they run out.
    """
    from tenacity import (
        Retrying,
        retry_if_exception_type,
        stop_after_attempt,
        stop_after_delay,
        wait_exponential_jitter,
    )

    backoff = wait_exponential_jitter(
        multiplier=policy.initial_wait, max=policy.max_wait, jitter=policy.jitter
    )

    def wait(state: object) -> float:
        seconds = backoff(state)  # type: ignore[arg-type]
        outcome = getattr(state, "outcome", None)
        error = outcome.exception() if outcome is not None and outcome.failed else None
        hint = getattr(error, "retry_after", None)
        return max(seconds, hint) if isinstance(hint, int | float) else seconds

    retrying = Retrying(
        stop=stop_after_attempt(policy.max_attempts) | stop_after_delay(policy.max_seconds),
        wait=wait,
        retry=retry_if_exception_type(TransientGatewayError),
        sleep=sleep,
        reraise=True,
    )
    return retrying(action)
