"""The one atomic-write helper (mash_requests._files) that every file writer uses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mash_requests._files import PRIVATE, atomic_write_bytes
from mash_requests.audit._files import atomic_write_text


def test_a_new_file_gets_the_mode_asked_for(tmp_path: Path) -> None:
    """A new file written PRIVATE is readable by its owner only."""
    path = tmp_path / "form.pdf"
    atomic_write_bytes(path, b"data", new_mode=PRIVATE)
    assert path.read_bytes() == b"data"
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_replaced_file_keeps_its_mode(tmp_path: Path) -> None:
    """With keep_mode, a file written over another keeps that file's permission bits."""
    path = tmp_path / "form.pdf"
    path.write_bytes(b"old")
    path.chmod(0o640)
    atomic_write_bytes(path, b"new", keep_mode=True)
    assert path.stat().st_mode & 0o777 == 0o640


def test_no_mode_means_the_usual_mode_of_a_new_file(tmp_path: Path) -> None:
    """new_mode=None without keep_mode gives 0666 less the umask, as open() would."""
    path = tmp_path / "report.html"
    path.write_bytes(b"old")
    path.chmod(0o600)
    umask = os.umask(0o022)
    try:
        atomic_write_bytes(path, b"new", new_mode=None, keep_mode=False)
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_failed_rename_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the rename fails, OSError is raised, the old content stays and no debris is left."""
    path = tmp_path / "form.pdf"
    path.write_bytes(b"old")

    def full_disk(source: object, target: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError, match="No space left"):
        atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["form.pdf"]


def test_make_parents_creates_missing_folders(tmp_path: Path) -> None:
    """make_parents=True writes into folders that did not exist yet."""
    path = tmp_path / "a" / "b" / "checkpoint.json"
    atomic_write_bytes(path, b"{}", make_parents=True)
    assert path.read_bytes() == b"{}"


def test_a_missing_folder_is_an_oserror_without_make_parents(tmp_path: Path) -> None:
    """Without make_parents, a missing folder raises OSError and creates nothing."""
    with pytest.raises(FileNotFoundError):
        atomic_write_bytes(tmp_path / "missing" / "form.pdf", b"data")
    assert not (tmp_path / "missing").exists()


def test_audit_text_writer_is_the_shared_helper(tmp_path: Path) -> None:
    """audit._files.atomic_write_text writes UTF-8 through the same helper, folders made."""
    path = tmp_path / "reports" / "month.html"
    atomic_write_text(path, "Évidence")
    assert path.read_text(encoding="utf-8") == "Évidence"
