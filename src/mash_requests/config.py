"""Configuration: one TOML file plus environment variables, validated in full at load time.

Where the file is found: ``--config FILE``, else ``$MASH_REQUESTS_CONFIG``, else
``./mash-requests.toml``, else the embedded defaults (outbox gateway and SQLite log under
``./mash-data/``, no partners). Relative paths in a file are relative to the file's folder.
Secrets are never written in the file: ``password_env = "VAR"`` or ``password_file = "…"``.
Every key is documented in the README's "Configuration reference"; an unknown key is an error.
"""

from __future__ import annotations

import getpass
import os
import re
import tomllib
from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mash_requests._tables import Table
from mash_requests.case import Rag
from mash_requests.deadlines import Timescales
from mash_requests.errors import ConfigError, RecipientError
from mash_requests.partners import AllowList, Partner, PartnerDirectory
from mash_requests.referral_form import DEFAULT_FILL_MAPPING

if TYPE_CHECKING:
    from mash_requests.audit import LogSettings
    from mash_requests.gateways import Gateway, GatewaySettings
    from mash_requests.replies.settings import ReplySettings
    from mash_requests.retry import RetryPolicy

ENV_CONFIG = "MASH_REQUESTS_CONFIG"
DEFAULT_CONFIG_NAME = "mash-requests.toml"
DEFAULT_MARKING = "OFFICIAL-SENSITIVE"
_MARKING = re.compile(r"^[A-Z][A-Z0-9 -]{1,40}$")
_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class FormSettings:
    """How referral forms are checked and filled."""

    max_size: int = 10 * 1024 * 1024
    password: str | None = None
    case_ref_field: str = "case_reference"
    fill_mapping: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_FILL_MAPPING))


@dataclass(frozen=True)
class ChaseSettings:
    """How overdue requests are chased (``[chase]``)."""

    #: At most this many reminders per request; the last goes to the escalation address too.
    max_chasers: int = 2
    #: At least this many hours between two reminders of one request (elapsed hours).
    interval_hours: float = 24.0
    #: Where a case's referral form is found again: ``<forms>/<case ref>.pdf``.
    forms: Path | None = None


@dataclass(frozen=True)
class Settings:
    """Everything mash-requests needs to run, validated."""

    source: Path | None
    base_dir: Path
    data_dir: Path
    mash_name: str
    marking: str
    sender: str
    operator: str
    templates_dir: Path | None
    timescales: Timescales
    directory: PartnerDirectory
    form: FormSettings
    gateway: GatewaySettings
    retry: RetryPolicy
    rate_limit_per_minute: int
    log: LogSettings
    #: Where partners' replies arrive (``[replies]``); None when the config has no such table.
    replies: ReplySettings | None = None
    #: How overdue requests are chased (``[chase]``).
    chase: ChaseSettings = field(default_factory=ChaseSettings)


def find_config(explicit: Path | None) -> Path | None:
    """The config file to use, by the documented order; None means the embedded defaults."""
    if explicit is not None:
        return explicit
    from_env = os.environ.get(ENV_CONFIG)
    if from_env:
        return Path(from_env)
    local = Path.cwd() / DEFAULT_CONFIG_NAME
    return local if local.is_file() else None


def load_settings(
    path: Path | str | os.PathLike[str] | None = None,
    *,
    gateway_secrets: bool = True,
    form_secrets: bool = True,
) -> Settings:
    """Find, read and validate the configuration; ConfigError names the file and key.

    ``path`` is the config file (a ``Path``, ``str`` or other path-like); without it, the
    file is found as :func:`find_config` says.

    ``gateway_secrets=False`` is for what sends nothing (filling or checking a form,
    listing overdue requests, recording a reply by hand): the gateway's table is validated
    in full but its secrets (``password_env``, ``client_secret_file`` …) are not read, so
    they need not be set on this machine, and its client library need not be installed.
    ``settings.gateway.open()`` then raises ConfigError: such settings cannot send.

    ``form_secrets=False`` is for what never opens a referral form (listing overdue
    requests): ``[form] password_env``/``password_file`` is checked for shape but not
    read, and ``settings.form.password`` is None, so such settings cannot open an
    encrypted form.
    """
    source = find_config(Path(path) if path is not None else None)
    if source is None:
        return parse_settings(
            {},
            source=None,
            base_dir=Path.cwd(),
            gateway_secrets=gateway_secrets,
            form_secrets=form_secrets,
        )
    return parse_settings(
        _read_toml(source),
        source=source,
        base_dir=source.resolve().parent,
        gateway_secrets=gateway_secrets,
        form_secrets=form_secrets,
    )


