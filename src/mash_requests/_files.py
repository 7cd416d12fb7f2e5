"""Reading only regular files, and writing a file so that a reader never sees half of it.

Reading: a form, a case or a batch file named on the command line may turn out to be a
named pipe (FIFO), a device or a socket. Opening a FIFO for reading waits for a writer,
forever; :func:`open_regular_file` refuses anything that is not a regular file before it
reads a byte (:class:`NotRegularFileError`, which callers translate like any OSError).

Writing: the bytes go to a temporary file in the target's folder (so the rename cannot cross file
systems), are flushed to disk, and the temporary file is renamed over the target; on POSIX
the folder is flushed too, so the rename itself survives a power cut. On any failure the
temporary file is removed and the target is left as it was.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO

#: ``new_mode`` for a file only its owner may read (it holds a child's details).
PRIVATE = 0o600


class NotRegularFileError(OSError):
    """The path names a folder, a named pipe, a device or a socket, not a regular file.

    ``kind`` says which, in words ("a named pipe (FIFO)"), for the caller's message.
    """

    def __init__(self, path: Path, kind: str) -> None:
        error = errno.EISDIR if kind == "a folder" else errno.EINVAL
        super().__init__(error, f"is {kind}, not a regular file", str(path))
        self.kind = kind


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def open_regular_file(path: Path) -> BinaryIO:
    """Open ``path`` for reading in binary, refusing anything but a regular file.

    The path is looked at (``stat``) before it is opened, so a named pipe is refused without
    being opened (opening one for reading blocks until something writes to it). It is then
    opened non-blocking and looked at again through the open handle, so a file swapped for a
    pipe in between is refused too. Raises NotRegularFileError, or the OSError of the
    operating system (FileNotFoundError, PermissionError …).
    """
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise NotRegularFileError(path, _kind(mode))
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    handle = os.fdopen(os.open(path, flags), "rb")
    try:
        mode = os.fstat(handle.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(path, _kind(mode))
    except BaseException:
        handle.close()
        raise
    return handle


def read_regular_file(path: Path) -> bytes:
    """The bytes of a regular file; see :func:`open_regular_file` for what is refused."""
    with open_regular_file(path) as handle:
        return handle.read()


def atomic_write_bytes(
    path: Path,
    data: bytes,
    *,
    new_mode: int | None = PRIVATE,
    keep_mode: bool = True,
    make_parents: bool = False,
) -> None:
    """Write ``data`` to ``path`` so that it holds either its old content or all of ``data``.

    Permissions: a file that replaces another keeps the old one's permission bits when
    ``keep_mode``; otherwise it gets ``new_mode``, or, when that is None, the usual mode of
    a new file (0666 less the umask). ``make_parents`` creates missing folders. Raises
    OSError (callers translate it into their own error, naming the file).
    """
    folder = path.parent
    if make_parents:
        folder.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, _mode_for(path, new_mode, keep_mode))
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    fsync_folder(folder)


def _mode_for(path: Path, new_mode: int | None, keep_mode: bool) -> int:
    if keep_mode:
        with contextlib.suppress(FileNotFoundError):
            return stat.S_IMODE(os.stat(path).st_mode)
    if new_mode is not None:
        return new_mode
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable; a no-op where not possible (Windows needs none)."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):  # the file is written; only durability is at stake
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
