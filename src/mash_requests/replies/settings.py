"""The ``[replies]`` table: where partners' replies arrive and how to read them.

::

    [replies]
    source = "folder"                 # folder | imap | graph | ews
    folder = "replies"                # source = "folder": a folder of .eml files
    address = "mash-replies@council.example"   # optional: added to every request's Reply-To

    [replies.imap]                    # source = "imap"
    host = "imap.council.example"
    username = "mash-replies"
    password_env = "MASH_IMAP_PASSWORD"

    [replies.graph]                   # source = "graph": keys as [gateway.graph], which
    folder = "inbox"                  # supplies any left out (mailbox, tenant, client …)

    [replies.ews]                     # source = "ews": keys as [gateway.ews], likewise
    folder = "inbox"

Every key is validated when the config loads, the unused sources' tables included; unknown
keys are errors; secrets are ``*_env`` / ``*_file`` only, as for the gateways.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from mash_requests._tables import Table

if TYPE_CHECKING:
    from mash_requests.partners import AllowList
    from mash_requests.replies.sources.base import SourceSettings

#: ``[replies] source`` → the module that reads it.
SOURCE_MODULES: dict[str, str] = {
    "folder": "mash_requests.replies.sources.folder",
    "imap": "mash_requests.replies.sources.imap",
    "graph": "mash_requests.replies.sources.graph",
    "ews": "mash_requests.replies.sources.ews",
}

#: Client libraries each source needs, and the extra that installs them.
_NEEDS: dict[str, tuple[tuple[str, ...], str]] = {
    "ews": (("exchangelib",), "ews"),
    "graph": (("requests", "msal"), "graph"),
}

#: Keys of a [replies.graph] / [replies.ews] table that are secrets (given as _env or _file).
_SECRETS = ("password", "client_secret")


def _no_reader() -> SourceSettings:
    raise ValueError("ReplySettings needs load_reader")


@dataclass(frozen=True)
class ReplySettings:
    """Where replies arrive (validated ``[replies]``)."""

    #: "folder", "imap", "graph" or "ews".
    source: str
    #: Where each source's last successful fetch is remembered (a speed-up only).
    state_file: Path
    #: The address of the mailbox replies are read from, when it has one: every request
    #: (and reminder) carries it in ``Reply-To`` after the worker's address.
    address: str | None = None
    #: Builds the chosen source's settings with its secrets read (see :attr:`reader`).
    load_reader: Callable[[], SourceSettings] = field(default=_no_reader, repr=False, compare=False)

    @cached_property
    def reader(self) -> SourceSettings:
        """The chosen source's validated settings; ``reader.open(policy)`` gives the source.

        Its secrets (``password_env``, ``client_secret_file`` …) are read here, on first use,
        not when the config loads: every key was checked then, but only a command that reads
        the mailbox (``replies fetch``) needs the secret, so a machine that only sends
        requests or chases them needs neither the variable nor the file (as for a gateway
        that is not in use). Raises ConfigError naming the key when the secret is missing.
        """
        return self.load_reader()


def parse_reply_settings(
    table: Table,
    *,
    gateway: Table,
    data_dir: Path,
    sender: str = "mash@localhost.invalid",
    allow_list: AllowList | None = None,
) -> ReplySettings | None:
    """Validate ``[replies]`` (None when the config has no such table).

    ``gateway`` is the ``[gateway]`` table: ``[replies.graph]`` and ``[replies.ews]`` take
    any key they leave out from ``[gateway.graph]`` / ``[gateway.ews]``. ``address`` must be
    at the MASH's own domain (``sender``'s) or on the recipient ``allow_list``, as the
    worker's Reply-To address must: replies carry safeguarding detail.
    """
    if not table.data:
        table.reject_unknown()
        return None
    if "source" not in table.data:
        raise table.error("source", f"is required: one of {', '.join(SOURCE_MODULES)}")
    source = table.choice("source", tuple(SOURCE_MODULES), "folder")
    folder = table.path("folder")
    if source == "folder" and folder is None:
        raise table.error("folder", 'is required with source = "folder": a folder of .eml files')
    from mash_requests.config import _ShapeOnly

    load_reader: Callable[[], SourceSettings] | None = None
    if folder is not None and source == "folder":
        from mash_requests.replies.sources.folder import Settings as FolderSettings

        load_reader = functools.partial(_given, FolderSettings(folder=folder))
    for kind in ("imap", "graph", "ews"):
        sub = table.table(kind)
        if kind != source and not sub.data:
            continue
        if kind in ("graph", "ews"):
            sub = _with_gateway_defaults(
                sub, gateway.table(kind), default_auth="ntlm" if kind == "ews" else None
            )
        module = importlib.import_module(SOURCE_MODULES[kind])
        # Every key checked now, secrets only for their shape; read when the reader is used.
        module.Settings.from_table(_ShapeOnly(sub.data, where=sub.where, base_dir=sub.base_dir))
        if kind == source:
            _require_client_libraries(kind, table)
            # By the module's name: settings cross to send-batch's worker processes, and
            # a module object (or a lambda) cannot be pickled.
            load_reader = functools.partial(_read_source, SOURCE_MODULES[kind], sub)
    assert load_reader is not None
    state_file = table.path("state_file") or data_dir / "replies-state.json"
    address = _replies_address(table, sender, allow_list)
    table.reject_unknown()
    return ReplySettings(
        source=source, state_file=state_file, address=address, load_reader=load_reader
    )


def _read_source(module_name: str, table: Table) -> SourceSettings:
    """The source's settings from its table, secrets read (a fresh copy of the table)."""
    module = importlib.import_module(module_name)
    settings: SourceSettings = module.Settings.from_table(
        Table(table.data, where=table.where, base_dir=table.base_dir)
    )
    return settings


