"""Helpers for the reply tests: send the example case for real, and write partners' replies."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from mash_requests.cli import main
from workspace import EXAMPLES, Workspace

REPLIES_CONFIG = """
[replies]
source = "folder"
folder = "replies"
"""

_counter = itertools.count(1)


@dataclass(frozen=True)
class Sent:
    """One request as it went out (read back from the outbox)."""

    partner: str
    request_ref: str
    message_id: str
    subject: str


def with_replies_folder(workspace: Workspace) -> Path:
    """Add ``[replies]`` (a folder source, ``replies/``) to the workspace config."""
    if "[replies]" not in workspace.config.read_text():
        with workspace.config.open("a", encoding="utf-8") as handle:
            handle.write(REPLIES_CONFIG)
    folder = workspace.root / "replies"
    folder.mkdir(exist_ok=True)
    return folder


def send_example(
    workspace: Workspace, *, rag: str = "amber", case: str = "MASH-2026-0412"
) -> dict[str, Sent]:
    """Send an example case (police and health) through the outbox; its requests by partner."""
    data: dict[str, Any] = workspace.example_case(case)
    data["rag"] = rag
    path = workspace.write_case(data, name=f"{case}.json")
    result = CliRunner().invoke(
        main, ["send-request", "--config", str(workspace.config), "--case", str(path)]
    )
    assert result.exit_code == 0, result.output
    sent: dict[str, Sent] = {}
    for file in workspace.outbox_files():
        headers = BytesHeaderParser(policy=compat32).parsebytes(file.read_bytes())
        if headers["X-MASH-Case-Ref"] != case:
            continue
        ref = str(headers["X-MASH-Request-Ref"])
        partner = ref[len(case) + 1 :].rsplit("-", 1)[0].lower()
        sent[partner] = Sent(partner, ref, str(headers["Message-ID"]), str(headers["Subject"]))
    return sent


def reply(
    to: Sent | None,
    *,
    sender: str = "officer@testshire.police.uk",
    subject: str | None = None,
    threaded: bool = True,
    message_id: str | None = None,
    headers: dict[str, str] | None = None,
    attachments: list[tuple[str, bytes]] = (),  # type: ignore[assignment]
    date: datetime | None = None,
    body: str = "We hold no information about this child.",
) -> bytes:
    """A reply as a mail client writes it: RE: subject, In-Reply-To and References."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "mash@testbury.gov.uk"
    message["Subject"] = subject if subject is not None else f"RE: {to.subject if to else 'hello'}"
    message["Date"] = format_datetime(date or datetime.now(UTC))
    message["Message-ID"] = message_id or f"<reply.{next(_counter)}.{id(message)}@partner.example>"
    if to is not None and threaded:
        message["In-Reply-To"] = to.message_id
        message["References"] = to.message_id
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(body + "\n\n> " + (to.request_ref if to else "") + "\n")
    for name, data in attachments:
        message.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    return message.as_bytes()


def drop(folder: Path, data: bytes, name: str | None = None) -> Path:
    """Put one message into the folder source, as a mail rule saving it would."""
    path = folder / (name or f"{next(_counter):05d}.eml")
    path.write_bytes(data)
    return path


def example_reply(name: str) -> bytes:
    """One of the shipped example replies, as shipped."""
    return (EXAMPLES / "replies" / name).read_bytes()


def run_cli(*args: str) -> tuple[int, str, str]:
    """Run ``mash-requests ARGS``; (exit code, stdout, stderr); a bug's traceback is raised."""
    result = CliRunner().invoke(main, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr
