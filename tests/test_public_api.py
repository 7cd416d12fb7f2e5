"""The public API: every name in __all__ resolves, and importing the CLI stays light."""

from __future__ import annotations

import subprocess
import sys

import mash_requests


def test_every_public_name_resolves() -> None:
    """Each name in mash_requests.__all__ is importable from the package."""
    missing = [name for name in mash_requests.__all__ if not hasattr(mash_requests, name)]
    assert missing == []


def test_cli_import_loads_no_heavy_library() -> None:
    """Importing the CLI loads none of pypdf, jinja2, exchangelib, msal, requests, psycopg."""
    code = (
        "import sys, mash_requests.cli; "
        "print(','.join(m for m in ('pypdf', 'jinja2', 'exchangelib', 'msal', 'requests', "
        "'psycopg', 'tenacity') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == ""
