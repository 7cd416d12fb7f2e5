"""Closing the loop: partners' replies, answers recorded by hand, and overdue requests.

The public API, used by the CLI (``mash-requests replies …``, ``mash-requests overdue``) and
by scripts::

    from pathlib import Path
    import mash_requests

    settings = mash_requests.load_settings(Path("mash-requests.toml"))
    result = mash_requests.fetch_replies(settings)          # read [replies], record each once
    for message in result.needs_attention:                  # bounced and unmatched
        print(message.kind, message.request_ref, message.sender_domain, message.reason)

    mash_requests.record_reply(settings, "MASH-2026-0412-POLICE-1BAC7",
                               received=datetime(2026, 4, 13, 10, 15, tzinfo=UTC),
                               channel="phone")

    for item in mash_requests.overdue(settings, within_hours=4):
        print(item.state, item.partner, item.request_ref, item.due, item.hours_late)

    result = mash_requests.chase(settings, dry_run=True)    # reminders for the overdue
    for item in result.outcomes:
        print(item.request_ref, item.chaser, item.outcome, item.reason)

The shape follows the gateways: a reply *source* per mail system
(:mod:`~mash_requests.replies.sources`: folder, imap, graph, ews) that only reads;
:mod:`~mash_requests.replies.classify` says what a message is;
:mod:`~mash_requests.replies.matching` which request it is about and whether it counts;
:mod:`~mash_requests.replies.fetch` records one event per message in the dispatch log's
chain (``replied``, ``auto_reply``, ``bounced``, ``read_receipt``, ``unmatched``);
:mod:`~mash_requests.replies.tracking` folds the log into the requests still open, which
:mod:`~mash_requests.replies.overdue` lists and :mod:`~mash_requests.replies.chase` reminds.
"""

from __future__ import annotations

from mash_requests.replies.chase import ChaseItem, ChaseOutcome, ChaseResult, chase
from mash_requests.replies.fetch import FetchedMessage, FetchResult, fetch_replies
from mash_requests.replies.overdue import OverdueRequest, overdue, write_overdue
from mash_requests.replies.record import CHANNELS, RecordedReply, parse_received, record_reply
from mash_requests.replies.settings import ReplySettings

__all__ = [
    "CHANNELS",
    "ChaseItem",
    "ChaseOutcome",
    "ChaseResult",
    "FetchResult",
    "FetchedMessage",
    "OverdueRequest",
    "RecordedReply",
    "ReplySettings",
    "chase",
    "fetch_replies",
    "overdue",
    "parse_received",
    "record_reply",
    "write_overdue",
]