def load_log_settings(path: Path | None = None) -> LogSettings:
    """Only where the dispatch log is: for auditors, who need no gateway or its secrets.

    Reads the same file as :func:`load_settings` but validates only ``[mash] data_dir`` and
    ``[log]``.
    """
    from mash_requests.audit import LogSettings

    source = find_config(path)
    data = _read_toml(source) if source else {}
    base_dir = source.resolve().parent if source else Path.cwd()
    name = f"config {source}" if source else "embedded default config"
    root = Table(data, where=f"{name}:", base_dir=base_dir)
    mash = _section(root, "mash")
    data_dir = mash.path("data_dir", "mash-data")
    assert data_dir is not None
    return LogSettings.from_table(_section(root, "log"), data_dir=data_dir)


@dataclass(frozen=True)
class ReportSettings:
    """What the evidence report takes from the config: never the gateway or its secrets."""

    log: LogSettings
    data_dir: Path
    mash_name: str
    marking: str
    #: ``[mash] templates``: a folder whose ``report.html.j2`` replaces the shipped one.
    templates_dir: Path | None
    timescales: Timescales
    #: Partner key -> name, from the partner directory.
    partner_names: dict[str, str]


def load_report_settings(path: Path | None = None) -> ReportSettings:
    """For ``audit report``: the log, ``[mash]`` name, marking, templates and data folder,
    ``[timescales]`` and the partners' names, validated as :func:`load_settings` does;
    the gateway, the operator and the other sections are not read, so an auditor's config
    need not hold them or their secrets."""
    from mash_requests.audit import LogSettings

    source = find_config(path)
    data = _read_toml(source) if source else {}
    base_dir = source.resolve().parent if source else Path.cwd()
    name = f"config {source}" if source else "embedded default config"
    root = Table(data, where=f"{name}:", base_dir=base_dir)
    mash = _section(root, "mash")
    data_dir, marking = _data_dir_and_marking(mash)
    directory = _directory(root)
    return ReportSettings(
        log=LogSettings.from_table(_section(root, "log"), data_dir=data_dir),
        data_dir=data_dir,
        mash_name=_mash_name(mash),
        marking=marking,
        templates_dir=mash.path("templates"),
        timescales=_timescales(_section(root, "timescales")),
        partner_names={partner.key: partner.name for partner in directory},
    )


def _read_toml(source: Path) -> dict[str, Any]:
    from mash_requests._files import NotRegularFileError, read_regular_file

    try:
        # A named pipe would block the read for ever: refused without being opened.
        raw = read_regular_file(source)
    except FileNotFoundError:
        raise ConfigError(
            f"config {source}: not found; check the path given, or ${ENV_CONFIG}"
        ) from None
    except NotRegularFileError as exc:
        raise ConfigError(f"config {source}: {exc.strerror}; give the config file") from None
    except OSError as exc:
        raise ConfigError(f"config {source}: cannot be read ({exc.strerror})") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"config {source}: is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        hint = _windows_path_hint(raw.decode("utf-8", "replace"), str(exc))
        raise ConfigError(f"config {source}: not valid TOML: {exc}{hint}") from None
    return data


def _windows_path_hint(text: str, error: str) -> str:
    """Advice when the TOML error is a backslash in a double-quoted string, as in a Windows path.

    In TOML "C:\\Users\\mash" is an escape sequence, not a path; '…' strings take it literally.
    """
    where = re.search(r"at line (\d+)", error)
    lines = text.splitlines()
    if where is None or not 0 < int(where.group(1)) <= len(lines):
        return ""
    quoted = re.search(r'"([^"]*\\[^"]*)"?', lines[int(where.group(1)) - 1])
    if quoted is None:
        return ""
    value = quoted.group(1)
    return (
        f'. A backslash starts an escape in a TOML "..." string; for a Windows path use '
        f"single quotes ('{value}') or forward slashes (\"{value.replace(chr(92), '/')}\")"
    )


def _data_dir_and_marking(mash: Table) -> tuple[Path, str]:
    """``[mash] data_dir`` (default ``mash-data``) and ``marking``, validated: read alike by
    the full settings and the auditors' report settings."""
    data_dir = mash.path("data_dir", "mash-data")
    assert data_dir is not None
    marking = mash.string("marking", DEFAULT_MARKING) or DEFAULT_MARKING
    if not _MARKING.match(marking):
        raise mash.error(
            "marking", f"expected a marking such as OFFICIAL-SENSITIVE (capitals), got {marking!r}"
        )
    return data_dir, marking


