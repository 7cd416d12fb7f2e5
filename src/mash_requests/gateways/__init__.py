"""Mail gateways: one module per mail system, the same shape in each.

Every gateway module defines a frozen ``Settings`` dataclass with
``from_table(table: Table) -> Settings`` (all validation at config load, no network) and
``open() -> Gateway``, plus the gateway class itself. Client libraries (exchangelib, msal,
requests) are imported inside ``open()`` and the send path, never at module import, so the
CLI starts fast and a council that uses SMTP need not install exchangelib.
"""

from __future__ import annotations

import importlib
from typing import Protocol

from mash_requests._tables import Table
from mash_requests.gateways.base import (
    Attachment,
    Checkable,
    Gateway,
    OutgoingMessage,
    Receipt,
    SentItemsLookup,
)

#: Config ``[gateway] type`` → module that implements it.
GATEWAY_MODULES: dict[str, str] = {
    "outbox": "mash_requests.gateways.outbox",
    "smtp": "mash_requests.gateways.smtp",
    "ews": "mash_requests.gateways.ews",
    "graph": "mash_requests.gateways.graph",
}


class GatewaySettings(Protocol):
    """Validated settings of one gateway; ``open()`` connects lazily and returns it."""

    @property
    def kind(self) -> str: ...

    @property
    def mailbox(self) -> str:
        """The sending mailbox, used as the scope of the per-mailbox rate limit."""
        ...

    def open(self) -> Gateway: ...


def parse_gateway_settings(kind: str, table: Table) -> GatewaySettings:
    """Validate the ``[gateway.<kind>]`` table; raises ConfigError naming the key."""
    module_name = GATEWAY_MODULES.get(kind)
    if module_name is None:
        raise table.error(
            "type", f"unknown gateway {kind!r}; use one of {', '.join(GATEWAY_MODULES)}"
        )
    module = importlib.import_module(module_name)
    settings: GatewaySettings = module.Settings.from_table(table)
    return settings


__all__ = [
    "GATEWAY_MODULES",
    "Attachment",
    "Checkable",
    "Gateway",
    "GatewaySettings",
    "OutgoingMessage",
    "Receipt",
    "SentItemsLookup",
    "parse_gateway_settings",
]
