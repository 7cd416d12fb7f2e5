"""Requests carry a Reply-To that reaches the replies mailbox as well as the worker."""

from __future__ import annotations

import email
from email import policy
from pathlib import Path

import pytest
from replies_helpers import send_example

from mash_requests.config import load_settings
from mash_requests.errors import ConfigError
from mash_requests.gateways.base import Attachment, OutgoingMessage
from mash_requests.message import reply_to_header
from workspace import Workspace

REPLIES = '\n[replies]\nsource = "folder"\nfolder = "replies"\n'


def _config(workspace: Workspace, extra: str) -> Path:
    workspace.config.write_text(workspace.config.read_text() + REPLIES + extra, encoding="utf-8")
    return workspace.config


def _reply_to_of_sent(workspace: Workspace) -> list[str]:
    values = []
    for file in workspace.outbox_files():
        parsed = email.message_from_bytes(file.read_bytes(), policy=policy.default)
        values.append(str(parsed["Reply-To"]))
    return values


def test_requests_reply_to_the_worker_and_the_replies_mailbox(workspace: Workspace) -> None:
    """With [replies] address, every request's Reply-To is the worker, then that mailbox."""
    _config(workspace, 'address = "mash-replies@testbury.gov.uk"\n')
    send_example(workspace)
    values = _reply_to_of_sent(workspace)
    assert len(values) == 2
    assert set(values) == {"sam.okafor@eastbury.gov.uk, mash-replies@testbury.gov.uk"}


def test_without_an_address_requests_reply_to_the_worker_only(workspace: Workspace) -> None:
    """Without [replies] address, Reply-To is the worker's address, as before."""
    _config(workspace, "")
    send_example(workspace)
    assert set(_reply_to_of_sent(workspace)) == {"sam.okafor@eastbury.gov.uk"}


def test_the_same_address_twice_is_given_once() -> None:
    """A worker whose address is the replies mailbox's gets one Reply-To address."""
    assert reply_to_header("mash@x.gov.uk", "mash@x.gov.uk") == "mash@x.gov.uk"
    assert reply_to_header("a@x.gov.uk", None) == "a@x.gov.uk"


def test_an_address_outside_secure_domains_is_refused(workspace: Workspace) -> None:
    """A replies address neither at the MASH's domain nor allow-listed stops the config."""
    with pytest.raises(ConfigError) as caught:
        load_settings(_config(workspace, 'address = "replies@gmail.com"\n'))
    message = str(caught.value)
    assert "[replies] address" in message
    assert "'replies@gmail.com' is neither at the MASH's domain (testbury.gov.uk)" in message


def test_an_allow_listed_partner_domain_is_accepted(workspace: Workspace) -> None:
    """An address on the allow-list (e.g. a shared secure mailbox) is accepted."""
    settings = load_settings(_config(workspace, 'address = "mash.replies@nhs.net"\n'))
    assert settings.replies is not None and settings.replies.address == "mash.replies@nhs.net"


def test_a_malformed_address_is_refused(workspace: Workspace) -> None:
    """An address with a display name is refused with what to write instead."""
    with pytest.raises(ConfigError, match="expected one plain address"):
        load_settings(_config(workspace, 'address = "MASH <m@testbury.gov.uk>"\n'))


def test_graph_and_ews_get_each_reply_to_address() -> None:
    """Gateways that build their own message see the Reply-To addresses one by one."""
    message = OutgoingMessage(
        mime=email.message.Message(),
        message_id="<a@b>",
        request_ref="R",
        sender="mash@testbury.gov.uk",
        recipients=("x@nhs.net",),
        subject="s",
        text_body="t",
        html_body="h",
        attachment=Attachment("f.pdf", "application/pdf", b""),
        reply_to="sam.okafor@eastbury.gov.uk, mash-replies@testbury.gov.uk",
    )
    assert message.reply_to_addresses == [
        "sam.okafor@eastbury.gov.uk",
        "mash-replies@testbury.gov.uk",
    ]


def test_a_graph_draft_lists_both_reply_to_addresses() -> None:
    """Graph's long way (a draft) sets replyTo to each address of the Reply-To header."""
    from mash_requests.gateways.graph import _draft
    from mash_requests.message import build_message
    from mash_requests.rendering import RenderedRequest

    message = build_message(
        rendered=RenderedRequest("OFFICIAL: s MASH-1", "t", "<p>h</p>", "police", "v"),
        sender="mash@testbury.gov.uk",
        recipients=("x@nhs.net",),
        reply_to=reply_to_header("sam@testbury.gov.uk", "replies@testbury.gov.uk"),
        case_ref="MASH-1",
        request_ref="MASH-1-POLICE-ABCDE",
        marking="OFFICIAL",
        form_bytes=b"%PDF-1.7",
    )
    assert _draft(message)["replyTo"] == [
        {"emailAddress": {"address": "sam@testbury.gov.uk"}},
        {"emailAddress": {"address": "replies@testbury.gov.uk"}},
    ]
