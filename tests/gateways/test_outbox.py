"""The outbox gateway: one atomically written ``.eml`` file per message, found again by id."""

from __future__ import annotations

import email
import os
import stat
from collections.abc import Callable, Iterator
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from mash_requests._tables import Table
from mash_requests.errors import (
    ConfigError,
    Failure,
    PermanentGatewayError,
    TransientGatewayError,
)
from mash_requests.gateways import Checkable, Gateway, SentItemsLookup, parse_gateway_settings
from mash_requests.gateways.base import OutgoingMessage
from mash_requests.gateways.outbox import OutboxGateway, Settings


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "outbox"


@pytest.fixture
def gateway(folder: Path) -> OutboxGateway:
    return Settings(folder=folder).open()


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A folder nobody may write to; skips where permissions do not bind (root)."""
    path = tmp_path / "read-only"
    path.mkdir()
    path.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        if os.access(path, os.W_OK):
            pytest.skip("running as root (or on a file system without permissions)")
        yield path
    finally:
        path.chmod(stat.S_IRWXU)


def parse(path: Path) -> EmailMessage:
    message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


# -- sending ------------------------------------------------------------------------------


def test_send_writes_a_parseable_eml_with_the_exact_form(
    gateway: OutboxGateway, message: OutgoingMessage
) -> None:
    """The file parses as the same message: Message-ID, subject and the form's exact bytes."""
    receipt = gateway.send(message)
    written = parse(Path(str(receipt.gateway_id)))
    # The helper's Message-ID is long enough to be folded onto its own line: compare unfolded.
    assert str(written["Message-ID"]).strip() == message.message_id
    assert written["Subject"] == message.subject
    [form] = list(written.iter_attachments())
    assert form.get_content_type() == "application/pdf"
    assert form.get_content() == message.attachment.data


def test_file_name_carries_the_request_ref(
    gateway: OutboxGateway, folder: Path, message: OutgoingMessage
) -> None:
    """The file is <request ref>--<digest>.eml in the folder, and the receipt names it."""
    receipt = gateway.send(message)
    [path] = list(folder.iterdir())
    assert path.name.startswith("RFI-2026-0001--") and path.suffix == ".eml"
    assert receipt.gateway == "outbox" and receipt.message_id == message.message_id
    assert receipt.gateway_id == str(path)


def test_unsafe_characters_of_the_request_ref_stay_out_of_the_path(
    gateway: OutboxGateway, folder: Path, make_message: Callable[..., OutgoingMessage]
) -> None:
    """A request ref with a slash or spaces still makes one file directly in the folder."""
    gateway.send(make_message(request_ref="../RFI 2026/0001"))
    [path] = list(folder.iterdir())
    assert path.name.startswith(".._RFI_2026_0001--")
    assert path.parent == folder


def test_write_is_atomic_and_leaves_no_temporary_file(
    gateway: OutboxGateway, folder: Path, make_message: Callable[..., OutgoingMessage]
) -> None:
    """After sends only the finished .eml files are in the folder, hidden files included."""
    gateway.send(make_message(request_ref="RFI-1"))
    gateway.send(make_message(request_ref="RFI-2"))
    names = sorted(path.name for path in folder.iterdir())
    assert len(names) == 2
    assert all(name.endswith(".eml") and not name.startswith(".") for name in names)