def _mash_name(mash: Table) -> str:
    """``[mash] name`` (default ``MASH``): the From display name and the requests' signature,
    so one printable line, refused here rather than at the first send."""
    name = mash.string("name", "MASH") or "MASH"
    if not name.isprintable():
        raise mash.error(
            "name",
            "must be one line of printable characters (it holds a line break or control "
            "character); give the MASH's name as it should appear in From: and the requests",
        )
    return name


def parse_settings(
    data: dict[str, Any],
    *,
    source: Path | None,
    base_dir: Path,
    gateway_secrets: bool = True,
    form_secrets: bool = True,
) -> Settings:
    """Validate parsed TOML. ``source`` names the file in errors (None: embedded defaults).

    ``gateway_secrets``, ``form_secrets``: as for :func:`load_settings`.
    """
    name = f"config {source}" if source else "embedded default config"
    root = Table(data, where=f"{name}:", base_dir=base_dir)

    mash = _section(root, "mash")
    data_dir, marking = _data_dir_and_marking(mash)
    sender = mash.string("sender", "mash@localhost.invalid") or ""
    if "@" not in sender or any(ch in sender for ch in "\r\n <>"):
        raise mash.error("sender", f"expected the MASH's secure mailbox address, got {sender!r}")
    operator = _operator(mash, name)
    settings_fields: dict[str, Any] = {
        "mash_name": _mash_name(mash),
        "marking": marking,
        "sender": sender,
        "operator": operator,
        "templates_dir": mash.path("templates"),
    }
    mash.reject_unknown()

    timescales = _timescales(_section(root, "timescales"))
    directory = _directory(root)
    form = _form(_section(root, "form"), read_password=form_secrets)

    from mash_requests.gateways import parse_gateway_settings

    gateway_table = _section(root, "gateway")
    kind = gateway_table.choice("type", ("outbox", "smtp", "ews", "graph"), "outbox")
    kind_table = gateway_table.table(kind)
    if kind == "outbox" and "folder" not in kind_table.data:
        # The embedded default: the outbox lives beside the log in the data folder.
        kind_table = Table(
            {**kind_table.data, "folder": str(data_dir / "outbox")},
            where=kind_table.where,
            base_dir=base_dir,
        )
    gateway: GatewaySettings
    if gateway_secrets:
        gateway = parse_gateway_settings(kind, kind_table)
    else:
        gateway = GatewayNotRead(_shape_only_gateway(kind, kind_table, data_dir))
    if kind in ("graph", "ews") and gateway.mailbox.lower() != sender.lower():
        # Graph and EWS send as the mailbox; the log, the rate limit and the Message-ID
        # domain all use [mash] sender, so the two must be the same address.
        raise mash.error(
            "sender",
            f"must be the mailbox the {kind} gateway sends as ({gateway.mailbox}), got {sender!r}",
        )
    for other in ("outbox", "smtp", "ews", "graph"):
        if other != kind and other in gateway_table.data:
            # Kept for switching back, and checked now, so a switch never meets a typo.
            _shape_only_gateway(other, gateway_table.table(other), data_dir)
    gateway_table.reject_unknown()

    from mash_requests.replies.settings import parse_reply_settings

    replies = parse_reply_settings(
        _section(root, "replies"),
        gateway=gateway_table,
        data_dir=data_dir,
        sender=sender,
        allow_list=directory.allow_list,
    )

    chase = _chase(_section(root, "chase"))

    from mash_requests.retry import RetryPolicy

    retry = RetryPolicy.from_table(_section(root, "retry"))
    rate = _section(root, "rate_limit")
    per_minute = rate.integer("per_minute", 30, minimum=1)
    rate.reject_unknown()

    from mash_requests.audit import LogSettings

    log = LogSettings.from_table(_section(root, "log"), data_dir=data_dir)
    root.reject_unknown()

    return Settings(
        source=source,
        base_dir=base_dir,
        data_dir=data_dir,
        timescales=timescales,
        directory=directory,
        form=form,
        gateway=gateway,
        retry=retry,
        rate_limit_per_minute=per_minute,
        log=log,
        replies=replies,
        chase=chase,
        **settings_fields,
    )


#: The longest operator name accepted: it is a person or service account, not a text.
MAX_OPERATOR_LENGTH = 100


