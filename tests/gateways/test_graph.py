"""The Graph gateway against recorded Microsoft Graph responses (``responses``)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from gateway_helpers import (
    REPLY_TO,
    RecordedResponse,
    big_form,
    build_message,
    recorded_response,
    reference_file,
)

from mash_requests._tables import Table
from mash_requests.errors import (
    AmbiguousGatewayError,
    ConfigError,
    PermanentGatewayError,
    TransientGatewayError,
)
from mash_requests.gateways.base import OutgoingMessage
from mash_requests.gateways.graph import CHUNK_SIZE, ClientCredentials, GraphGateway, Settings
from mash_requests.retry import AttemptFailure, RetryPolicy, SendStatus, WaitSource, send_with_retry

TENANT = "72aa88bf-76f0-494f-91ab-2d7cd730db47"
SECRET = "client-secret-value-never-logged"
LOGIN = "https://login.microsoftonline.com"
GRAPH = "https://graph.microsoft.com/v1.0"
MAILBOX = "mash@council.example"
USER = f"{GRAPH}/users/{MAILBOX}"
DRAFT_ID = "AAMkADNlNYjSAAA="
DRAFT = f"{USER}/messages/AAMkADNlNYjSAAA%3D"
SENT_ITEMS = f"{USER}/mailFolders('SentItems')/messages"
POLICY = RetryPolicy(max_attempts=5, max_seconds=300, initial_wait=1, max_wait=60, jitter=0)

# Minimal inline answers, so the happy path still means something without ../shared.
DRAFT_201 = RecordedResponse(
    201, {"Content-Type": "application/json"}, json.dumps({"id": DRAFT_ID})
)
ATTACHMENT_201 = RecordedResponse(
    201, {"Content-Type": "application/json"}, json.dumps({"id": "AAMkADNkN2R"})
)
ACCEPTED_202 = RecordedResponse(202, {}, "")


def add(rsps: responses.RequestsMock, method: str, url: str, recorded: RecordedResponse) -> None:
    rsps.add(method, url, status=recorded.status, headers=recorded.headers, body=recorded.body)


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    """Graph and the Entra ID token endpoint, mocked; anything else is a test failure."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(
            responses.GET,
            f"{LOGIN}/{TENANT}/v2.0/.well-known/openid-configuration",
            json={
                "token_endpoint": f"{LOGIN}/{TENANT}/oauth2/v2.0/token",
                "authorization_endpoint": f"{LOGIN}/{TENANT}/oauth2/v2.0/authorize",
                "issuer": f"{LOGIN}/{TENANT}/v2.0",
            },
        )
        mock.add(
            responses.POST,
            f"{LOGIN}/{TENANT}/oauth2/v2.0/token",
            json={"token_type": "Bearer", "expires_in": 3599, "access_token": "graph-token"},
        )
        yield mock


@pytest.fixture
def settings() -> Settings:
    return Settings(
        mailbox=MAILBOX,
        credentials=ClientCredentials(TENANT, "client-id-1", SECRET),
    )


@pytest.fixture
def gateway(settings: Settings) -> Iterator[GraphGateway]:
    gw = settings.open()
    yield gw
    gw.close()


def happy_path(rsps: responses.RequestsMock) -> None:
    add(
        rsps,
        "POST",
        f"{USER}/messages",
        recorded_response("graph/11_create_draft_response_201.http", DRAFT_201),
    )
    add(
        rsps,
        "POST",
        f"{DRAFT}/attachments",
        recorded_response("graph/13_add_small_attachment_response_201.http", ATTACHMENT_201),
    )
    add(
        rsps,
        "POST",
        f"{DRAFT}/send",
        recorded_response("graph/30_send_draft_request_and_response.http", ACCEPTED_202),
    )


def calls(rsps: responses.RequestsMock, method: str, url: str) -> list[requests.PreparedRequest]:
    return [
        c.request
        for c in rsps.calls
        if c.request.method == method and c.request.url.split("?")[0] == url
    ]


