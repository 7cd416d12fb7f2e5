"""Reading a referral form file from disk, and writing a filled one so it is never half there."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

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

    The bytes go to a temporary file in the same folder (so the rename cannot cross file
    systems), are flushed to disk, and the file is renamed over ``path``; the rename is
    flushed too. A new file is readable by its owner only: it holds a child's details. A
    file it replaces keeps its permissions. Raises InputError naming the path when the
    folder is missing or not writable; no temporary file is left behind.
    """
    folder = path.parent
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise _unwritable(path, exc) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileNotFoundError):
            os.chmod(temporary, stat.S_IMODE(os.stat(path).st_mode))
        os.replace(temporary, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(exc, OSError):
            raise _unwritable(path, exc) from exc
        raise
    _fsync_folder(folder)


def _unwritable(path: Path, exc: OSError) -> InputError:
    return InputError(
        f"referral form {path}: cannot be written ({exc.strerror or type(exc).__name__}); "
        "check the folder exists and is writable"
    )


def _fsync_folder(folder: Path) -> None:
    # Makes the rename itself durable; not possible on Windows, where it is not needed.
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):  # the form is written; only durability is at stake
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
