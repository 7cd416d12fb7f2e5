"""Writing a file so a reader never sees half of it: the shared helper, for the log's files."""

from __future__ import annotations

from pathlib import Path

from mash_requests._files import atomic_write_bytes


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` via a synced temporary file and a rename.

    The file gets the usual permissions for a new file (0666 less the umask), not the
    0600 of a temporary file. Missing folders are created. Raises OSError.
    """
    atomic_write_bytes(
        path, text.encode("utf-8"), new_mode=None, keep_mode=False, make_parents=True
    )
