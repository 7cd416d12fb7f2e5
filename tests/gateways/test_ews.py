"""The EWS gateway (exchangelib) against recorded Exchange answers, served by ``responses``."""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from defusedxml.ElementTree import fromstring
from ews_fake import (
    CREATED,
    ENDPOINT,
    MAILBOX,
    NS,
    PASSWORD,
    TENANT,
    FakeExchange,
    basic_settings,
    envelope,
    find_item,
    recorded,
)
from gateway_helpers import MASH_NAME, REPLY_TO, SENDER, build_message, reference_file
from urllib3.exceptions import NewConnectionError

from mash_requests._tables import Table
from mash_requests.errors import (
    AmbiguousGatewayError,
    ConfigError,
    PermanentGatewayError,
    TransientGatewayError,
)
from mash_requests.gateways.base import OutgoingMessage
from mash_requests.gateways.ews import EwsGateway, Settings
from mash_requests.retry import AttemptFailure, RetryPolicy, SendStatus, send_with_retry

POLICY = RetryPolicy(max_attempts=5, max_seconds=600, initial_wait=1, max_wait=60, jitter=0)


@pytest.fixture(autouse=True)
def _fresh_protocols() -> Iterator[None]:
    """exchangelib caches protocols per endpoint and credentials; start each test clean."""
    from exchangelib.protocol import close_connections

    close_connections()
    yield
    close_connections()


@pytest.fixture
def exchange() -> Iterator[FakeExchange]:
    fake = FakeExchange()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_callback(responses.POST, ENDPOINT, callback=fake)
        fake.rsps = rsps  # type: ignore[attr-defined]
        yield fake


@pytest.fixture
def gateway() -> Iterator[EwsGateway]:
    gw = basic_settings().open()
    yield gw
    gw.close()


def sent_form(create_item_body: str) -> bytes:
    content = fromstring(create_item_body).find(".//t:FileAttachment/t:Content", NS)
    assert content is not None and content.text
    return base64.b64decode(content.text)


def run(
    gateway: EwsGateway, message: OutgoingMessage
) -> tuple[Any, list[AttemptFailure], list[float]]:
    failures: list[AttemptFailure] = []
    sleeps: list[float] = []
    result = send_with_retry(
        gateway, message, POLICY, on_failure=failures.append, sleep=sleeps.append
    )
    return result, failures, sleeps


# -- sending ------------------------------------------------------------------------------


def test_send_is_one_send_and_save_with_the_exact_form_bytes(
    exchange: FakeExchange, gateway: EwsGateway, message: OutgoingMessage
) -> None:
    """A send is one CreateItem SendAndSaveCopy whose FileAttachment Content is the form."""
    receipt = gateway.send(message)
    assert receipt.gateway == "ews" and receipt.message_id == message.message_id
    [create] = exchange.ops("CreateItem")
    root = fromstring(create)
    item = root.find(".//m:CreateItem", NS)
    assert item is not None and item.get("MessageDisposition") == "SendAndSaveCopy"
    assert sent_form(create) == message.attachment.data
    assert root.findtext(".//t:Message/t:InternetMessageId", namespaces=NS) == message.message_id
    header = root.find(".//t:ExtendedProperty", NS)
    assert header is not None
    uri = header.find("t:ExtendedFieldURI", NS)
    assert uri is not None and uri.get("PropertyName") == "X-MASH-Request-Ref"
    assert header.findtext("t:Value", namespaces=NS) == "RFI-2026-0001"
    body = root.find(".//t:Message/t:Body", NS)
    assert body is not None and body.get("BodyType") == "HTML" and body.text == message.html_body


def test_create_item_carries_reply_to(exchange: FakeExchange, gateway: EwsGateway) -> None:
    """A message with a Reply-To address is created with that address as its ReplyTo."""
    gateway.send(build_message(reply_to=REPLY_TO))
    [create] = exchange.ops("CreateItem")
    addresses = [
        element.text
        for element in fromstring(create).findall(
            ".//t:Message/t:ReplyTo/t:Mailbox/t:EmailAddress", NS
        )
    ]
    assert addresses == [REPLY_TO]