def run(
    gateway: GraphGateway, message: OutgoingMessage
) -> tuple[Any, list[AttemptFailure], list[float]]:
    failures: list[AttemptFailure] = []
    sleeps: list[float] = []
    result = send_with_retry(
        gateway, message, POLICY, on_failure=failures.append, sleep=sleeps.append
    )
    return result, failures, sleeps


# -- sending ------------------------------------------------------------------------------


def test_send_creates_a_draft_with_our_message_id_attaches_and_sends(
    rsps: responses.RequestsMock, gateway: GraphGateway, message: OutgoingMessage
) -> None:
    """A send is draft (our Message-ID, X-MASH header, HTML), attachment, /send, with a token."""
    happy_path(rsps)
    receipt = gateway.send(message)
    assert receipt.gateway == "graph" and receipt.gateway_id == DRAFT_ID
    [draft] = calls(rsps, "POST", f"{USER}/messages")
    body = json.loads(draft.body or b"")
    assert body["internetMessageId"] == message.message_id
    assert body["internetMessageHeaders"] == [
        {"name": "X-MASH-Request-Ref", "value": "RFI-2026-0001"}
    ]
    assert body["body"] == {"contentType": "HTML", "content": message.html_body}
    assert body["toRecipients"] == [{"emailAddress": {"address": "dsl@school.example"}}]
    assert draft.headers["Authorization"] == "Bearer graph-token"
    assert len(calls(rsps, "POST", f"{DRAFT}/send")) == 1


def test_draft_carries_reply_to(rsps: responses.RequestsMock, gateway: GraphGateway) -> None:
    """A message with a Reply-To address creates a draft whose replyTo is that address."""
    happy_path(rsps)
    gateway.send(build_message(reply_to=REPLY_TO))
    [draft] = calls(rsps, "POST", f"{USER}/messages")
    assert json.loads(draft.body or b"")["replyTo"] == [{"emailAddress": {"address": REPLY_TO}}]


def test_draft_without_reply_to_has_no_reply_to_property(
    rsps: responses.RequestsMock, gateway: GraphGateway, message: OutgoingMessage
) -> None:
    """A message without a Reply-To address creates a draft with no replyTo property."""
    happy_path(rsps)
    gateway.send(message)
    [draft] = calls(rsps, "POST", f"{USER}/messages")
    assert "replyTo" not in json.loads(draft.body or b"")


def test_small_form_bytes_reach_the_attachment_request(
    rsps: responses.RequestsMock, gateway: GraphGateway, message: OutgoingMessage
) -> None:
    """Below 3 MB the form goes inline, and its base64 decodes to the form's exact bytes."""
    happy_path(rsps)
    gateway.send(message)
    [attach] = calls(rsps, "POST", f"{DRAFT}/attachments")
    body = json.loads(attach.body or b"")
    assert body["@odata.type"] == "#microsoft.graph.fileAttachment"
    assert body["name"] == "referral-form.pdf" and body["contentType"] == "application/pdf"
    assert base64.b64decode(body["contentBytes"]) == message.attachment.data


