"""Where replies are read from: one module per mail system, the same shape in each.

Every source module defines a frozen ``Settings`` dataclass (validated at config load, no
network; ``identity`` names the mailbox; ``open(policy)`` returns the source) and the source
class: ``messages(since, known)`` yields :class:`~mash_requests.replies.sources.base.RawMessage`
and ``close()``. Client libraries (exchangelib, msal, requests) are imported only when a
source opens. None of them changes the mailbox.
"""

from __future__ import annotations

from mash_requests.replies.sources.base import RawMessage, ReplySource, SourceSettings

__all__ = ["RawMessage", "ReplySource", "SourceSettings"]