def test_create_item_without_reply_to_has_no_reply_to(
    exchange: FakeExchange, gateway: EwsGateway, message: OutgoingMessage
) -> None:
    """A message without a Reply-To address is created with no ReplyTo element."""
    gateway.send(message)
    [create] = exchange.ops("CreateItem")
    assert fromstring(create).find(".//t:Message/t:ReplyTo", NS) is None


def test_red_request_is_created_high_importance_from_the_mash_by_name(
    exchange: FakeExchange, gateway: EwsGateway
) -> None:
    """A RED request's CreateItem has Importance High and From "<MASH name>" <mailbox>."""
    gateway.send(build_message(importance="high", sender_name=MASH_NAME))
    [create] = exchange.ops("CreateItem")
    message = fromstring(create).find(".//t:Message", NS)
    assert message is not None
    assert message.findtext("t:Importance", namespaces=NS) == "High"
    assert message.findtext("t:From/t:Mailbox/t:Name", namespaces=NS) == MASH_NAME
    assert message.findtext("t:From/t:Mailbox/t:EmailAddress", namespaces=NS) == SENDER


def test_other_requests_are_created_normal_importance(
    exchange: FakeExchange, gateway: EwsGateway
) -> None:
    """An AMBER or GREEN request's CreateItem has Importance Normal."""
    gateway.send(build_message(sender_name=MASH_NAME))
    [create] = exchange.ops("CreateItem")
    assert fromstring(create).findtext(".//t:Message/t:Importance", namespaces=NS) == "Normal"


def test_requests_follow_the_recorded_exchangelib_sequence(
    exchange: FakeExchange, gateway: EwsGateway, message: OutgoingMessage
) -> None:
    """The requests are GetFolder root, GetFolder sentitems, CreateItem, as recorded for 5.6."""
    gateway.send(message)
    recorded_ops = []
    for name in (
        "03_GetFolder_root.xml",
        "04_GetFolder_sentitems.xml",
        "05_CreateItem_SendAndSaveCopy_with_FileAttachment.xml",
    ):
        text = reference_file(f"ews/exchangelib_5.6_requests/{name}")
        recorded_ops.append(re.search(r"<m:(\w+)[ >]", text).group(1))  # type: ignore[union-attr]
    assert [op for op, _, _ in exchange.requests] == recorded_ops
    reference = fromstring(
        reference_file(
            "ews/exchangelib_5.6_requests/05_CreateItem_SendAndSaveCopy_with_FileAttachment.xml"
        )
    )
    ours = fromstring(exchange.ops("CreateItem")[0])

    def paths(root: ET.Element) -> set[str]:
        found: set[str] = set()

        def walk(element: ET.Element, prefix: str) -> None:
            here = f"{prefix}/{element.tag}"
            found.add(here)
            for child in element:
                walk(child, here)

        walk(root, "")
        return found

    assert paths(reference) <= paths(ours)


def test_basic_auth_header_is_sent_and_the_password_never_logged_in_errors(
    exchange: FakeExchange, gateway: EwsGateway, message: OutgoingMessage
) -> None:
    """Basic auth sends the configured user; a 401 is permanent and hides the password."""
    exchange.on("GetFolder", (401, ""))
    with pytest.raises(PermanentGatewayError, match="refused the credentials") as caught:
        gateway.send(message)
    assert PASSWORD not in str(caught.value)
    assert not exchange.ops("CreateItem")
    _, _, headers = exchange.requests[0]
    assert headers["Authorization"].startswith("Basic ")


# -- faults -------------------------------------------------------------------------------


def test_server_busy_backoff_is_honoured_then_sent(
    exchange: FakeExchange, gateway: EwsGateway, message: OutgoingMessage
) -> None:
    """ErrorServerBusy with BackOffMilliseconds 297749 waits 297.749 s, then sends once."""
    busy = recorded(
        "ews/exchangelib_tests/test_services__ServicesTest__test_error_server_busy__1.xml"
    )
    exchange.on("CreateItem", (500, busy), (200, CREATED))
    result, failures, sleeps = run(gateway, message)
    assert result.status is SendStatus.SENT
    assert sleeps == [297.749]
    assert failures[0].error_class == "transient"
    assert failures[0].server_message.startswith("ErrorServerBusy: The server cannot service")
    assert len(exchange.ops("CreateItem")) == 2