def test_five_megabyte_form_goes_through_an_upload_session(
    rsps: responses.RequestsMock, gateway: GraphGateway, make_message: Any
) -> None:
    """A 5 MB form is uploaded in 320 KiB-multiple chunks, without Authorization, intact."""
    form = big_form(5 * 1024 * 1024)
    message = make_message(form)
    session = recorded_response("graph/21_createUploadSession_response_201.http")
    upload_url = json.loads(session.body)["uploadUrl"]
    add(
        rsps,
        "POST",
        f"{USER}/messages",
        recorded_response("graph/11_create_draft_response_201.http"),
    )
    add(rsps, "POST", f"{DRAFT}/attachments/createUploadSession", session)
    add(rsps, "PUT", upload_url, recorded_response("graph/23_upload_first_chunk_response_200.http"))
    add(rsps, "PUT", upload_url, recorded_response("graph/25_upload_final_chunk_response_201.http"))
    add(
        rsps,
        "POST",
        f"{DRAFT}/send",
        recorded_response("graph/30_send_draft_request_and_response.http"),
    )

    gateway.send(message)

    [create] = calls(rsps, "POST", f"{DRAFT}/attachments/createUploadSession")
    assert json.loads(create.body or b"")["AttachmentItem"] == {
        "attachmentType": "file",
        "name": "referral-form.pdf",
        "size": len(form),
        "contentType": "application/pdf",
    }
    puts = [c.request for c in rsps.calls if c.request.method == "PUT"]
    assert CHUNK_SIZE % (320 * 1024) == 0
    assert [p.headers["Content-Range"] for p in puts] == [
        f"bytes 0-{CHUNK_SIZE - 1}/{len(form)}",
        f"bytes {CHUNK_SIZE}-{len(form) - 1}/{len(form)}",
    ]
    assert all("Authorization" not in p.headers for p in puts)
    assert b"".join(p.body for p in puts if isinstance(p.body, bytes)) == form
    assert not calls(rsps, "POST", f"{DRAFT}/attachments")


# -- faults -------------------------------------------------------------------------------


def test_throttled_draft_waits_the_fractional_retry_after_then_sends(
    rsps: responses.RequestsMock, gateway: GraphGateway, message: OutgoingMessage
) -> None:
    """A 429 with Retry-After 2.128 is retried after exactly 2.128 s and then sent."""
    add(
        rsps, "POST", f"{USER}/messages", recorded_response("graph/05_throttling_429_response.http")
    )
    happy_path(rsps)
    result, failures, sleeps = run(gateway, message)
    assert result.status is SendStatus.SENT
    assert sleeps == [2.128]
    assert failures == [
        AttemptFailure(
            1,
            "transient",
            "429 TooManyRequests: Please retry again later.",
            2.128,
            WaitSource.SERVER,
        )
    ]
    assert len(calls(rsps, "POST", f"{DRAFT}/send")) == 1


def test_server_error_while_attaching_is_transient_and_deletes_the_draft(
    rsps: responses.RequestsMock, gateway: GraphGateway, message: OutgoingMessage
) -> None:
    """A 500 on the attachment step is transient, the draft is deleted, nothing is sent."""
    add(
        rsps,
        "POST",
        f"{USER}/messages",
        recorded_response("graph/11_create_draft_response_201.http", DRAFT_201),
    )
    rsps.add(
        "POST",
        f"{DRAFT}/attachments",
        status=500,
        json={"error": {"code": "InternalServerError", "message": "Something went wrong."}},
    )
    rsps.add("DELETE", DRAFT, status=204)
    with pytest.raises(TransientGatewayError) as caught:
        gateway.send(message)
    assert caught.value.server_message == "500 InternalServerError: Something went wrong."
    assert len(calls(rsps, "DELETE", DRAFT)) == 1
    assert not calls(rsps, "POST", f"{DRAFT}/send")


def test_connection_error_creating_the_draft_is_transient(
    rsps: responses.RequestsMock, gateway: GraphGateway, message: OutgoingMessage
) -> None:
    """A connection reset while creating the draft is transient (a draft is never sent)."""
    rsps.add("POST", f"{USER}/messages", body=requests.ConnectionError("Connection reset by peer"))
    with pytest.raises(TransientGatewayError, match="creating the draft"):
        gateway.send(message)


def test_bad_request_is_permanent_with_graphs_words(
    rsps: responses.RequestsMock, gateway: GraphGateway, message: OutgoingMessage
) -> None:
    """A 400 from Graph is permanent and carries error.message."""
    add(
        rsps,
        "POST",
        f"{USER}/messages",
        recorded_response("graph/04_sendMail_mime_invalid_base64_response_400.http"),
    )
    with pytest.raises(PermanentGatewayError) as caught:
        gateway.send(message)
    assert caught.value.server_message == (
        "400 ErrorMimeContentInvalidBase64String: Invalid base64 string for MIME content."
    )


