"""The outbox gateway: each message becomes an ``.eml`` file in a folder.

The embedded default, and the library's own test double (as httpx ships MockTransport): the
files are RFC 5322 messages that Outlook or Thunderbird open, so a MASH can try the whole
product with no mail server, and a script's tests can assert on real messages.

Files are written atomically (temporary file, fsync, rename, fsync of the folder), so a
crash never leaves half a message where a mail pickup process could read it.

Failures read as the other gateways' do (what failed, the system's words, the fix): a folder
that cannot be created or written to is the outbox's "could not connect", permanent (a
person must fix the path or its permissions); a write that fails part-way (disk full, an
I/O error) is transient, and leaves nothing behind.
"""

from __future__ import annotations

import errno
import hashlib
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from mash_requests._files import atomic_write_bytes
from mash_requests._tables import Table
from mash_requests.errors import Failure, PermanentGatewayError, TransientGatewayError
from mash_requests.gateways.base import OutgoingMessage, Receipt

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")

#: Errors that mean the folder itself cannot be used (a person must fix the path or its
#: permissions): permanent. Anything else during a write (disk full, I/O) is transient.
_FOLDER_UNUSABLE = frozenset(
    {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ENOTDIR, errno.EEXIST}
)


@dataclass(frozen=True)
class Settings:
    """``[gateway.outbox]``: ``folder`` (default ``<data_dir>/outbox``)."""

    kind: ClassVar[str] = "outbox"
    folder: Path

    @property
    def mailbox(self) -> str:
        return f"outbox:{self.folder}"

    @classmethod
    def from_table(cls, table: Table) -> Settings:
        folder = table.path("folder")
        if folder is None:
            raise table.error("folder", "is required: the folder .eml files are written to")
        table.reject_unknown()
        return cls(folder=folder)

    def open(self) -> OutboxGateway:
        return OutboxGateway(self.folder)


def _file_stem(message: OutgoingMessage) -> str:
    digest = hashlib.sha256(message.message_id.encode()).hexdigest()[:16]
    return f"{_UNSAFE.sub('_', message.request_ref)}--{digest}"


class OutboxGateway:
    """Writes each message as ``<request_ref>--<message-id digest>.eml`` in ``folder``."""

    name = "outbox"

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def send(self, message: OutgoingMessage) -> Receipt:
        target = self.folder / f"{_file_stem(message)}.eml"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(target, message.as_bytes(), keep_mode=False)
        except OSError as exc:
            if exc.errno in _FOLDER_UNUSABLE:
                raise self._unusable(exc) from exc
            raise TransientGatewayError.explained(
                Failure.SERVER,
                f"writing the message to the outbox folder {self.folder} failed, "
                "and nothing was left",
                exc.strerror or type(exc).__name__,
            ) from exc
        return Receipt(gateway=self.name, message_id=message.message_id, gateway_id=str(target))

    def find_sent(self, message_id: str) -> Receipt | None:
        digest = hashlib.sha256(message_id.encode()).hexdigest()[:16]
        for path in self.folder.glob(f"*--{digest}.eml"):
            return Receipt(gateway=self.name, message_id=message_id, gateway_id=str(path))
        return None

    def check(self) -> str:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.folder):
                pass
        except OSError as exc:
            raise self._unusable(exc) from exc
        return f"outbox folder {self.folder} is writable"

    def _unusable(self, exc: OSError) -> PermanentGatewayError:
        """The folder cannot be created or written to: the same words for send and check."""
        return PermanentGatewayError.explained(
            Failure.CONNECTION,
            f"cannot write to the outbox folder {self.folder}",
            exc.strerror or type(exc).__name__,
            fix="check [gateway.outbox] folder, and that this account may write there",
        )

    def close(self) -> None:
        """Nothing to release."""
