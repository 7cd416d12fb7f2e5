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
    _require_client_libraries(kind, settings, table)
    return settings


#: Client libraries each gateway needs, and the extra that installs them.
_NEEDS: dict[str, tuple[tuple[str, ...], str]] = {
    "ews": (("exchangelib",), "ews"),
    "graph": (("requests", "msal"), "graph"),
}


def _require_client_libraries(kind: str, settings: GatewaySettings, table: Table) -> None:
    """Refuse at load time a gateway whose client library is not installed.

    Found out at send time, it would strand requests already logged as prepared.
    """
    import importlib.util

    modules, extra = _NEEDS.get(kind, ((), ""))
    if kind == "smtp" and getattr(settings, "auth", "") == "xoauth2":
        modules, extra = ("msal",), "smtp-oauth"
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise table.error(
            "type" if kind != "smtp" else "auth",
            f"the {kind} gateway needs {', '.join(missing)} (not installed); "
            f"run: pip install 'mash-requests[{extra}]'",
        )


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
