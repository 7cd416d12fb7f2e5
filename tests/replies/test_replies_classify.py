"""What a message is: reply, automatic reply, bounce or read receipt (real-world shapes)."""

from __future__ import annotations

import hashlib
from email.message import EmailMessage

import pytest
from replies_helpers import example_reply

from mash_requests.replies.classify import MessageKind, message_id_of, parse_message


def _message(subject: str = "RE: request", **headers: str) -> bytes:
    message = EmailMessage()
    message["From"] = "officer@testshire.police.uk"
    message["To"] = "mash@testbury.gov.uk"
    message["Subject"] = subject
    message["Message-ID"] = "<m1@testshire.police.uk>"
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content("body")
    return message.as_bytes()


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("01-police-reply-outlook.eml", MessageKind.REPLY),
        ("02-police-read-receipt.eml", MessageKind.READ_RECEIPT),
        ("03-health-reply-secure-gateway.eml", MessageKind.REPLY),
        ("04-education-out-of-office.eml", MessageKind.AUTO_REPLY),
        ("05-education-reply-with-attachments.eml", MessageKind.REPLY),
        ("06-probation-exchange-ndr.eml", MessageKind.BOUNCE),
        ("07-housing-delivery-delayed.eml", MessageKind.AUTO_REPLY),
        ("08-housing-reply-outside-domain.eml", MessageKind.REPLY),
    ],
)
def test_each_shipped_example_is_classified_as_what_it_is(name: str, kind: MessageKind) -> None:
    """Every shipped real-world shape gets the kind a person would give it."""
    assert parse_message(example_reply(name)).kind is kind


def test_an_outlook_reply_with_x_auto_response_suppress_is_a_reply() -> None:
    """X-Auto-Response-Suppress alone (Exchange sets it on people's mail) is not automatic."""
    data = example_reply("01-police-reply-outlook.eml")
    assert b"X-Auto-Response-Suppress: All" in data
    assert parse_message(data).kind is MessageKind.REPLY


@pytest.mark.parametrize("value", ["auto-replied", "auto-generated", "auto-notified"])
def test_auto_submitted_other_than_no_is_an_automatic_reply(value: str) -> None:
    """RFC 3834: any Auto-Submitted value but "no" marks a message sent by a machine."""
    message = parse_message(_message(Auto_Submitted=value))
    assert message.kind is MessageKind.AUTO_REPLY
    assert message.auto_type == "auto_submitted"


def test_auto_submitted_no_is_a_reply() -> None:
    """RFC 3834: Auto-Submitted: no means a person sent it."""
    assert parse_message(_message(Auto_Submitted="no")).kind is MessageKind.REPLY


@pytest.mark.parametrize(
    "subject",
    [
        "Automatic reply: RE: OFFICIAL-SENSITIVE: request",
        "[EXTERNAL] Out of Office: request",
        "Automatische Antwort: AW: request",
        "Autosvar: SV: request",
    ],
)
def test_an_out_of_office_subject_is_an_automatic_reply(subject: str) -> None:
    """Exchange and other clients' out-of-office subjects mark automatic replies."""
    message = parse_message(_message(subject))
    assert message.kind is MessageKind.AUTO_REPLY
    assert message.auto_type == "out_of_office"


def test_the_exchange_ndr_is_a_bounce_with_its_status_and_original() -> None:
    """An Exchange NDR is a bounce carrying 5.1.1 and the returned Message-ID and reference."""
    message = parse_message(example_reply("06-probation-exchange-ndr.eml"))
    assert message.kind is MessageKind.BOUNCE
    assert message.bounce_status == "5.1.1"
    assert message.reported_request_refs == ("MASH-2026-0412-PROBATION-65139",)
    assert message.reported_message_ids == (
        "<MASH-2026-0412-PROBATION-65139.0f7a6b5c4d3e2f18@eastbury.gov.uk>",
    )