def test_server_busy_is_transient_with_retry_after(
    exchange: FakeExchange, gateway: EwsGateway, message: OutgoingMessage
) -> None:
    """send() itself raises TransientGatewayError carrying the back-off in seconds."""
    busy = recorded(
        "ews/exchangelib_tests/test_services__ServicesTest__test_error_server_busy__1.xml"
    )
    exchange.on("CreateItem", (500, busy))
    with pytest.raises(TransientGatewayError) as caught:
        gateway.send(message)
    assert caught.value.retry_after == pytest.approx(297.749)
    assert len(exchange.ops("CreateItem")) == 1  # FailFast: exchangelib did not re-POST


def test_http_503_on_create_item_is_ambiguous(
    exchange: FakeExchange, gateway: EwsGateway, message: OutgoingMessage
) -> None:
    """An HTTP 503 on CreateItem may come from a front end after the send: ambiguous."""
    exchange.on("CreateItem", (503, "Service Unavailable"))
    with pytest.raises(AmbiguousGatewayError):
        gateway.send(message)
    assert len(exchange.ops("CreateItem")) == 1


def test_http_503_before_sending_is_transient(
    exchange: FakeExchange, gateway: EwsGateway, message: OutgoingMessage
) -> None:
    """An HTTP 503 while finding Sent Items, before anything is sent, is transient."""
    exchange.on("GetFolder", (503, "Service Unavailable"))
    with pytest.raises(TransientGatewayError):
        gateway.send(message)
    assert exchange.ops("CreateItem") == []


@pytest.mark.parametrize("status", [502, 504])
def test_gateway_error_after_create_item_is_ambiguous(
    exchange: FakeExchange, gateway: EwsGateway, message: OutgoingMessage, status: int
) -> None:
    """A 502/504 from a proxy after the CreateItem was posted is ambiguous."""
    page = f"<html><head><title>{status} Proxy Error</title></head><body>Upstream</body></html>"
    exchange.on("CreateItem", (status, page))
    with pytest.raises(AmbiguousGatewayError) as caught:
        gateway.send(message)
    reason = {502: "Bad Gateway", 504: "Gateway Timeout"}[status]
    assert caught.value.server_message == f"HTTP {status} {reason}: {status} Proxy Error"
    assert len(exchange.ops("CreateItem")) == 1


def test_send_as_denied_is_permanent_with_the_servers_words(
    exchange: FakeExchange, gateway: EwsGateway, message: OutgoingMessage
) -> None:
    """ErrorSendAsDenied (recorded) is permanent and carries Exchange's MessageText."""
    exchange.on(
        "CreateItem", (200, recorded("ews/ms_docs/createitem-operation-email-message__3.xml"))
    )
    result, _, sleeps = run(gateway, message)
    assert result.status is SendStatus.FAILED and result.attempts == 1
    assert result.server_message.startswith("ErrorSendAsDenied: The user account which was used")
    assert sleeps == []


def test_schema_validation_fault_is_permanent(
    exchange: FakeExchange, gateway: EwsGateway, message: OutgoingMessage
) -> None:
    """A SOAP schema-validation fault on CreateItem is permanent (Exchange could not parse it)."""
    fault = recorded(
        "ews/exchangelib_tests/test_services__ServicesTest__test_error_schema_validation__1.xml"
    )
    exchange.on("CreateItem", (500, fault))
    with pytest.raises(PermanentGatewayError, match="ErrorSchemaValidation"):
        gateway.send(message)


def test_connection_refused_is_transient(
    exchange: FakeExchange, gateway: EwsGateway, message: OutgoingMessage
) -> None:
    """A refused connection before anything was sent is transient."""
    refused = requests.ConnectionError(NewConnectionError(None, "Connection refused"))  # type: ignore[arg-type]
    exchange.on("GetFolder", refused)
    with pytest.raises(TransientGatewayError, match="could not connect to Exchange at https://"):
        gateway.send(message)


def test_subject_too_long_for_exchange_is_permanent_before_sending(
    exchange: FakeExchange, gateway: EwsGateway, message: OutgoingMessage
) -> None:
    """A subject over 255 characters is refused before any CreateItem, naming only the field."""
    subject = "Request about Jamie Doe " + "x" * 300
    with pytest.raises(PermanentGatewayError, match="field 'subject'") as caught:
        gateway.send(replace(message, subject=subject))
    assert not exchange.ops("CreateItem")
    assert "Jamie" not in str(caught.value) and "Jamie" not in caught.value.server_message


def test_unexpected_error_while_sending_is_ambiguous_naming_only_its_type(
    exchange: FakeExchange, gateway: EwsGateway, message: OutgoingMessage
) -> None:
    """An error exchangelib does not class, raised during CreateItem, is ambiguous by type only."""
    exchange.on("CreateItem", RuntimeError("quoting Jamie Doe"))
    with pytest.raises(AmbiguousGatewayError) as caught:
        gateway.send(message)
    assert caught.value.server_message == "RuntimeError"
    assert "Jamie" not in str(caught.value)


def test_unexpected_error_before_sending_is_permanent(
    exchange: FakeExchange, gateway: EwsGateway, message: OutgoingMessage
) -> None:
    """An error exchangelib does not class, raised before CreateItem, is permanent."""
    exchange.on("GetFolder", RuntimeError("odd"))
    with pytest.raises(PermanentGatewayError) as caught:
        gateway.send(message)
    assert caught.value.server_message == "RuntimeError"
    assert not exchange.ops("CreateItem")


def test_lost_answer_to_create_item_then_found_in_sent_items_is_sent_once(
    exchange: FakeExchange, gateway: EwsGateway, message: OutgoingMessage
) -> None:
    """A reset after CreateItem was posted, then the Message-ID in Sent Items: sent, one copy."""
    exchange.on("CreateItem", requests.ConnectionError(ConnectionResetError(104, "reset")))
    exchange.on("FindItem", (200, find_item("SENT-ITEM-1")))
    result, failures, _ = run(gateway, message)
    assert result.status is SendStatus.SENT
    assert result.receipt is not None and result.receipt.gateway_id == "SENT-ITEM-1"
    assert len(exchange.ops("CreateItem")) == 1
    assert [f.error_class for f in failures] == ["ambiguous"]
    [search] = exchange.ops("FindItem")
    constant = fromstring(search).find(".//t:Constant", NS)
    assert constant is not None and constant.get("Value") == message.message_id
    assert 'FieldURI="message:InternetMessageId"' in search


def test_lost_answer_not_in_sent_items_is_resent_once(
    exchange: FakeExchange, gateway: EwsGateway, message: OutgoingMessage
) -> None:
    """A read timeout on CreateItem with nothing in Sent Items is sent exactly once more."""
    exchange.on("CreateItem", requests.ReadTimeout("read timed out"), (200, CREATED))
    exchange.on("FindItem", (200, find_item()))
    result, _, _ = run(gateway, message)
    assert result.status is SendStatus.SENT and result.attempts == 2
    creates = exchange.ops("CreateItem")
    assert len(creates) == 2
    assert all(sent_form(body) == message.attachment.data for body in creates)


def test_find_sent_returns_none_when_absent(exchange: FakeExchange, gateway: EwsGateway) -> None:
    """find_sent answers None when no message in Sent Items has that Message-ID."""
    assert gateway.find_sent("<nothing@council.example>") is None


def test_check_opens_sent_items_and_sends_nothing(
    exchange: FakeExchange, gateway: EwsGateway
) -> None:
    """check() authenticates and opens Sent Items, without any CreateItem."""
    line = gateway.check()
    assert line.startswith(f"ews: {ENDPOINT} accepted user COUNCIL\\svc-mash for {MAILBOX}")
    assert not exchange.ops("CreateItem")


# -- OAuth ----------------------------------------------------------------------------------