def test_failed_write_leaves_nothing_and_is_transient(
    gateway: OutboxGateway,
    folder: Path,
    message: OutgoingMessage,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A rename that fails is transient and leaves neither the message nor its temporary file."""

    def no_space(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("mash_requests._files.os.replace", no_space)
    with pytest.raises(TransientGatewayError) as caught:
        gateway.send(message)
    assert str(caught.value) == (
        f"writing the message to the outbox folder {folder} failed, and nothing was left: "
        "No space left on device"
    )
    assert caught.value.failure is Failure.SERVER
    assert list(folder.iterdir()) == []


def test_send_creates_the_folder(
    tmp_path: Path, make_message: Callable[..., OutgoingMessage]
) -> None:
    """A folder that does not exist yet is created, parents included."""
    folder = tmp_path / "a" / "b" / "outbox"
    Settings(folder=folder).open().send(make_message())
    assert len(list(folder.glob("*.eml"))) == 1


def test_unwritable_folder_is_permanent(read_only: Path, message: OutgoingMessage) -> None:
    """Sending into a folder without write permission is permanent and names the folder."""
    with pytest.raises(PermanentGatewayError, match="may write there") as caught:
        OutboxGateway(read_only).send(message)
    assert str(read_only) in str(caught.value)


def test_folder_under_a_file_says_what_failed_and_what_to_do(
    tmp_path: Path, message: OutgoingMessage
) -> None:
    """An outbox path that cannot be a folder fails with the system's words and the fix."""
    (tmp_path / "a-file").write_text("not a folder")
    folder = tmp_path / "a-file" / "outbox"
    with pytest.raises(PermanentGatewayError) as caught:
        OutboxGateway(folder).send(message)
    assert str(caught.value) == (
        f"cannot write to the outbox folder {folder}: Not a directory; check [gateway.outbox] "
        "folder, and that this account may write there"
    )
    assert caught.value.failure is Failure.CONNECTION
    assert caught.value.server_message == "Not a directory"


def test_check_and_send_say_the_same_about_an_unusable_folder(
    tmp_path: Path, message: OutgoingMessage
) -> None:
    """gateway check fails with the very sentence a send into the same folder gives."""
    (tmp_path / "a-file").write_text("not a folder")
    gateway = OutboxGateway(tmp_path / "a-file" / "outbox")
    with pytest.raises(PermanentGatewayError) as sending:
        gateway.send(message)
    with pytest.raises(PermanentGatewayError) as checking:
        gateway.check()
    assert str(checking.value) == str(sending.value)


# -- finding sent messages ----------------------------------------------------------------


def test_find_sent_finds_the_message_by_message_id(
    gateway: OutboxGateway, message: OutgoingMessage
) -> None:
    """find_sent returns a receipt naming the file that carries the Message-ID."""
    sent = gateway.send(message)
    found = gateway.find_sent(message.message_id)
    assert found is not None
    assert found.gateway_id == sent.gateway_id and found.message_id == message.message_id


def test_find_sent_returns_none_for_another_message_id(
    gateway: OutboxGateway, message: OutgoingMessage
) -> None:
    """find_sent answers None for a Message-ID that was never written."""
    gateway.send(message)
    assert gateway.find_sent("<never-sent@council.example>") is None


def test_find_sent_returns_none_before_the_folder_exists(gateway: OutboxGateway) -> None:
    """find_sent on an outbox folder not yet created answers None, without error."""
    assert gateway.find_sent("<never-sent@council.example>") is None


# -- check --------------------------------------------------------------------------------


def test_check_on_a_writable_folder_says_so_and_leaves_nothing(
    gateway: OutboxGateway, folder: Path
) -> None:
    """check() creates the folder, proves it writable and leaves no file behind."""
    assert gateway.check() == f"outbox folder {folder} is writable"
    assert list(folder.iterdir()) == []


def test_check_on_an_unwritable_folder_is_permanent(read_only: Path) -> None:
    """check() on a folder without write permission raises PermanentGatewayError."""
    with pytest.raises(PermanentGatewayError, match="cannot write to the outbox folder"):
        OutboxGateway(read_only).check()


def test_outbox_gateway_is_a_gateway_with_lookup_and_check(gateway: OutboxGateway) -> None:
    """The outbox gateway satisfies Gateway, SentItemsLookup and Checkable."""
    assert isinstance(gateway, Gateway)
    assert isinstance(gateway, SentItemsLookup)
    assert isinstance(gateway, Checkable)
    assert gateway.name == "outbox"


# -- settings -----------------------------------------------------------------------------


def table(data: dict[str, Any], tmp_path: Path) -> Table:
    return Table(data, where="config t.toml: [gateway.outbox]", base_dir=tmp_path)


def test_from_table_requires_folder(tmp_path: Path) -> None:
    """A [gateway.outbox] table without folder is a ConfigError naming the key."""
    with pytest.raises(ConfigError, match=r"\[gateway.outbox\] folder: is required"):
        Settings.from_table(table({}, tmp_path))


def test_from_table_resolves_folder_against_the_config_folder(tmp_path: Path) -> None:
    """A relative folder is relative to the config file's folder; the mailbox names it."""
    settings = Settings.from_table(table({"folder": "sent-mail"}, tmp_path))
    assert settings.folder == tmp_path / "sent-mail"
    assert settings.kind == "outbox" and settings.mailbox == f"outbox:{tmp_path / 'sent-mail'}"


def test_from_table_refuses_unknown_keys(tmp_path: Path) -> None:
    """A misspelt key is a ConfigError, not silently ignored."""
    with pytest.raises(ConfigError, match="foldr: unknown key"):
        Settings.from_table(table({"folder": "x", "foldr": "y"}, tmp_path))


def test_config_type_outbox_gives_these_settings(tmp_path: Path) -> None:
    """[gateway] type = 'outbox' is parsed by this module's Settings."""
    settings = parse_gateway_settings("outbox", table({"folder": "out"}, tmp_path))
    assert isinstance(settings, Settings) and isinstance(settings.open(), OutboxGateway)
