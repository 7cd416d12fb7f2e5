"""What a user gets from pip: types their mypy can see, and a wheel that works with no checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

USER_SCRIPT = """\
from __future__ import annotations

from pathlib import Path

import mash_requests
from mash_requests import Case, CaseResult, InputError, load_case, load_settings, send_request


def send(config: Path, case_file: Path) -> list[str]:
    settings = load_settings(config)
    case: Case = load_case(case_file)
    try:
        result: CaseResult = send_request(settings, case_file, partners=list(case.partners))
    except InputError as error:
        return [f"not sent: {error}"]
    return [f"{o.partner} {o.outcome} {o.request_ref}" for o in result.outcomes]


print(mash_requests.__version__.upper())
"""


def mypy(script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """mypy --strict on a user's script in a folder of its own, with this venv's Python."""
    path = tmp_path / "user_script.py"
    path.write_text(script, encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental",
         "--python-executable", sys.executable, str(path)],
        capture_output=True, text=True, cwd=tmp_path, timeout=300, check=False,
    )  # fmt: skip


@pytest.mark.slow
def test_mypy_sees_the_installed_packages_types(tmp_path: Path) -> None:
    """mypy --strict passes a correct user script, so the package's types are found and typed."""
    done = mypy(USER_SCRIPT, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Cannot find implementation or library stub" not in done.stdout


@pytest.mark.slow
def test_mypy_catches_a_users_type_mistake(tmp_path: Path) -> None:
    """A wrong use of the API is a mypy error: the types are real, not Any."""
    wrong = USER_SCRIPT.replace(
        'return [f"{o.partner}',
        "return [o.attempts + 'x' for o in result.outcomes] or [f\"{o.partner}",
    )
    done = mypy(wrong, tmp_path)
    assert done.returncode == 1
    assert 'Unsupported operand types for + ("int" and "str")' in done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built as pip builds it."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(out)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    [built] = out.glob("mash_requests-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed; dependencies come from this venv's site-packages.

    A plain path line in a .pth does not run the editable install's own .pth, so the
    checkout's src/ is not on the fresh venv's path: only the wheel's copy can be imported.
    """
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
         str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    return venv / "bin"


@pytest.mark.slow
def test_wheel_carries_templates_starter_files_and_types(wheel: Path) -> None:
    """The wheel holds the message templates as mash_requests.templates, init's files, py.typed."""
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = {n for n in names if n.startswith("mash_requests/templates/")}
    shipped = {f"mash_requests/templates/{p.name}" for p in (ROOT / "templates").glob("*.j2")}
    assert shipped and shipped <= templates
    assert "mash_requests/templates/__init__.py" in names
    assert "mash_requests/py.typed" in names
    for name in ("mash-requests.toml", "cases/MASH-2026-0001.json", "forms/MASH-2026-0001.pdf"):
        assert f"mash_requests/starter/{name}" in names


@pytest.mark.slow
def test_init_and_a_first_send_work_from_the_installed_wheel(
    installed: Path, tmp_path: Path
) -> None:
    """From the wheel alone: init, then the printed send goes to the outbox with exit 0."""
    env = {k: v for k, v in os.environ.items() if k not in ("MASH_REQUESTS_CONFIG", "PYTHONPATH")}
    init = subprocess.run(
        [str(installed / "mash-requests"), "init", "my-mash"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert init.returncode == 0, init.stderr
    where = subprocess.run(
        [str(installed / "python"), "-c", "import mash_requests; print(mash_requests.__file__)"],
        capture_output=True, text=True, cwd=tmp_path, env=env, check=True,
    ).stdout  # fmt: skip
    assert str(ROOT) not in where  # the wheel's copy, not the checkout's
    send = subprocess.run(
        [str(installed / "send-request"), "--config", "my-mash/mash-requests.toml",
         "--case", "my-mash/cases/MASH-2026-0001.json"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert send.returncode == 0, send.stdout + send.stderr
    assert len(list((tmp_path / "my-mash" / "mash-data" / "outbox").glob("*.eml"))) == 3


@pytest.mark.slow
def test_both_commands_print_the_package_version(installed: Path) -> None:
    """send-request --version and mash-requests --version print the installed version."""
    expected = f"mash-requests, version {version('mash-requests')}"
    for command in ("send-request", "mash-requests"):
        done = subprocess.run(
            [str(installed / command), "--version"], capture_output=True, text=True, check=True
        )
        assert done.stdout.strip() == expected