def _operator(mash: Table, config_name: str) -> str:
    """Who is sending: ``[mash] operator``, else ``$MASH_OPERATOR``, else the login name.

    It is written into every log event and export, so it must be one printable line.
    """
    configured = mash.string("operator")
    if configured is not None:
        where = f"{config_name}: [mash] operator"
        value = configured
    elif os.environ.get("MASH_OPERATOR"):
        where = "environment variable MASH_OPERATOR"
        value = os.environ["MASH_OPERATOR"]
    else:
        return _login_name()
    if not value.isprintable():  # before trimming: a leading CR is not whitespace to keep
        raise ConfigError(
            f"{where}: must be one line of printable characters (it holds a line break or "
            "control character); give the name of the person or service sending"
        )
    value = value.strip()
    if not value:
        raise ConfigError(f"{where}: is empty; give the name of the person or service sending")
    if len(value) > MAX_OPERATOR_LENGTH:
        raise ConfigError(
            f"{where}: is {len(value)} characters long; give a name of at most "
            f"{MAX_OPERATOR_LENGTH}"
        )
    return value


class _ShapeOnly(Table):
    """A table whose secrets are checked for shape, never read.

    For a gateway that is configured but not in use: its ``*_env`` variables need not be
    set and its ``*_file`` files need not exist on this machine until it is switched to.
    Likewise ``[form]`` for a command that opens no form. :meth:`secret` returns a
    placeholder, never a secret: the caller must not use it as one.
    """

    def secret(self, key: str, *, required: bool = True) -> str | None:
        self._read.update({key, f"{key}_env", f"{key}_file"})
        self.refuse_literal_secret(key)
        env_name = self.string(f"{key}_env")
        file_path = self.string(f"{key}_file")
        if env_name is not None and file_path is not None:
            raise self.error(key, f"give {key}_env or {key}_file, not both")
        if env_name is not None and not _ENV_NAME.match(env_name):
            raise self.error(
                f"{key}_env", f"expected an environment variable name, got {env_name!r}"
            )
        if env_name is None and file_path is None:
            if required:
                raise self.error(key, f"is required: set {key}_env or {key}_file")
            return None
        return "(not read: gateway not in use)"

    def table(self, key: str) -> Table:
        inner = super().table(key)
        return _ShapeOnly(inner.data, where=inner.where, base_dir=inner.base_dir)


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _shape_only_gateway(kind: str, table: Table, data_dir: Path) -> GatewaySettings:
    """A ``[gateway.<kind>]`` table's settings, validated (keys, types and shapes) with its
    secrets not read: a table not in use, or one loaded for a command that sends nothing.

    Secrets are not read (see :class:`_ShapeOnly`) and the gateway's client library need
    not be installed; both are checked when it is ``[gateway] type`` and is to send.
    """
    import importlib

    from mash_requests.gateways import GATEWAY_MODULES

    data = dict(table.data)
    if kind == "outbox":
        data.setdefault("folder", str(data_dir / "outbox"))
    shape = _ShapeOnly(data, where=table.where, base_dir=table.base_dir)
    settings: GatewaySettings = importlib.import_module(GATEWAY_MODULES[kind]).Settings.from_table(
        shape
    )
    return settings


@dataclass(frozen=True)
class GatewayNotRead:
    """The configured gateway, validated, its secrets not read: it cannot be opened.

    What ``load_settings(gateway_secrets=False)`` gives as ``settings.gateway``, for a
    command that sends nothing. ``kind`` and ``mailbox`` are the configured ones.
    """

    settings: GatewaySettings

    @property
    def kind(self) -> str:
        return self.settings.kind

    @property
    def mailbox(self) -> str:
        return self.settings.mailbox

    def open(self) -> Gateway:
        raise ConfigError(
            f"the {self.kind} gateway's secrets were not read (the settings were loaded for "
            "a command that sends nothing); load them with load_settings(path) to send"
        )


def _section(root: Table, key: str) -> Table:
    table = root.table(key)
    return Table(table.data, where=f"{root.where} [{key}]", base_dir=root.base_dir)


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _clock(table: Table, key: str, default: str) -> time:
    text = table.string(key, default) or default
    try:
        return time.fromisoformat(text)
    except ValueError:
        raise table.error(key, f"expected HH:MM, got {text!r}") from None


