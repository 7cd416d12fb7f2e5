"""Writing a file so that a reader never sees half of it: one helper for every writer.

The bytes go to a temporary file in the target's folder (so the rename cannot cross file
systems), are flushed to disk, and the temporary file is renamed over the target; on POSIX
the folder is flushed too, so the rename itself survives a power cut. On any failure the
temporary file is removed and the target is left as it was.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

#: ``new_mode`` for a file only its owner may read (it holds a child's details).
PRIVATE = 0o600


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
