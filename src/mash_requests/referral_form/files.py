"""Reading a referral form file from disk, and writing a filled one so it is never half there."""

from __future__ import annotations

from pathlib import Path

from mash_requests._files import PRIVATE, atomic_write_bytes
from mash_requests.errors import InputError


def read_form(path: Path) -> bytes:
    """The bytes of a referral form file; InputError names the path and what to do."""
    if path.is_dir():
        raise InputError(f"referral form {path}: is a folder, not a PDF; give the form's file")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"referral form {path}: not found; check the path") from None
    except PermissionError:
        raise InputError(
            f"referral form {path}: permission denied; check the file's permissions"
        ) from None
    except OSError as exc:
        raise InputError(f"referral form {path}: cannot be read ({exc.strerror})") from exc


def write_form(path: Path, data: bytes) -> None:
    """Write a filled form so that ``path`` holds either the old file or all of ``data``.

    Written atomically (:func:`mash_requests._files.atomic_write_bytes`: a synced temporary
    file in the same folder, renamed over ``path``, the rename synced too). A new file is
    readable by its owner only: it holds a child's details. A file it replaces keeps its
    permissions. Raises InputError naming the path when the folder is missing or not
    writable; no temporary file is left behind.
    """
    try:
        atomic_write_bytes(path, data, new_mode=PRIVATE, keep_mode=True)
    except OSError as exc:
        raise InputError(
            f"referral form {path}: cannot be written ({exc.strerror or type(exc).__name__}); "
            "check the folder exists and is writable"
        ) from exc