def _timescales(table: Table) -> Timescales:
    base = Timescales.defaults()
    hours = {rag: table.number(f"{rag}_hours", base.hours[rag], minimum=0.25) for rag in Rag}
    working = set()
    for entry in table.strings("working_hours"):
        if entry not in {str(r) for r in Rag}:
            raise table.error("working_hours", f"expected red, amber or green, got {entry!r}")
        working.add(Rag(entry))
    start = _clock(table, "day_start", "09:00")
    end = _clock(table, "day_end", "17:00")
    if end <= start:
        raise table.error("day_end", "must be later than day_start")
    day_names = table.strings("working_days") or list(_DAY_NAMES[:5])
    days = set()
    for day_name in day_names:
        if day_name.lower()[:3] not in _DAY_NAMES:
            raise table.error("working_days", f"expected day names like 'mon', got {day_name!r}")
        days.add(_DAY_NAMES.index(day_name.lower()[:3]))
    holidays = set()
    for text in table.strings("holidays"):
        try:
            holidays.add(date.fromisoformat(text))
        except ValueError:
            raise table.error("holidays", f"expected YYYY-MM-DD dates, got {text!r}") from None
    region = table.choice("holidays_region", ("ENG", "WLS", "SCT", "NIR", "none"), "ENG")
    zone_name = table.string("timezone", "Europe/London") or "Europe/London"
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise table.error("timezone", f"unknown time zone {zone_name!r}") from None
    table.reject_unknown()
    return Timescales(
        hours=hours,
        working_hours=frozenset(working),
        day_start=start,
        day_end=end,
        working_days=frozenset(days),
        holidays=frozenset(holidays),
        timezone=zone,
        holidays_region=None if region == "none" else region,
    )


def _directory(root: Table) -> PartnerDirectory:
    directory_table = _section(root, "directory")
    entries = directory_table.strings("allowed_domains")
    partners_table = _section(root, "partners")
    partners: dict[str, Partner] = {}
    if not entries and not partners_table.data:
        directory_table.reject_unknown()
        return PartnerDirectory({}, AllowList(frozenset(), ()))
    allow = AllowList.parse(entries, where=f"{directory_table.where} allowed_domains")
    directory_table.reject_unknown()
    for key in partners_table.data:
        entry = partners_table.table(key)
        where = f"{root.where} [partners.{key}]"
        entry = Table(entry.data, where=where, base_dir=root.base_dir)
        if not re.match(r"^[a-z][a-z0-9_-]{0,31}$", key):
            raise ConfigError(
                f"{where}: partner keys are short lower-case words like 'police', got {key!r}"
            )
        addresses = entry.strings("addresses")
        if not addresses:
            raise entry.error("addresses", "list at least one secure mailbox address")
        partners[key] = Partner(
            key=key,
            name=entry.required_string("name"),
            addresses=tuple(dict.fromkeys(addresses)),
            template=entry.string("template", key) or key,
            escalation=_escalation(entry),
        )
        entry.reject_unknown()
    try:
        return PartnerDirectory(partners, allow)
    except RecipientError as exc:
        source = root.where.rstrip(":")
        raise ConfigError(f"{source}: {exc}") from None


def _form(table: Table, *, read_password: bool = True) -> FormSettings:
    if not read_password:
        # The password's keys are still checked (a typo is refused), its variable or file
        # is not read: see load_settings(form_secrets=False).
        table = _ShapeOnly(table.data, where=table.where, base_dir=table.base_dir)
    max_mb = table.number("max_size_mb", 10, minimum=0.01)
    mapping_table = table.table("fill_mapping")
    mapping = dict(DEFAULT_FILL_MAPPING)
    for form_field, case_path in mapping_table.data.items():
        if not isinstance(case_path, str):
            raise table.error(
                f"fill_mapping.{form_field}", "expected a case path like 'child.name'"
            )
        mapping[form_field] = case_path
    password = table.secret("password", required=False)
    settings = FormSettings(
        max_size=int(max_mb * 1024 * 1024),
        password=password if read_password else None,
        case_ref_field=table.string("case_ref_field", "case_reference") or "case_reference",
        fill_mapping=mapping,
    )
    table.reject_unknown()
    return settings


def _escalation(entry: Table) -> str | None:
    """``[partners.KEY] escalation``: one plain address (the allow-list is checked after)."""
    from mash_requests.partners import split_address

    address = entry.string("escalation")
    if address is None:
        return None
    try:
        split_address(address.strip())
    except ValueError as exc:
        raise entry.error("escalation", f"{address!r}: {exc}") from None
    return address.strip()


def _chase(table: Table) -> ChaseSettings:
    defaults = ChaseSettings()
    settings = ChaseSettings(
        max_chasers=table.integer("max_chasers", defaults.max_chasers, minimum=1),
        interval_hours=table.number("interval_hours", defaults.interval_hours, minimum=0.25),
        forms=table.path("forms", "forms"),
    )
    table.reject_unknown()
    return settings
