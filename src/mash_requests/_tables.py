"""Typed reading of one TOML table, with errors that name the file and key.

Used by :mod:`mash_requests.config` and by each gateway's settings so that every
configuration mistake is reported the same way, at load time:
``config mash-requests.toml: [gateway.smtp] port: expected an integer, got 'abc'``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from mash_requests.errors import ConfigError

T = TypeVar("T")


class Table:
    """One TOML table and where it came from.

    ``where`` is the prefix of every error, e.g. ``"config mash-requests.toml: [gateway.smtp]"``.
    ``base_dir`` is the folder relative paths are resolved against (the config file's folder).
    """

    def __init__(self, data: Mapping[str, Any], *, where: str, base_dir: Path) -> None:
        self.data = data
        self.where = where
        self.base_dir = base_dir
        self._read: set[str] = set()

    def error(self, key: str, problem: str) -> ConfigError:
        """A ConfigError naming this table's key."""
        return ConfigError(f"{self.where} {key}: {problem}")

    def _get(self, key: str, kind: type[T] | tuple[type, ...], kind_name: str) -> T | None:
        self._read.add(key)
        if key not in self.data:
            return None
        value = self.data[key]
        # bool is an int in Python; a TOML `true` where a number belongs is a mistake.
        if isinstance(value, bool) and kind is not bool:
            raise self.error(key, f"expected {kind_name}, got {value!r}")
        if not isinstance(value, kind):
            raise self.error(key, f"expected {kind_name}, got {value!r}")
        return value  # type: ignore[return-value]

    def string(self, key: str, default: str | None = None) -> str | None:
        value = self._get(key, str, "a string")
        return default if value is None else value

    def required_string(self, key: str) -> str:
        value = self.string(key)
        if value is None or not value.strip():
            raise self.error(key, "is required (a non-empty string)")
        return value

    def integer(self, key: str, default: int, *, minimum: int | None = None) -> int:
        value = self._get(key, int, "an integer")
        result = default if value is None else value
        if minimum is not None and result < minimum:
            raise self.error(key, f"must be at least {minimum}, got {result}")
        return result

    def number(self, key: str, default: float, *, minimum: float | None = None) -> float:
        value = self._get(key, (int, float), "a number")
        result = default if value is None else float(value)
        if not math.isfinite(result):  # TOML has nan and inf; no setting means either
            raise self.error(key, f"must be a finite number, got {result}")
        if minimum is not None and result < minimum:
            raise self.error(key, f"must be at least {minimum}, got {result}")
        return result

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key, bool, "true or false")
        return default if value is None else value

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.string(key, default)
        assert value is not None
        if value not in choices:
            raise self.error(key, f"expected one of {', '.join(choices)}; got {value!r}")
        return value

    def strings(self, key: str) -> list[str]:
        value = self._get(key, list, "a list of strings")
        if value is None:
            return []
        for item in value:
            if not isinstance(item, str):
                raise self.error(key, f"expected a list of strings, found {item!r}")
        return list(value)

    def path(self, key: str, default: str | None = None) -> Path | None:
        value = self.string(key, default)
        if value is None:
            return None
        path = Path(value).expanduser()
        # Normalised so messages show "mash-data/…", not "examples/../mash-data/…".
        return Path(os.path.normpath(path if path.is_absolute() else self.base_dir / path))

    def table(self, key: str) -> Table:
        value = self._get(key, dict, "a table")
        inner = self.where.rstrip("]") + f".{key}]" if self.where.endswith("]") else self.where
        return Table(value or {}, where=inner, base_dir=self.base_dir)

    def refuse_literal_secret(self, key: str, *, read: str = "") -> None:
        """Refuse a secret written as ``key = "…"`` in the table, with what to write instead
        (``read``: when the table reads it, for a secret only some settings take)."""
        if key in self.data:
            when = f" ({read})" if read else ""
            raise self.error(
                key,
                f'secrets are not written in the config; use {key}_env = "VARIABLE" '
                f'or {key}_file = "path/to/file"{when}',
            )

    def secret_not_read(self, key: str, *, read: str) -> None:
        """For a secret this table takes only in other settings (SMTP's password with
        ``auth = "plain"``): written as a literal it is refused as a secret, and its
        ``_env``/``_file`` as not read here (``read`` says when it is), not as unknown keys."""
        self._read.update({key, f"{key}_env", f"{key}_file"})
        self.refuse_literal_secret(key, read=read)
        for name in (f"{key}_env", f"{key}_file"):
            if name in self.data:
                raise self.error(name, f"is not read here: {key} is {read}; set that, or remove it")

    def secret(self, key: str, *, required: bool = True) -> str | None:
        """A secret named by ``<key>_env`` (an environment variable) or ``<key>_file`` (a path).

        Literal secrets are refused: a config file gets copied, committed and mailed around.
        """
        self._read.update({key, f"{key}_env", f"{key}_file"})
        self.refuse_literal_secret(key)
        env_name = self.string(f"{key}_env")
        file_path = self.path(f"{key}_file")
        if env_name and file_path:
            raise self.error(key, f"give {key}_env or {key}_file, not both")
        if env_name:
            value = os.environ.get(env_name)
            if not value:
                raise self.error(
                    f"{key}_env", f"environment variable {env_name} is not set; set it and retry"
                )
            return value
        if file_path:
            from mash_requests._files import read_regular_file

            try:  # a named pipe is refused, not read (that would wait for ever)
                return read_regular_file(file_path).decode("utf-8").strip()
            except OSError as exc:
                raise self.error(f"{key}_file", f"cannot read {file_path}: {exc.strerror}") from exc
            except UnicodeDecodeError:
                raise self.error(f"{key}_file", f"{file_path} is not UTF-8 text") from None
        if required:
            raise self.error(key, f"is required: set {key}_env or {key}_file")
        return None

    def reject_unknown(self) -> None:
        """Refuse keys nobody read: a typo in a config must not be silently ignored."""
        unknown = sorted(set(self.data) - self._read)
        if unknown:
            raise self.error(
                unknown[0], "unknown key; check the spelling against the README's config reference"
            )