def test_reported_uppercase_error_shape_is_read(
    rsps: responses.RequestsMock, gateway: GraphGateway, message: OutgoingMessage
) -> None:
    """The user-reported {"Error": …} shape (request too large) still yields its message."""
    rsps.add(
        "POST",
        f"{USER}/messages",
        status=413,
        body=reference_file("graph/07_error_request_too_large_reported.json"),
    )
    with pytest.raises(PermanentGatewayError, match="too large") as caught:
        gateway.send(message)
    assert (
        caught.value.server_message
        == "413 BadRequest: The maximum request length supported is 4MB."
    )


def test_graph_401_is_permanent(
    rsps: responses.RequestsMock, gateway: GraphGateway, message: OutgoingMessage
) -> None:
    """Graph refusing the token (401) is permanent and names what to check, not the token."""
    rsps.add(
        "POST",
        f"{USER}/messages",
        status=401,
        json={
            "error": {
                "code": "InvalidAuthenticationToken",
                "message": "Access token validation failure.",
                "innererror": {"date": "2026-01-01T00:00:00"},
            }
        },
    )
    with pytest.raises(PermanentGatewayError, match="check tenant_id") as caught:
        gateway.send(message)
    assert "graph-token" not in str(caught.value)
    assert (
        caught.value.server_message
        == "401 InvalidAuthenticationToken: Access token validation failure."
    )


def test_token_refused_is_permanent_with_msal_error_code_and_no_secret(
    gateway: GraphGateway, message: OutgoingMessage
) -> None:
    """A wrong client secret is permanent with MSAL's error code; the secret never appears."""
    with responses.RequestsMock() as rsps:
        rsps.add(
            "GET",
            f"{LOGIN}/{TENANT}/v2.0/.well-known/openid-configuration",
            json={
                "token_endpoint": f"{LOGIN}/{TENANT}/oauth2/v2.0/token",
                "authorization_endpoint": f"{LOGIN}/{TENANT}/oauth2/v2.0/authorize",
                "issuer": f"{LOGIN}/{TENANT}/v2.0",
            },
        )
        rsps.add(
            "POST",
            f"{LOGIN}/{TENANT}/oauth2/v2.0/token",
            status=401,
            json={
                "error": "invalid_client",
                "error_description": (
                    "AADSTS7000215: Invalid client secret provided. Ensure the secret being "
                    "sent in the request is the client secret value.\r\n"
                    "Trace ID: 1\r\nCorrelation ID: 2"
                ),
                "error_codes": [7000215],
            },
        )
        # After a refusal msal asks the instance-discovery endpoint for authority aliases.
        rsps.add(
            "GET",
            f"{LOGIN}/common/discovery/instance",
            json={"metadata": [{"aliases": ["login.microsoftonline.com", "login.windows.net"]}]},
        )
        with pytest.raises(PermanentGatewayError) as caught:
            gateway.send(message)
    assert caught.value.server_message.startswith(
        "invalid_client: AADSTS7000215: Invalid client secret"
    )
    assert "Trace ID" not in caught.value.server_message
    assert SECRET not in str(caught.value) and SECRET not in caught.value.server_message


def test_gateway_timeout_on_send_then_found_in_sent_items_is_sent_once(
    rsps: responses.RequestsMock, gateway: GraphGateway, message: OutgoingMessage
) -> None:
    """A 504 on /send, then the Message-ID found in Sent Items: sent, with one /send only."""
    add(
        rsps,
        "POST",
        f"{USER}/messages",
        recorded_response("graph/11_create_draft_response_201.http", DRAFT_201),
    )
    add(
        rsps,
        "POST",
        f"{DRAFT}/attachments",
        recorded_response("graph/13_add_small_attachment_response_201.http", ATTACHMENT_201),
    )
    rsps.add("POST", f"{DRAFT}/send", status=504, body="")
    rsps.add(
        "GET",
        SENT_ITEMS,
        json={
            "value": [
                {
                    "id": "SENT-ITEM-1",
                    "internetMessageId": message.message_id,
                    "sentDateTime": "2026-11-02T10:00:00Z",
                }
            ]
        },
    )
    result, failures, _ = run(gateway, message)
    assert result.status is SendStatus.SENT
    assert result.receipt is not None and result.receipt.gateway_id == "SENT-ITEM-1"
    assert len(calls(rsps, "POST", f"{DRAFT}/send")) == 1
    assert [f.error_class for f in failures] == ["ambiguous"]
    [lookup] = calls(rsps, "GET", SENT_ITEMS)
    query = parse_qs(urlsplit(lookup.url).query)
    assert query["$filter"] == [f"internetMessageId eq '{message.message_id}'"]
    assert not calls(rsps, "DELETE", DRAFT)


