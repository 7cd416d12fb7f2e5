"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from workspace import EXAMPLES, Workspace


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    """A fresh MASH set-up in a temporary folder, as the working directory."""
    if not (EXAMPLES / "forms" / "MASH-2026-0412.pdf").exists():
        pytest.fail("examples/forms/*.pdf are missing: run python examples/make_referral_forms.py")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MASH_REQUESTS_CONFIG", raising=False)
    return Workspace(tmp_path)
