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


def test_version_comes_from_the_package_metadata() -> None:
    """mash_requests.__version__ is the installed distribution's version."""
    from importlib.metadata import version

    assert mash_requests.__version__ == version("mash-requests")


def test_version_costs_no_metadata_lookup() -> None:
    """Every command logs the version as it starts: reading it never loads importlib.metadata.

    That module alone was tens of milliseconds of a command's start-up.
    """
    code = (
        "import sys, mash_requests; mash_requests.__version__; "
        "print('importlib.metadata' in sys.modules)"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "False"


def test_send_request_has_version_like_the_group() -> None:
    """send-request --version prints what mash-requests --version prints."""
    from click.testing import CliRunner

    from mash_requests.cli import _standalone, main, send_request

    group = CliRunner().invoke(main, ["--version"])
    single = CliRunner().invoke(_standalone(send_request, "send-request"), ["--version"])
    assert group.exit_code == single.exit_code == 0
    assert single.output == group.output == f"mash-requests, version {mash_requests.__version__}\n"
