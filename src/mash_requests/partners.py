"""The partner directory and the recipient domain allow-list.

Recipients come only from here. A partner agency has a key (``police``), a display name,
one or more secure mailbox addresses and the template it uses. Every address is checked
against the allow-list when the config loads, so a bad address is a configuration error
long before anything is sent. Nothing else (case file, CLI flag, API argument) can name an
address: callers name partner *keys*.

Allow-list entries are exact domains (``nhs.net``) or suffixes (``*.police.uk`` matches
``met.police.uk`` and ``mash.met.police.uk`` but not ``police.uk`` itself nor
``evilpolice.uk``). The retired government domains (gsi/gse/gcsx/gsx.gov.uk) are refused:
they are no longer secure suffixes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from mash_requests.errors import ConfigError, RecipientError

RETIRED_SUFFIXES = ("gsi.gov.uk", "gse.gov.uk", "gcsx.gov.uk", "gsx.gov.uk")
_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_LOCAL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}$")


def _valid_domain(domain: str) -> bool:
    labels = domain.split(".")
    return len(labels) >= 2 and all(_LABEL.match(label) for label in labels)


def _is_retired(domain: str) -> bool:
    return any(domain == s or domain.endswith("." + s) for s in RETIRED_SUFFIXES)


def split_address(address: str) -> tuple[str, str]:
    """Split and normalise an address; ValueError with a reason when it is not plain.

    Only the plain ``local@domain`` form is accepted: no display names, comments, quoted
    local parts or IP literals. The domain is lower-cased.
    """
    if any(ch.isspace() for ch in address) or address.count("@") != 1:
        raise ValueError("expected one plain address like name@agency.example")
    local, domain = address.split("@")
    domain = domain.lower()
    if not _LOCAL.match(local) or local.startswith(".") or local.endswith(".") or ".." in local:
        raise ValueError("the part before @ has characters a secure mailbox address cannot have")
    if not _valid_domain(domain):
        raise ValueError(f"{domain!r} is not a valid domain name")
    return local, domain


@dataclass(frozen=True)
class AllowList:
    """Recipient domains that may receive requests."""

    exact: frozenset[str]
    suffixes: tuple[str, ...]

    @classmethod
    def parse(cls, entries: Iterable[str], *, where: str) -> AllowList:
        exact: set[str] = set()
        suffixes: list[str] = []
        for entry in entries:
            text = entry.strip().lower()
            domain = text[2:] if text.startswith("*.") else text
            if not _valid_domain(domain):
                raise ConfigError(
                    f"{where}: {entry!r} is not a domain; use 'nhs.net' or '*.police.uk'"
                )
            if _is_retired(domain):
                raise ConfigError(
                    f"{where}: {entry!r} is a retired government secure-email domain "
                    "(gsi/gse/gcsx/gsx.gov.uk); remove it and use the agency's current domain"
                )
            if text.startswith("*."):
                suffixes.append(domain)
            else:
                exact.add(domain)
        if not exact and not suffixes:
            raise ConfigError(f"{where}: the allow-list is empty; list the partner domains")
        return cls(frozenset(exact), tuple(suffixes))

    def allows(self, domain: str) -> bool:
        domain = domain.lower()
        if _is_retired(domain):
            return False
        return domain in self.exact or any(domain.endswith("." + s) for s in self.suffixes)


@dataclass(frozen=True)
class Partner:
    """A partner agency as the directory knows it."""

    key: str
    name: str
    addresses: tuple[str, ...]
    template: str
    #: Who receives the last reminder as well (``[partners.KEY] escalation``), if anyone:
    #: a manager or duty mailbox, held to the same allow-list as the addresses.
    escalation: str | None = None


class PartnerDirectory:
    """The partners a MASH may ask, each with checked secure addresses."""

    def __init__(self, partners: Mapping[str, Partner], allow_list: AllowList) -> None:
        self._partners = dict(partners)
        self.allow_list = allow_list
        for partner in self._partners.values():
            for address in partner.addresses:
                self.check_address(address, partner=partner.key)
            if partner.escalation is not None:
                self.check_address(partner.escalation, partner=partner.key)

    def __iter__(self) -> Iterator[Partner]:
        return iter(self._partners.values())

    def __len__(self) -> int:
        return len(self._partners)

    def keys(self) -> list[str]:
        return list(self._partners)

    def get(self, key: str) -> Partner:
        """The partner with this key; RecipientError listing the known keys otherwise."""
        try:
            return self._partners[key]
        except KeyError:
            known = ", ".join(sorted(self._partners)) or "none configured"
            raise RecipientError(
                f"unknown partner {key!r}; the partner directory has: {known}",
                reason="unknown_partner",
                partners=[key],
            ) from None

    def check_address(self, address: str, *, partner: str) -> None:
        """Refuse an address that is malformed or outside the allow-list."""
        try:
            _, domain = split_address(address)
        except ValueError as exc:
            raise RecipientError(f"partner {partner!r}: address {address!r}: {exc}") from None
        if _is_retired(domain):
            raise RecipientError(
                f"partner {partner!r}: address {address!r} uses a retired government "
                "secure-email domain; ask the agency for its current secure address"
            )
        if not self.allow_list.allows(domain):
            raise RecipientError(
                f"partner {partner!r}: address {address!r} is not on the recipient domain "
                "allow-list; add the domain to [directory] allowed_domains only if it is a "
                "secure partner domain"
            )
