"""The files ``mash-requests init`` writes: a starter config and an example case with its form.

``mash-requests.toml`` works as it is (outbox folder and SQLite log under ``mash-data/``,
partners at ``.example`` addresses, which no mail system delivers to). The example case's
referral form ``forms/MASH-2026-0001.pdf`` is the blank form from ``examples/forms/`` filled
with mash-requests' own ``fill_form`` from ``cases/MASH-2026-0001.json``. The case-file
JSON Schema is not a file here: ``init`` writes it from :mod:`mash_requests.case_schema`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mash_requests.errors import InputError

CONFIG_NAME = "mash-requests.toml"
EXAMPLE_CASE = "cases/MASH-2026-0001.json"
EXAMPLE_FORM = "forms/MASH-2026-0001.pdf"
SCHEMA_NAME = "case.schema.json"


@dataclass(frozen=True)
class Starter:
    """Where ``init`` puts its files in ``folder``."""

    folder: Path

    @property
    def config(self) -> Path:
        return self.folder / CONFIG_NAME

    @property
    def case(self) -> Path:
        return self.folder / EXAMPLE_CASE

    @property
    def files(self) -> list[Path]:
        return [self.config, self.case, self.folder / EXAMPLE_FORM, self.folder / SCHEMA_NAME]

    def existing(self) -> list[Path]:
        """The files that are already there (and would be replaced)."""
        return [path for path in self.files if path.exists()]

    def write(self, *, replace: bool = False) -> list[Path]:
        """Write the starter files; refuse (InputError, nothing written) if any exists.

        With ``replace``, existing files are overwritten. Returns the files written.
        """
        if self.folder.exists() and not self.folder.is_dir():
            raise InputError(f"{self.folder}: is a file, not a folder; name a folder for the files")
        existing = self.existing()
        if existing and not replace:
            names = ", ".join(str(path) for path in existing)
            raise InputError(f"{names}: already there; nothing was written")
        from mash_requests.case_schema import case_schema

        shipped = resources.files(__name__)
        contents = {
            self.config: shipped.joinpath(CONFIG_NAME).read_bytes(),
            self.case: shipped.joinpath(EXAMPLE_CASE).read_bytes(),
            self.folder / EXAMPLE_FORM: shipped.joinpath(EXAMPLE_FORM).read_bytes(),
            self.folder / SCHEMA_NAME: (json.dumps(case_schema(), indent=2) + "\n").encode(),
        }
        try:
            for path, data in contents.items():
                if path.is_dir():
                    raise InputError(f"{path}: is a folder; choose another folder for init")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
        except OSError as exc:
            raise InputError(
                f"{exc.filename or self.folder}: cannot be written ({exc.strerror})"
            ) from exc
        return list(contents)