def _given(settings: SourceSettings) -> SourceSettings:
    return settings


def _replies_address(table: Table, sender: str, allow_list: AllowList | None) -> str | None:
    """``[replies] address``: one plain secure address, at the MASH's domain or allowed."""
    from mash_requests.partners import split_address

    address = table.string("address")
    if address is None:
        return None
    try:
        _, domain = split_address(address.strip())
    except ValueError as exc:
        raise table.error("address", f"{address!r}: {exc}") from None
    own = sender.rsplit("@", 1)[-1].lower()
    if domain != own and (allow_list is None or not allow_list.allows(domain)):
        raise table.error(
            "address",
            f"{address!r} is neither at the MASH's domain ({own}) nor on [directory] "
            "allowed_domains; partners' replies would leave secure email. Give the secure "
            "address of the mailbox replies are read from",
        )
    return address.strip()


#: The keys that belong to one way of signing in (EWS: username and password for ntlm and
#: basic; tenant, client and secret for oauth), besides the secrets.
_SIGN_IN_KEYS = ("username", "tenant_id", "client_id")


def _with_gateway_defaults(table: Table, gateway: Table, default_auth: str | None) -> Table:
    """``[replies.X]`` with every key it leaves out taken from ``[gateway.X]``; a table that
    signs in another way (its own ``auth``) takes none of the gateway's sign-in keys."""
    inherited = {k: v for k, v in gateway.data.items() if k not in table.data}
    if "auth" in table.data and table.data["auth"] != gateway.data.get("auth", default_auth):
        for key in list(inherited):
            if key in _SIGN_IN_KEYS or key.startswith(_SECRETS):
                del inherited[key]
    for secret in _SECRETS:
        # A secret given here in one form replaces the gateway's in either form.
        if any(f"{secret}{suffix}" in table.data for suffix in ("", "_env", "_file")):
            for suffix in ("", "_env", "_file"):
                inherited.pop(f"{secret}{suffix}", None)
    return Table({**inherited, **table.data}, where=table.where, base_dir=table.base_dir)


def _require_client_libraries(kind: str, table: Table) -> None:
    import importlib.util

    modules, extra = _NEEDS.get(kind, ((), ""))
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise table.error(
            "source",
            f"reading replies with {kind} needs {', '.join(missing)} (not installed); "
            f"run: pip install 'mash-requests[{extra}]'",
        )