def test_a_delayed_delivery_report_is_not_a_bounce() -> None:
    """RFC 3464 Action: delayed is a warning: the message has not failed."""
    message = parse_message(example_reply("07-housing-delivery-delayed.eml"))
    assert message.kind is MessageKind.AUTO_REPLY
    assert message.auto_type == "delivery_delayed"
    assert message.bounce_status is None


def _dsn(action: str, status: str) -> bytes:
    return (
        "From: MAILER-DAEMON@mx.testbury.gov.uk (Mail Delivery System)\r\n"
        "To: mash@testbury.gov.uk\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <dsn.1@mx.testbury.gov.uk>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you...\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.testbury.gov.uk\r\n\r\n"
        f"Final-Recipient: rfc822; mash@testshire.police.uk\r\nAction: {action}\r\n"
        f"Status: {status}\r\n\r\n"
        "--B\r\nContent-Type: message/rfc822\r\n\r\n"
        "From: mash@testbury.gov.uk\r\nSubject: OFFICIAL-SENSITIVE: request\r\n"
        "Message-ID: <orig.1@testbury.gov.uk>\r\n\r\nbody\r\n--B--\r\n"
    ).encode()


def test_a_postfix_failure_report_is_a_bounce_naming_the_returned_message() -> None:
    """RFC 3464 Action: failed from Postfix is a bounce; the returned message names ours."""
    message = parse_message(_dsn("failed", "5.7.1"))
    assert message.kind is MessageKind.BOUNCE
    assert message.bounce_status == "5.7.1"
    assert message.reported_message_ids == ("<orig.1@testbury.gov.uk>",)
    assert message.attachments == ()  # the report and the returned message are not attachments


def test_an_undeliverable_subject_typed_by_a_person_is_not_a_bounce() -> None:
    """A subject saying "Undeliverable:" from an ordinary sender is not a delivery report."""
    assert parse_message(_message("Undeliverable: your request")).kind is MessageKind.REPLY


def test_a_read_receipt_names_the_request_it_was_about() -> None:
    """An RFC 8098 receipt is recorded as such, with its Original-Message-ID."""
    message = parse_message(example_reply("02-police-read-receipt.eml"))
    assert message.reported_message_ids == (
        "<MASH-2026-0412-POLICE-1BAC7.3c9f0e1d2b4a5968@eastbury.gov.uk>",
    )


def test_attachments_are_counted_and_hashed_but_not_inline_images() -> None:
    """Attachments get the SHA-256 of their decoded bytes; an inline signature image does not."""
    data = example_reply("05-education-reply-with-attachments.eml")
    message = parse_message(data)
    import email
    from email.policy import default

    parsed = email.message_from_bytes(data, policy=default)
    attached = [
        hashlib.sha256(part.get_content()).hexdigest()
        for part in parsed.walk()
        if part.get_content_disposition() == "attachment"
    ]
    assert len(attached) == 2
    assert message.attachments == tuple(attached)


def test_a_message_without_message_id_gets_one_from_its_bytes() -> None:
    """No Message-ID: a stable one from the SHA-256 of the bytes, so it is counted once."""
    data = _message().replace(b"Message-ID: <m1@testshire.police.uk>\n", b"")
    message = parse_message(data)
    assert message.message_id_synthesised
    assert (
        message.message_id == f"<sha256-{hashlib.sha256(data).hexdigest()}@mash-requests.invalid>"
    )
    assert message_id_of(data) == message.message_id


def test_a_dmarc_failure_recorded_by_the_receiving_system_is_noticed() -> None:
    """Authentication-Results with dmarc=fail marks the message as not authenticated."""
    message = parse_message(
        _message(Authentication_Results="mx.testbury.gov.uk; spf=fail; dmarc=fail action=none")
    )
    assert message.authentication_failed


def test_garbage_bytes_never_raise() -> None:
    """Malformed mail is still parsed into something (a reply without a sender)."""
    message = parse_message(b"\x00\xff not mail at all\r\n\r\n")
    assert message.kind is MessageKind.REPLY
    assert message.from_address is None
