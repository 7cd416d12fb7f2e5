"""Reading a referral form file from disk, and writing a filled one so it is never half there."""

from __future__ import annotations

from pathlib import Path

from mash_requests._files import (
    PRIVATE,
    NotRegularFileError,
    atomic_write_bytes,
    read_regular_file,
)
from mash_requests.errors import InputError

#: The refusal code of a form file that cannot be read (see mash_requests.errors).
_UNREADABLE = "form_unreadable"


def read_form(path: Path) -> bytes:
    """The bytes of a referral form file; InputError names the path and what to do.

    Its ``reason`` is ``form_unreadable`` (the code a send's logged refusal carries). Only
    a regular file is read: a folder, a named pipe (which would wait for a writer
    forever) or a device is refused unopened.
    """
    try:
        return read_regular_file(path)
    except NotRegularFileError as exc:
        raise InputError(
            f"referral form {path}: {exc.strerror}; give the form's PDF file",
            reason=_UNREADABLE,
        ) from None
    except FileNotFoundError:
        raise InputError(
            f"referral form {path}: not found; check the path", reason=_UNREADABLE
        ) from None
    except PermissionError:
        raise InputError(
            f"referral form {path}: permission denied; check the file's permissions",
            reason=_UNREADABLE,
        ) from None
    except OSError as exc:
        raise InputError(
            f"referral form {path}: cannot be read ({exc.strerror})", reason=_UNREADABLE
        ) from exc


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