def test_gateway_timeout_on_send_not_in_sent_items_is_resent_once(
    rsps: responses.RequestsMock, gateway: GraphGateway, message: OutgoingMessage
) -> None:
    """A 504 on /send with nothing in Sent Items at either lookup is sent again exactly once."""
    add(
        rsps,
        "POST",
        f"{USER}/messages",
        recorded_response("graph/11_create_draft_response_201.http", DRAFT_201),
    )
    add(
        rsps,
        "POST",
        f"{DRAFT}/attachments",
        recorded_response("graph/13_add_small_attachment_response_201.http", ATTACHMENT_201),
    )
    rsps.add("POST", f"{DRAFT}/send", status=504, body="")
    rsps.add("POST", f"{DRAFT}/send", status=202)
    rsps.add("GET", SENT_ITEMS, json={"value": []})
    result, _, _ = run(gateway, message)
    assert result.status is SendStatus.SENT and result.attempts == 2
    assert len(calls(rsps, "POST", f"{DRAFT}/send")) == 2
    assert len(calls(rsps, "GET", SENT_ITEMS)) == 2
    for attach in calls(rsps, "POST", f"{DRAFT}/attachments"):
        assert (
            base64.b64decode(json.loads(attach.body or b"")["contentBytes"])
            == message.attachment.data
        )


def test_read_timeout_on_send_is_ambiguous(
    rsps: responses.RequestsMock, gateway: GraphGateway, message: OutgoingMessage
) -> None:
    """A timeout waiting for the /send answer is ambiguous and leaves the draft alone."""
    add(
        rsps,
        "POST",
        f"{USER}/messages",
        recorded_response("graph/11_create_draft_response_201.http", DRAFT_201),
    )
    add(
        rsps,
        "POST",
        f"{DRAFT}/attachments",
        recorded_response("graph/13_add_small_attachment_response_201.http", ATTACHMENT_201),
    )
    rsps.add("POST", f"{DRAFT}/send", body=requests.ReadTimeout("read timed out"))
    with pytest.raises(AmbiguousGatewayError, match="Sent Items"):
        gateway.send(message)
    assert not calls(rsps, "DELETE", DRAFT)


def test_throttled_send_is_transient(
    rsps: responses.RequestsMock, gateway: GraphGateway, message: OutgoingMessage
) -> None:
    """A 429 on /send itself is transient (refused before any work) with the hint."""
    add(
        rsps,
        "POST",
        f"{USER}/messages",
        recorded_response("graph/11_create_draft_response_201.http", DRAFT_201),
    )
    add(
        rsps,
        "POST",
        f"{DRAFT}/attachments",
        recorded_response("graph/13_add_small_attachment_response_201.http", ATTACHMENT_201),
    )
    add(rsps, "POST", f"{DRAFT}/send", recorded_response("graph/05_throttling_429_response.http"))
    rsps.add("DELETE", DRAFT, status=204)
    with pytest.raises(TransientGatewayError) as caught:
        gateway.send(message)
    assert caught.value.retry_after == 2.128


def draft_and_attachment(rsps: responses.RequestsMock) -> None:
    """The draft and attachment steps succeed; the test says what /send answers."""
    add(
        rsps,
        "POST",
        f"{USER}/messages",
        recorded_response("graph/11_create_draft_response_201.http", DRAFT_201),
    )
    add(
        rsps,
        "POST",
        f"{DRAFT}/attachments",
        recorded_response("graph/13_add_small_attachment_response_201.http", ATTACHMENT_201),
    )


