"""A temporary MASH set-up for tests: config, case files, forms, outbox and log."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
SHARED = Path(os.environ.get("MASH_SHARED_DIR", REPO.parent / "shared"))


CONFIG_TEMPLATE = """
[mash]
name = "Testbury MASH"
sender = "mash@testbury.gov.uk"
data_dir = "data"
operator = "tester"

[directory]
allowed_domains = ["*.police.uk", "nhs.net", "testbury.gov.uk", "eastbury.gov.uk"]

[partners.police]
name = "Testshire Police"
addresses = ["mash@testshire.police.uk"]
template = "police"

[partners.health]
name = "Testbury Health"
addresses = ["safeguarding@nhs.net", "second.mailbox@nhs.net"]
template = "health"

[partners.education]
name = "Testbury Education"
addresses = ["education@testbury.gov.uk"]
template = "education"

[retry]
max_attempts = 2
initial_wait = 0
max_wait = 0
jitter = 0
lookup_delay = 0
"""


class Workspace:
    """A temporary MASH set-up: config, case files, forms, and where output lands."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config = root / "mash-requests.toml"
        self.config.write_text(CONFIG_TEMPLATE, encoding="utf-8")
        self.forms = root / "forms"
        self.forms.mkdir()
        for pdf in (EXAMPLES / "forms").glob("*.pdf"):
            shutil.copy(pdf, self.forms / pdf.name)
        self.cases = root / "cases"
        self.cases.mkdir()

    @property
    def outbox(self) -> Path:
        return self.root / "data" / "outbox"

    @property
    def log_path(self) -> Path:
        return self.root / "data" / "dispatch-log.sqlite3"

    def outbox_files(self) -> list[Path]:
        return sorted(self.outbox.glob("*.eml")) if self.outbox.exists() else []

    def example_case(self, name: str = "MASH-2026-0412") -> dict[str, Any]:
        data: dict[str, Any] = json.loads((EXAMPLES / "cases" / f"{name}.json").read_text())
        data["partners"] = ["police", "health"]
        data["referral_form"] = f"../forms/{data['case_ref']}.pdf"
        return data

    def write_case(self, data: dict[str, Any] | str, name: str = "case.json") -> Path:
        path = self.cases / name
        text = data if isinstance(data, str) else json.dumps(data, indent=2)
        path.write_text(text, encoding="utf-8")
        return path

    def events(self) -> list[Any]:
        from mash_requests.audit import open_store
        from mash_requests.config import load_settings

        store = open_store(load_settings(self.config).log)
        try:
            return [stored.event for stored in store.events()]
        finally:
            store.close()
