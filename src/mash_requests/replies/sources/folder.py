"""A folder of ``.eml`` files: mail rules that save messages, the outbox world, and tests.

Every ``*.eml`` file directly in the folder is read on every fetch, in name order, and left
where it is (nothing is moved, renamed or deleted); messages already recorded are counted as
"already seen" by their Message-ID. Files that cannot be read are reported, not skipped
silently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from mash_requests.errors import ConfigError, Failure, TransientGatewayError
from mash_requests.replies.sources.base import RawMessage

if TYPE_CHECKING:
    from mash_requests.retry import RetryPolicy

#: A file larger than Exchange Online's largest message (150 MB) is not mail.
MAX_FILE_SIZE = 150 * 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """``[replies] folder``, validated."""

    kind: ClassVar[str] = "folder"

    folder: Path

    @property
    def identity(self) -> str:
        return f"folder:{self.folder}"

    def open(self, policy: RetryPolicy) -> FolderSource:
        return FolderSource(self.folder)


class FolderSource:
    """Reads ``*.eml`` files from one folder; never changes them."""

    name = "folder"

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def messages(
        self, since: datetime | None, known: Callable[[str], bool]
    ) -> Iterator[RawMessage]:
        """Every ``.eml`` file, whatever ``since`` (a copied file keeps an old time)."""
        if not self.folder.is_dir():
            raise ConfigError(
                f"replies folder {self.folder} does not exist or is not a folder; create it "
                "or fix [replies] folder in the config"
            )
        try:
            paths = sorted(p for p in self.folder.iterdir() if p.suffix.lower() == ".eml")
        except OSError as exc:
            raise TransientGatewayError(
                f"cannot list the replies folder {self.folder}: {exc.strerror}",
                server_message=str(exc.strerror),
                failure=Failure.CONNECTION,
            ) from exc
        for path in paths:
            try:
                info = path.stat()
                if not path.is_file() or info.st_size > MAX_FILE_SIZE:
                    continue
                data = path.read_bytes()
            except FileNotFoundError:
                continue  # removed while we read the folder: nothing to count
            except OSError as exc:
                raise TransientGatewayError(
                    f"cannot read {path}: {exc.strerror}; check the file's permissions",
                    server_message=str(exc.strerror),
                    failure=Failure.CONNECTION,
                ) from exc
            yield RawMessage(
                data=data,
                fallback_time=datetime.fromtimestamp(info.st_mtime, UTC),
                where=f"file {path.name}",
            )

    def close(self) -> None:
        return None