def test_service_unavailable_on_send_is_ambiguous_with_the_hint(
    rsps: responses.RequestsMock, gateway: GraphGateway, message: OutgoingMessage
) -> None:
    """A 503 on /send may follow acceptance: ambiguous, Retry-After kept, draft left alone."""
    draft_and_attachment(rsps)
    rsps.add("POST", f"{DRAFT}/send", status=503, headers={"Retry-After": "40"}, body="")
    with pytest.raises(AmbiguousGatewayError, match="Sent Items") as caught:
        gateway.send(message)
    assert caught.value.retry_after == 40
    assert not calls(rsps, "DELETE", DRAFT)


def test_request_timeout_on_send_is_ambiguous(
    rsps: responses.RequestsMock, gateway: GraphGateway, message: OutgoingMessage
) -> None:
    """A 408 on /send is ambiguous: a front end may have given up after Graph took it."""
    draft_and_attachment(rsps)
    rsps.add("POST", f"{DRAFT}/send", status=408, body="")
    with pytest.raises(AmbiguousGatewayError):
        gateway.send(message)


def test_service_unavailable_creating_the_draft_is_transient(
    rsps: responses.RequestsMock, gateway: GraphGateway, message: OutgoingMessage
) -> None:
    """A 503 while creating the draft is transient: nothing can have been sent."""
    rsps.add("POST", f"{USER}/messages", status=503, body="")
    with pytest.raises(TransientGatewayError):
        gateway.send(message)


def test_unexpected_error_on_send_is_ambiguous_naming_only_its_type(
    rsps: responses.RequestsMock, gateway: GraphGateway, message: OutgoingMessage
) -> None:
    """An error requests does not class, raised on /send, is ambiguous with its type only."""
    draft_and_attachment(rsps)
    rsps.add("POST", f"{DRAFT}/send", body=RuntimeError("quoting Jamie Doe"))
    with pytest.raises(AmbiguousGatewayError) as caught:
        gateway.send(message)
    assert caught.value.server_message == "RuntimeError"
    assert "Jamie" not in str(caught.value)


def test_unexpected_error_creating_the_draft_is_permanent(
    rsps: responses.RequestsMock, gateway: GraphGateway, message: OutgoingMessage
) -> None:
    """An error requests does not class, raised creating the draft, is permanent."""
    rsps.add("POST", f"{USER}/messages", body=RuntimeError("odd"))
    with pytest.raises(PermanentGatewayError) as caught:
        gateway.send(message)
    assert caught.value.server_message == "RuntimeError"
    assert not calls(rsps, "POST", f"{DRAFT}/send")


def test_unexpected_error_getting_a_token_is_permanent(
    rsps: responses.RequestsMock, gateway: GraphGateway, message: OutgoingMessage
) -> None:
    """An error msal does not class while getting a token is permanent, naming its type."""
    rsps.replace(responses.POST, f"{LOGIN}/{TENANT}/oauth2/v2.0/token", body=RuntimeError("x"))
    with pytest.raises(PermanentGatewayError, match="no access token") as caught:
        gateway.send(message)
    assert caught.value.server_message == "RuntimeError"


def test_find_sent_returns_none_when_absent(
    rsps: responses.RequestsMock, gateway: GraphGateway
) -> None:
    """find_sent answers None when Sent Items holds no such Message-ID."""
    rsps.add("GET", SENT_ITEMS, json={"value": []})
    assert gateway.find_sent("<x@council.example>") is None


def test_find_sent_escapes_quotes_in_the_filter(
    rsps: responses.RequestsMock, gateway: GraphGateway
) -> None:
    """A quote in a Message-ID is doubled in the OData filter literal."""
    rsps.add("GET", SENT_ITEMS, json={"value": []})
    gateway.find_sent("<o'brien@council.example>")
    query = parse_qs(urlsplit(rsps.calls[-1].request.url).query)
    assert query["$filter"] == ["internetMessageId eq '<o''brien@council.example>'"]