def oauth_settings() -> Settings:
    return Settings(
        mailbox=MAILBOX,
        endpoint=ENDPOINT,
        auth="oauth",
        tenant_id=TENANT,
        client_id="client-id-1",
        client_secret="oauth-secret-never-logged",
    )


def test_oauth_sends_a_bearer_token_and_impersonates_the_mailbox(
    exchange: FakeExchange, message: OutgoingMessage
) -> None:
    """With auth = 'oauth' requests carry the app token and impersonate the mailbox."""
    exchange.rsps.add(  # type: ignore[attr-defined]
        responses.POST,
        f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token",
        json={"token_type": "Bearer", "expires_in": 3599, "access_token": "ews-token"},
    )
    gw = oauth_settings().open()
    try:
        gw.send(message)
    finally:
        gw.close()
    _, body, headers = exchange.requests[-1]
    assert headers["Authorization"] == "Bearer ews-token"
    assert "<t:ExchangeImpersonation>" in body and MAILBOX in body


def test_oauth_token_refused_is_permanent_with_the_error_code(
    exchange: FakeExchange, message: OutgoingMessage
) -> None:
    """A refused client secret is permanent, names invalid_client, never the secret."""
    exchange.rsps.add(  # type: ignore[attr-defined]
        responses.POST,
        f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token",
        status=401,
        json={
            "error": "invalid_client",
            "error_description": "AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 1",
        },
    )
    gw = oauth_settings().open()
    with pytest.raises(PermanentGatewayError) as caught:
        gw.send(message)
    assert (
        caught.value.server_message
        == "invalid_client: AADSTS7000215: Invalid client secret provided."
    )
    assert "oauth-secret-never-logged" not in str(caught.value)
    assert not exchange.requests


# -- settings -------------------------------------------------------------------------------


def table(data: dict[str, Any], tmp_path: Path) -> Table:
    return Table(data, where="config t.toml: [gateway.ews]", base_dir=tmp_path)