def test_check_reads_sent_items_and_sends_nothing(
    rsps: responses.RequestsMock, gateway: GraphGateway
) -> None:
    """check() gets a token and reads the Sent Items folder."""
    rsps.add(
        "GET",
        f"{USER}/mailFolders('SentItems')",
        json={"id": "x", "displayName": "Sent Items", "totalItemCount": 12},
    )
    assert gateway.check() == (
        f"graph: token for client client-id-1 accepted; mailbox {MAILBOX} reachable "
        "(12 messages in Sent Items)"
    )
    assert not [
        c
        for c in rsps.calls
        if c.request.method == "POST" and "graph.microsoft.com" in c.request.url
    ]


# -- settings -----------------------------------------------------------------------------


def table(data: dict[str, Any], tmp_path: Path) -> Table:
    return Table(data, where="config t.toml: [gateway.graph]", base_dir=tmp_path)


def test_settings_from_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A complete table gives settings; the secret comes from the environment, not the repr."""
    monkeypatch.setenv("GRAPH_SECRET", SECRET)
    settings = Settings.from_table(
        table(
            {
                "mailbox": MAILBOX,
                "tenant_id": TENANT,
                "client_id": "c",
                "client_secret_env": "GRAPH_SECRET",
            },
            tmp_path,
        )
    )
    assert settings.kind == "graph" and settings.mailbox == MAILBOX
    assert settings.credentials.client_secret == SECRET and SECRET not in repr(settings)
    assert settings.base_url == GRAPH and settings.scope == "https://graph.microsoft.com/.default"


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (
            {"tenant_id": "t", "client_id": "c", "client_secret_env": "GRAPH_SECRET"},
            "mailbox: is required",
        ),
        ({"mailbox": MAILBOX, "client_id": "c", "client_secret_env": "GRAPH_SECRET"}, "tenant_id"),
        (
            {"mailbox": MAILBOX, "tenant_id": "t", "client_id": "c", "client_secret": "x"},
            "client_secret: secrets are not written",
        ),
        (
            {
                "mailbox": MAILBOX,
                "tenant_id": "t",
                "client_id": "c",
                "client_secret_env": "GRAPH_SECRET",
                "base_url": "http://x",
            },
            "base_url",
        ),
        (
            {
                "mailbox": MAILBOX,
                "tenant_id": "t",
                "client_id": "c",
                "client_secret_env": "GRAPH_SECRET",
                "scope": "x",
            },
            "scope: unknown key",
        ),
    ],
)
def test_bad_settings_are_config_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: dict[str, Any], problem: str
) -> None:
    """Each configuration mistake is a ConfigError naming the key."""
    monkeypatch.setenv("GRAPH_SECRET", SECRET)
    with pytest.raises(ConfigError, match=re.escape(problem)):
        Settings.from_table(table(data, tmp_path))


def test_refused_chunk_is_permanent_and_deletes_the_draft(
    rsps: responses.RequestsMock, gateway: GraphGateway, make_message: Any
) -> None:
    """A chunk refused with Graph's invalidRange error is permanent; the draft is deleted."""
    session = recorded_response("graph/21_createUploadSession_response_201.http")
    error = reference_file("graph/06_error_shape_example.json")
    add(
        rsps,
        "POST",
        f"{USER}/messages",
        recorded_response("graph/11_create_draft_response_201.http"),
    )
    add(rsps, "POST", f"{DRAFT}/attachments/createUploadSession", session)
    rsps.add("PUT", json.loads(session.body)["uploadUrl"], status=416, body=error)
    rsps.add("DELETE", DRAFT, status=204)
    with pytest.raises(PermanentGatewayError) as caught:
        gateway.send(make_message(big_form(4 * 1024 * 1024)))
    assert caught.value.server_message == (
        "416 invalidRange: Uploaded fragment overlaps with existing data."
    )
    assert len(calls(rsps, "DELETE", DRAFT)) == 1
    assert not calls(rsps, "POST", f"{DRAFT}/send")