def test_settings_from_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A complete table gives settings: build 15.1 for Exchange2016, password from the env."""
    monkeypatch.setenv("EWS_PASSWORD", PASSWORD)
    settings = Settings.from_table(
        table(
            {
                "mailbox": MAILBOX,
                "endpoint": ENDPOINT,
                "username": "COUNCIL\\svc",
                "password_env": "EWS_PASSWORD",
            },
            tmp_path,
        )
    )
    assert settings.kind == "ews" and settings.version == (15, 1) and settings.auth == "ntlm"
    assert settings.password == PASSWORD and PASSWORD not in repr(settings)
    assert settings.autodiscover is False


def test_version_may_be_a_build_number(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """version = '15.2.1118.7' is read as that build."""
    monkeypatch.setenv("EWS_PASSWORD", PASSWORD)
    data = {
        "mailbox": MAILBOX,
        "endpoint": ENDPOINT,
        "username": "u",
        "password_env": "EWS_PASSWORD",
        "version": "15.2.1118.7",
    }
    assert Settings.from_table(table(data, tmp_path)).version == (15, 2, 1118, 7)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (
            {"mailbox": MAILBOX, "username": "u", "password_env": "EWS_PASSWORD"},
            "endpoint: is required",
        ),
        (
            {
                "mailbox": MAILBOX,
                "endpoint": "http://mail.x.example/EWS/Exchange.asmx",
                "username": "u",
                "password_env": "EWS_PASSWORD",
            },
            "endpoint: must be an https",
        ),
        (
            {
                "mailbox": MAILBOX,
                "endpoint": ENDPOINT,
                "username": "u",
                "password_env": "EWS_PASSWORD",
                "version": "Exchange2010",
            },
            "version: expected one of",
        ),
        (
            {
                "mailbox": MAILBOX,
                "endpoint": ENDPOINT,
                "username": "u",
                "password_env": "EWS_PASSWORD",
                "version": "14.3",
            },
            "version: Exchange 2010 and older",
        ),
        (
            {"mailbox": MAILBOX, "endpoint": ENDPOINT, "password_env": "EWS_PASSWORD"},
            "username: is required",
        ),
        (
            {
                "mailbox": MAILBOX,
                "endpoint": ENDPOINT,
                "auth": "oauth",
                "client_id": "c",
                "client_secret_env": "EWS_PASSWORD",
            },
            "tenant_id: is required",
        ),
        (
            {
                "mailbox": MAILBOX,
                "endpoint": ENDPOINT,
                "username": "u",
                "password_env": "EWS_PASSWORD",
                "retry": 3,
            },
            "retry: unknown key",
        ),
    ],
)
def test_bad_settings_are_config_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: dict[str, Any], problem: str
) -> None:
    """Each configuration mistake is a ConfigError naming the key."""
    monkeypatch.setenv("EWS_PASSWORD", PASSWORD)
    with pytest.raises(ConfigError, match=re.escape(problem)):
        Settings.from_table(table(data, tmp_path))


def _fault(code: str, text: str) -> str:
    """A SOAP fault as Exchange sends one (the recorded schema-validation fault's shape)."""
    return envelope(
        '<s:Fault><faultcode xmlns:a="http://schemas.microsoft.com/exchange/services/2006/'
        f'types">a:{code}</faultcode><faultstring>{text}</faultstring><detail>'
        '<e:ResponseCode xmlns:e="http://schemas.microsoft.com/exchange/services/2006/errors">'
        f'{code}</e:ResponseCode><e:Message xmlns:e="http://schemas.microsoft.com/exchange/'
        f'services/2006/errors">{text}</e:Message></detail></s:Fault>'
    )


@pytest.mark.parametrize(
    "code", ["ErrorInvalidRequest", "ErrorInvalidServerVersion", "ErrorIncorrectSchemaVersion"]
)
def test_version_like_refusal_of_create_item_is_one_post_with_the_servers_words(
    exchange: FakeExchange, gateway: EwsGateway, message: OutgoingMessage, code: str
) -> None:
    """exchangelib posts a refused request again with every other API version it knows:
    for a send that is up to ten copies. The message is posted once, and the server's own
    refusal is what the person reads."""
    exchange.on("CreateItem", (500, _fault(code, "The request is invalid.")))
    with pytest.raises(PermanentGatewayError) as caught:
        gateway.send(message)
    assert len(exchange.ops("CreateItem")) == 1
    assert caught.value.server_message == f"{code}: The request is invalid."


@pytest.mark.parametrize("code", ["ErrorInternalServerError", "ErrorInternalServerTransientError"])
def test_internal_server_error_answering_create_item_is_ambiguous(
    exchange: FakeExchange, gateway: EwsGateway, message: OutgoingMessage, code: str
) -> None:
    """Exchange failing part-way through the sending CreateItem may have sent the message:
    ambiguous (looked up before any resend), as an HTTP 500 is; before it, transient."""
    exchange.on("CreateItem", (500, _fault(code, "An internal server error occurred.")))
    with pytest.raises(AmbiguousGatewayError) as caught:
        gateway.send(message)
    assert caught.value.server_message == f"{code}: An internal server error occurred."
    assert len(exchange.ops("CreateItem")) == 1


def test_internal_server_error_answering_create_item_is_looked_up_not_resent(
    exchange: FakeExchange, gateway: EwsGateway, message: OutgoingMessage
) -> None:
    """Through the retry policy: found in Sent Items, so recorded sent, with one CreateItem."""
    exchange.on("CreateItem", (500, _fault("ErrorInternalServerError", "Internal error.")))
    exchange.on("FindItem", (200, find_item("AAMkAGI2")))
    result, _, _ = run(gateway, message)
    assert result.status is SendStatus.SENT
    assert len(exchange.ops("CreateItem")) == 1


def test_internal_server_error_before_sending_is_transient(
    exchange: FakeExchange, gateway: EwsGateway, message: OutgoingMessage
) -> None:
    """The same error while opening Sent Items: nothing was sent, so try again."""
    exchange.on("GetFolder", (500, _fault("ErrorInternalServerError", "Internal error.")))
    with pytest.raises(TransientGatewayError):
        gateway.send(message)
    assert exchange.ops("CreateItem") == []
