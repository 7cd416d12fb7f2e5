"""The Graph gateway against a fake Graph mailbox and identity platform (``graph_fake``)."""

from __future__ import annotations

import base64
import functools
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from gateway_helpers import (
    MASH_NAME,
    REPLY_TO,
    SENDER,
    big_form,
    build_message,
    reference_file,
)
from graph_fake import (
    CLIENT_ID,
    GRAPH,
    JSON,
    PUBLIC_CLOUD,
    TENANT,
    FakeGraph,
    Fault,
    fake_graph,
)
from urllib3.exceptions import MaxRetryError, NewConnectionError

from mash_requests._tables import Table
from mash_requests.errors import (
    AmbiguousGatewayError,
    ConfigError,
    Failure,
    PermanentGatewayError,
    TransientGatewayError,
)
from mash_requests.gateways.base import OutgoingMessage
from mash_requests.gateways.graph import (
    CHUNK_SIZE,
    ClientCredentials,
    GraphGateway,
    Settings,
    TokenSource,
)
from mash_requests.retry import (
    AttemptFailure,
    RetryPolicy,
    SendResult,
    WaitSource,
    send_with_retry,
)

SECRET = "client-secret-value-never-logged"
MAILBOX = SENDER
POLICY = RetryPolicy(
    max_attempts=5, max_seconds=300, initial_wait=1, max_wait=60, jitter=0, lookup_delay=30
)
IMMUTABLE = 'IdType="ImmutableId"'


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    with fake_graph(MAILBOX, SECRET) as fake:
        yield fake


def settings(**overrides: Any) -> Settings:
    credentials = ClientCredentials(
        TENANT,
        CLIENT_ID,
        overrides.pop("secret", SECRET),
        authority=overrides.pop("authority", PUBLIC_CLOUD),
        instance_discovery=overrides.pop("instance_discovery", True),
    )
    return Settings(mailbox=MAILBOX, credentials=credentials, **overrides)


class Opened:
    """A gateway whose waits are recorded instead of slept."""

    def __init__(self, **overrides: Any) -> None:
        self.sleeps: list[float] = []
        s = settings(**overrides)
        self.gateway = GraphGateway(
            s, TokenSource(s.credentials, s.scope, timeout=5), sleep=self.sleeps.append
        )


@pytest.fixture
def opened() -> Iterator[Opened]:
    gw = Opened()
    yield gw
    gw.gateway.close()


@pytest.fixture
def gateway(opened: Opened) -> GraphGateway:
    return opened.gateway


def run(gateway: GraphGateway, message: OutgoingMessage) -> tuple[SendResult, list[AttemptFailure]]:
    failures: list[AttemptFailure] = []
    result = send_with_retry(
        gateway, message, POLICY, on_failure=failures.append, sleep=lambda seconds: None
    )
    return result, failures


def send_mail_bodies(rsps_calls: Any) -> list[requests.PreparedRequest]:
    return [c.request for c in rsps_calls if c.request.url.endswith("/sendMail")]


# -- one sendMail call with the product's MIME ---------------------------------------------


def test_send_is_one_send_mail_of_the_products_own_mime(
    graph: FakeGraph, gateway: GraphGateway, message: OutgoingMessage
) -> None:
    """A small form goes in one sendMail whose base64 body is exactly the product's MIME."""
    gateway.send(message)
    [item] = graph.delivered
    assert item.mime == message.as_bytes()
    assert graph.operations("sendMail") == 1
    assert graph.operations("createDraft") == 0 and not graph.drafts


def test_send_mail_request_is_text_plain_base64(
    gateway: GraphGateway, message: OutgoingMessage
) -> None:
    """The sendMail request says text/plain and carries the MIME as base64, with the token."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = FakeGraph(MAILBOX, SECRET)
        fake.install(rsps)
        gateway.send(message)
        [request] = send_mail_bodies(rsps.calls)
    assert request.headers["Content-Type"] == "text/plain"
    assert request.headers["Authorization"].startswith("Bearer ")
    assert base64.b64decode(request.body or b"", validate=True) == message.as_bytes()


def test_message_id_header_is_ours_in_what_graph_received(
    graph: FakeGraph, gateway: GraphGateway, message: OutgoingMessage
) -> None:
    """The Message-ID Graph receives (and files as internetMessageId) is the message's own."""
    gateway.send(message)
    [item] = graph.sent_items
    assert item.internet_message_id == message.message_id


def test_gateway_id_is_the_immutable_id_of_the_sent_item(
    graph: FakeGraph, gateway: GraphGateway, message: OutgoingMessage
) -> None:
    """After the 202, Sent Items is searched with immutable ids and the item's id recorded."""
    receipt = gateway.send(message)
    [item] = graph.sent_items
    assert receipt.gateway_id == item.immutable_id
    assert ("searchSentItems", IMMUTABLE) in graph.calls


def test_sent_item_found_after_exchange_files_it(
    graph: FakeGraph, opened: Opened, message: OutgoingMessage
) -> None:
    """A message filed two searches late is found at the third, after 0.5 + 1 + 1.5 s."""
    graph.filing_lag = 2
    receipt = opened.gateway.send(message)
    assert receipt.gateway_id == graph.sent_items[0].immutable_id
    assert opened.sleeps == [0.5, 1, 1.5]


def test_sent_item_not_filed_in_time_records_no_id_within_the_bound(
    graph: FakeGraph, opened: Opened, message: OutgoingMessage
) -> None:
    """A message not in Sent Items within sent_item_wait: no id, and the waits add up to it."""
    graph.filing_lag = 100
    receipt = opened.gateway.send(message)
    assert receipt.gateway_id is None
    assert "not in Sent Items within 3 s, so no item id is recorded" in receipt.detail
    assert sum(opened.sleeps) == 3 and graph.operations("searchSentItems") == 3
    assert len(graph.delivered) == 1


def test_sent_item_wait_zero_does_not_search(graph: FakeGraph, message: OutgoingMessage) -> None:
    """With sent_item_wait = 0 nothing is searched after the 202 and no id is recorded."""
    opened = Opened(sent_item_wait=0)
    receipt = opened.gateway.send(message)
    assert receipt.gateway_id is None and "sent_item_wait = 0" in receipt.detail
    assert graph.operations("searchSentItems") == 0 and opened.sleeps == []


def test_lookup_refused_after_202_is_still_sent_and_not_asked_again(
    graph: FakeGraph, gateway: GraphGateway
) -> None:
    """A 403 on the Sent Items search after a 202 keeps the send; later sends do not search."""
    graph.fail("searchSentItems", Fault.answer(403, code="ErrorAccessDenied"))
    first = gateway.send(build_message(request_ref="RFI-1"))
    second = gateway.send(build_message(request_ref="RFI-2"))
    assert first.gateway_id is None and "Sent Items cannot be searched (403" in first.detail
    assert second.gateway_id is None
    assert graph.operations("searchSentItems") == 1 and len(graph.delivered) == 2


def test_send_mail_throttled_waits_the_fractional_retry_after_then_sends_once(
    graph: FakeGraph, gateway: GraphGateway, message: OutgoingMessage
) -> None:
    """A 429 with Retry-After 2.128 on sendMail is retried after exactly 2.128 s, sent once."""
    graph.fail("sendMail", Fault.throttled())
    sleeps: list[float] = []
    failures: list[AttemptFailure] = []
    result = send_with_retry(
        gateway, message, POLICY, on_failure=failures.append, sleep=sleeps.append
    )
    assert result.status == "sent" and sleeps == [2.128]
    assert failures == [
        AttemptFailure(
            1,
            "transient",
            "429 TooManyRequests: Please retry again later.",
            2.128,
            WaitSource.SERVER,
        )
    ]
    assert len(graph.delivered) == 1 and not graph.drafts


def test_send_mail_400_is_a_permanent_message_failure_with_graphs_words(
    graph: FakeGraph, gateway: GraphGateway, message: OutgoingMessage
) -> None:
    """A 400 to sendMail is permanent, says Graph refused the message, with Graph's code."""
    recorded = reference_file("graph/04_sendMail_mime_invalid_base64_response_400.http")
    body = recorded[recorded.index("{") :]
    graph.fail("sendMail", Fault(status=400, headers=JSON, body=body))
    with pytest.raises(PermanentGatewayError) as caught:
        gateway.send(message)
    words = "400 ErrorMimeContentInvalidBase64String: Invalid base64 string for MIME content."
    assert caught.value.server_message == words
    assert str(caught.value) == (
        f"Graph refused the message ({words}); Graph's words say why; check the partner's "
        "addresses and the form's size, or ask the mailbox's administrators"
    )
    assert caught.value.failure is Failure.MESSAGE
    assert not graph.delivered and not graph.drafts


def test_send_mail_413_goes_the_long_way_once_and_leaves_no_draft(
    graph: FakeGraph, gateway: GraphGateway, message: OutgoingMessage
) -> None:
    """A 413 to sendMail (too large as Graph counts) sends once through a draft, then no draft."""
    graph.fail(
        "sendMail",
        Fault(status=413, body=reference_file("graph/07_error_request_too_large_reported.json")),
    )
    receipt = gateway.send(message)
    [item] = graph.delivered
    assert item.draft is not None and graph.form_of(item) == message.attachment.data
    assert receipt.gateway_id == item.immutable_id
    assert not graph.drafts


def test_send_mail_504_then_found_in_sent_items_is_sent_once(
    graph: FakeGraph, gateway: GraphGateway, message: OutgoingMessage
) -> None:
    """A 504 after Graph took the message: found in Sent Items, never posted twice."""
    graph.fail("sendMail", Fault.answer(504, done=True))
    result, failures = run(gateway, message)
    assert result.status == "sent" and result.attempts == 1
    assert [f.error_class for f in failures] == ["ambiguous"]
    assert len(graph.delivered) == 1 and graph.operations("sendMail") == 1
    assert result.receipt is not None
    assert result.receipt.gateway_id == graph.delivered[0].immutable_id


def test_send_mail_504_before_graph_took_it_is_resent_once(
    graph: FakeGraph, gateway: GraphGateway, message: OutgoingMessage
) -> None:
    """A 504 where Graph did not take the message: two lookups miss, one resend arrives."""
    graph.fail("sendMail", Fault.answer(504))
    result, _ = run(gateway, message)
    assert result.status == "sent" and result.attempts == 2
    assert len(graph.delivered) == 1 and graph.operations("sendMail") == 2


def test_read_timeout_on_send_mail_is_ambiguous(
    graph: FakeGraph, gateway: GraphGateway, message: OutgoingMessage
) -> None:
    """A timeout waiting for sendMail's answer is ambiguous, a connection failure."""
    graph.fail("sendMail", Fault.lost(requests.ReadTimeout("read timed out"), done=True))
    with pytest.raises(AmbiguousGatewayError, match="looked up in Sent Items") as caught:
        gateway.send(message)
    assert caught.value.failure is Failure.CONNECTION


def test_service_unavailable_on_send_mail_is_ambiguous_with_the_hint(
    graph: FakeGraph, gateway: GraphGateway, message: OutgoingMessage
) -> None:
    """A 503 to sendMail may follow acceptance: ambiguous, with Graph's Retry-After."""
    graph.fail("sendMail", Fault.answer(503, **{"Retry-After": "40"}))
    with pytest.raises(AmbiguousGatewayError) as caught:
        gateway.send(message)
    assert caught.value.retry_after == 40


def test_retry_after_as_an_http_date_is_the_wait_until_then(
    graph: FakeGraph, gateway: GraphGateway, message: OutgoingMessage
) -> None:
    """Retry-After may be an HTTP date (RFC 9110): the wait runs until then, not the
    policy's own (a probe saw a 4 s wait taken as 0.2 s)."""
    then = datetime.now(UTC) + timedelta(seconds=30)
    graph.fail(
        "sendMail",
        Fault.answer(
            429, code="TooManyRequests", **{"Retry-After": format_datetime(then, usegmt=True)}
        ),
    )
    with pytest.raises(TransientGatewayError) as caught:
        gateway.send(message)
    assert caught.value.retry_after is not None and 25 <= caught.value.retry_after <= 30


def test_connection_refused_is_transient_and_names_graphs_host(
    graph: FakeGraph, gateway: GraphGateway, message: OutgoingMessage
) -> None:
    """A refused connection never reached Graph: transient, naming the host that failed."""
    reason = NewConnectionError(
        None, "Failed to establish a new connection: [Errno 111] Connection refused"
    )  # type: ignore[arg-type]
    refused = requests.ConnectionError(MaxRetryError(None, "/sendMail", reason))  # type: ignore[arg-type]
    graph.fail("sendMail", Fault.lost(refused, done=False))
    with pytest.raises(TransientGatewayError) as caught:
        gateway.send(message)
    assert str(caught.value) == (
        "cannot reach Graph at graph.microsoft.com for sending the message (Connection "
        "refused); check base_url, and that this machine can reach it (set HTTPS_PROXY where "
        "a proxy is needed)"
    )
    assert caught.value.failure is Failure.CONNECTION


def test_untrusted_certificate_is_permanent_tls_failure(
    graph: FakeGraph, gateway: GraphGateway, message: OutgoingMessage
) -> None:
    """A certificate that is not trusted is permanent, names the host and REQUESTS_CA_BUNDLE."""
    error = requests.exceptions.SSLError(
        "Max retries exceeded (Caused by SSLError(SSLCertVerificationError(1, '[SSL: "
        "CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer "
        "certificate (_ssl.c:1006)')))"
    )
    graph.fail("sendMail", Fault.lost(error, done=False))
    with pytest.raises(PermanentGatewayError) as caught:
        gateway.send(message)
    assert caught.value.failure is Failure.TLS
    assert str(caught.value) == (
        "the TLS certificate of graph.microsoft.com is not trusted (unable to get local issuer "
        "certificate); if a proxy inspects TLS, set REQUESTS_CA_BUNDLE to its CA"
    )


def test_graph_401_is_an_authentication_failure_without_the_token(
    graph: FakeGraph, gateway: GraphGateway, message: OutgoingMessage
) -> None:
    """Graph refusing the token (401) is permanent authentication, naming what to check."""
    graph.fail("sendMail", Fault.answer(401, code="InvalidAuthenticationToken"))
    with pytest.raises(PermanentGatewayError, match="check tenant_id, client_id") as caught:
        gateway.send(message)
    assert caught.value.failure is Failure.AUTHENTICATION
    assert "fake-graph-access-token" not in str(caught.value)
    assert caught.value.server_message.startswith("401 InvalidAuthenticationToken")


def test_token_refused_after_it_worked_is_renewed_once_and_the_request_made_again(
    graph: FakeGraph, gateway: GraphGateway, message: OutgoingMessage
) -> None:
    """A token Graph took for one message and refuses for the next (expired early, revoked)
    is not the app's credentials being wrong: one new token, the same sendMail again, sent
    once (a 401 is decided before Graph does anything)."""
    gateway.send(message)
    graph.fail("sendMail", Fault.answer(401, code="InvalidAuthenticationToken"))
    second = build_message(request_ref="RFI-2")
    gateway.send(second)
    assert [item.internet_message_id for item in graph.delivered] == [
        message.message_id,
        second.message_id,
    ]
    assert graph.token_requests == 2


def test_token_refused_again_after_renewal_is_permanent(
    graph: FakeGraph, gateway: GraphGateway, message: OutgoingMessage
) -> None:
    """A new token refused too is the credentials: permanent, after one renewal only."""
    gateway.send(message)
    graph.fail("sendMail", *[Fault.answer(401, code="InvalidAuthenticationToken")] * 2)
    with pytest.raises(PermanentGatewayError, match="check tenant_id, client_id") as caught:
        gateway.send(build_message(request_ref="RFI-2"))
    assert caught.value.failure is Failure.AUTHENTICATION
    assert graph.token_requests == 2
    assert len(graph.delivered) == 1


def test_first_token_refused_is_not_renewed(
    graph: FakeGraph, gateway: GraphGateway, message: OutgoingMessage
) -> None:
    """A 401 to a token Graph never took is the app's set-up: one token request, permanent."""
    graph.fail("sendMail", Fault.answer(401, code="InvalidAuthenticationToken"))
    with pytest.raises(PermanentGatewayError):
        gateway.send(message)
    assert graph.token_requests == 1


def test_graph_403_is_an_authentication_failure_naming_the_permissions(
    graph: FakeGraph, gateway: GraphGateway, message: OutgoingMessage
) -> None:
    """A 403 (no right to send as the mailbox) ends the gateway's use, naming Mail.Send."""
    graph.fail("sendMail", Fault.answer(403, code="ErrorAccessDenied"))
    with pytest.raises(PermanentGatewayError, match=r"Mail\.Send and Mail\.ReadWrite") as caught:
        gateway.send(message)
    assert caught.value.failure is Failure.AUTHENTICATION
    assert f"access to mailbox {MAILBOX}" in str(caught.value)


def test_unexpected_error_on_send_mail_is_ambiguous_naming_only_its_type(
    graph: FakeGraph, gateway: GraphGateway, message: OutgoingMessage
) -> None:
    """An error requests does not class, raised on sendMail, is ambiguous with its type only."""
    graph.fail("sendMail", Fault.lost(RuntimeError("quoting Jamie Doe"), done=False))
    with pytest.raises(AmbiguousGatewayError) as caught:
        gateway.send(message)
    assert caught.value.server_message == "RuntimeError"
    assert "Jamie" not in str(caught.value)


# -- the long way: forms too large for sendMail --------------------------------------------


@functools.cache
def _big_form(size: int) -> bytes:
    return big_form(size)  # seconds to make: made once per size


def large_message(size: int = 5 * 1024 * 1024) -> OutgoingMessage:
    return build_message(_big_form(size), reply_to=REPLY_TO)


def test_large_form_goes_through_a_draft_and_upload_session_intact(
    graph: FakeGraph, gateway: GraphGateway
) -> None:
    """A 5 MB form: draft, 320 KiB-multiple chunks without a token, /send; bytes intact."""
    message = large_message()
    gateway.send(message)
    [item] = graph.delivered
    assert graph.form_of(item) == message.attachment.data
    assert graph.operations("sendMail") == 0 and graph.operations("upload") == 2
    assert CHUNK_SIZE % (320 * 1024) == 0


def test_large_form_draft_carries_our_message_id_reply_to_and_headers(
    graph: FakeGraph, gateway: GraphGateway
) -> None:
    """The draft carries our internetMessageId, X-MASH headers, HTML body and replyTo."""
    message = large_message()
    gateway.send(message)
    [item] = graph.delivered
    assert item.draft is not None
    assert item.draft["internetMessageId"] == message.message_id
    assert item.draft["internetMessageHeaders"] == [
        {"name": "X-MASH-Request-Ref", "value": "RFI-2026-0001"}
    ]
    assert item.draft["body"] == {"contentType": "HTML", "content": message.html_body}
    assert item.draft["replyTo"] == [{"emailAddress": {"address": REPLY_TO}}]


def test_large_red_request_draft_is_high_importance_from_the_mash_by_name(
    graph: FakeGraph, gateway: GraphGateway
) -> None:
    """The long way carries what the MIME does: importance high, From with the MASH's name."""
    message = build_message(_big_form(5 * 1024 * 1024), importance="high", sender_name=MASH_NAME)
    gateway.send(message)
    [item] = graph.delivered
    assert item.draft is not None
    assert item.draft["importance"] == "high"
    assert item.draft["from"] == {"emailAddress": {"address": SENDER, "name": MASH_NAME}}


def test_large_other_request_draft_is_normal_importance(
    graph: FakeGraph, gateway: GraphGateway
) -> None:
    """A large AMBER or GREEN request's draft is of normal importance."""
    gateway.send(large_message())
    [item] = graph.delivered
    assert item.draft is not None and item.draft["importance"] == "normal"


def test_large_form_gateway_id_is_the_drafts_immutable_id_now_in_sent_items(
    graph: FakeGraph, gateway: GraphGateway
) -> None:
    """The recorded id is the draft's immutable id, which the Sent Items copy keeps."""
    receipt = gateway.send(large_message())
    [item] = graph.sent_items
    assert receipt.gateway_id == item.immutable_id
    assert dict(graph.calls)["createDraft"] == IMMUTABLE


def test_large_form_found_by_lookup_has_the_same_kind_of_id(
    graph: FakeGraph, gateway: GraphGateway
) -> None:
    """After a lost /send answer, the Sent Items lookup records the same immutable id."""
    graph.fail("send", Fault.answer(504, done=True))
    result, _ = run(gateway, large_message())
    [item] = graph.delivered
    assert result.receipt is not None and result.receipt.gateway_id == item.immutable_id
    assert not graph.drafts


def test_504_on_draft_creation_leaves_no_draft_and_sends_once(
    graph: FakeGraph, gateway: GraphGateway
) -> None:
    """A draft made but its 504 answer lost is found by Message-ID and deleted; one send."""
    graph.fail("createDraft", Fault.answer(504, done=True))
    result, failures = run(gateway, large_message())
    assert result.status == "sent" and [f.error_class for f in failures] == ["transient"]
    assert len(graph.delivered) == 1 and not graph.drafts
    assert graph.operations("delete") == 1


def test_lost_draft_creation_with_no_retry_left_leaves_no_draft(
    graph: FakeGraph, gateway: GraphGateway
) -> None:
    """A lost answer to creating the draft is cleaned up at once, not only before a retry."""
    graph.fail("createDraft", Fault.lost(requests.ReadTimeout("read timed out"), done=True))
    with pytest.raises(TransientGatewayError):
        gateway.send(large_message())
    assert not graph.drafts and not graph.delivered


def test_unreadable_answer_to_draft_creation_leaves_no_draft(
    graph: FakeGraph, gateway: GraphGateway
) -> None:
    """A 201 without a JSON body is a lost answer: the draft made is found and deleted."""
    graph.fail("createDraft", Fault(status=201, done=True))
    with pytest.raises(TransientGatewayError, match="no JSON object"):
        gateway.send(large_message())
    assert not graph.drafts and graph.operations("delete") == 1


def test_ambiguous_send_then_resend_leaves_no_first_draft(
    graph: FakeGraph, gateway: GraphGateway
) -> None:
    """A 504 on /send, nothing in Sent Items, a resend: one arrival and no draft remains."""
    graph.fail("send", Fault.answer(504))
    result, _ = run(gateway, large_message())
    assert result.status == "sent" and result.attempts == 2
    assert len(graph.delivered) == 1 and not graph.drafts
    assert graph.operations("createDraft") == 2 and graph.operations("delete") == 1


def test_ambiguous_send_leaves_the_draft_alone(graph: FakeGraph, gateway: GraphGateway) -> None:
    """A timeout on /send may be a send in progress: the draft is not deleted then."""
    graph.fail("send", Fault.lost(requests.ReadTimeout("read timed out"), done=False))
    with pytest.raises(AmbiguousGatewayError):
        gateway.send(large_message())
    assert graph.operations("delete") == 0


def test_failed_upload_deletes_the_draft(graph: FakeGraph, gateway: GraphGateway) -> None:
    """A chunk refused with Graph's invalidRange error is permanent and the draft is deleted."""
    error = reference_file("graph/06_error_shape_example.json")
    graph.fail("upload", Fault(status=416, headers=JSON, body=error))
    with pytest.raises(PermanentGatewayError) as caught:
        gateway.send(large_message(4 * 1024 * 1024))
    assert caught.value.server_message == (
        "416 invalidRange: Uploaded fragment overlaps with existing data."
    )
    assert not graph.drafts and not graph.delivered


def test_draft_that_cannot_be_deleted_is_named_in_the_error(
    graph: FakeGraph, gateway: GraphGateway
) -> None:
    """When the unsent draft cannot be deleted either, the error says where to delete it."""
    graph.fail("createUploadSession", Fault.answer(400, code="ErrorInvalidRequest"))
    graph.fail("delete", Fault.answer(500, code="InternalServerError"))
    with pytest.raises(PermanentGatewayError) as caught:
        gateway.send(large_message())
    assert str(caught.value).endswith(
        "an unsent draft could not be deleted (500 InternalServerError: InternalServerError "
        f"(fake).): delete it from the Drafts folder of {MAILBOX}"
    )
    assert len(graph.drafts) == 1


def test_reported_uppercase_error_shape_is_read(graph: FakeGraph, gateway: GraphGateway) -> None:
    """The user-reported {"Error": …} shape (request too large) still yields its words."""
    graph.fail(
        "createDraft",
        Fault(status=413, body=reference_file("graph/07_error_request_too_large_reported.json")),
    )
    with pytest.raises(PermanentGatewayError, match="too large") as caught:
        gateway.send(large_message())
    assert caught.value.server_message == (
        "413 BadRequest: The maximum request length supported is 4MB."
    )


# -- looking up, checking ------------------------------------------------------------------


def test_find_sent_returns_none_when_absent(graph: FakeGraph, gateway: GraphGateway) -> None:
    """find_sent answers None when Sent Items holds no such Message-ID."""
    assert gateway.find_sent("<x@council.example>") is None


def test_find_sent_escapes_quotes_in_the_filter(gateway: GraphGateway) -> None:
    """A quote in a Message-ID is doubled in the OData filter literal."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        FakeGraph(MAILBOX, SECRET).install(rsps)
        gateway.find_sent("<o'brien@council.example>")
        query = parse_qs(urlsplit(rsps.calls[-1].request.url).query)
    assert query["$filter"] == ["internetMessageId eq '<o''brien@council.example>'"]


def test_check_reads_sent_items_and_sends_nothing(graph: FakeGraph, gateway: GraphGateway) -> None:
    """check() gets a token and reads the Sent Items folder."""
    assert gateway.check() == (
        f"graph: token for client {CLIENT_ID} accepted; mailbox {MAILBOX} reachable "
        "(0 messages in Sent Items)"
    )
    assert not graph.delivered and graph.operations("sendMail") == 0


# -- the identity platform -----------------------------------------------------------------


def test_refused_secret_is_authentication_failure_with_msal_words_and_no_secret(
    message: OutgoingMessage,
) -> None:
    """A wrong secret: permanent authentication failure, MSAL's words, never the secret."""
    with (
        fake_graph(MAILBOX, "the-right-secret") as graph,
        pytest.raises(PermanentGatewayError) as caught,
    ):
        Opened().gateway.send(message)
    error = caught.value
    assert error.failure is Failure.AUTHENTICATION
    assert error.server_message.startswith("invalid_client: AADSTS7000215: Invalid client secret")
    assert "Trace ID" not in error.server_message
    assert str(error).startswith(
        f"the identity platform at login.microsoftonline.com refused the credentials of app "
        f"{CLIENT_ID} in tenant {TENANT} (invalid_client: AADSTS7000215"
    )
    assert str(error).endswith(
        "; check the client secret (client_secret_env / "
        "client_secret_file): it may be wrong or expired"
    )
    assert SECRET not in str(error) and graph.token_requests == 1 and not graph.delivered


def test_unknown_tenant_is_an_authentication_failure(message: OutgoingMessage) -> None:
    """A tenant the identity platform does not know is permanent and names tenant_id."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(
            "GET",
            f"{PUBLIC_CLOUD}/{TENANT}/v2.0/.well-known/openid-configuration",
            status=400,
            json={
                "error": "invalid_tenant",
                "error_description": f"AADSTS90002: Tenant '{TENANT}' not found.\r\nTrace ID: 1",
                "error_codes": [90002],
            },
        )
        with pytest.raises(PermanentGatewayError) as caught:
            Opened().gateway.send(message)
    assert caught.value.failure is Failure.AUTHENTICATION
    assert str(caught.value) == (
        f"the identity platform at login.microsoftonline.com does not know tenant {TENANT} "
        f"(400 invalid_tenant: AADSTS90002: Tenant '{TENANT}' not found.); check tenant_id "
        "and authority"
    )


def test_identity_platform_unavailable_is_transient_with_its_retry_after(
    message: OutgoingMessage,
) -> None:
    """A 503 from the token endpoint is transient, with its status and Retry-After."""
    with fake_graph(MAILBOX, SECRET) as graph:
        graph.fail(
            "token",
            Fault(
                status=503,
                headers={**JSON, "Retry-After": "7"},
                body=json.dumps(
                    {
                        "error": "temporarily_unavailable",
                        "error_description": "AADSTS50196: The server is busy.\r\nTrace ID: 1",
                    }
                ),
            ),
        )
        with pytest.raises(TransientGatewayError) as caught:
            Opened().gateway.send(message)
    assert caught.value.retry_after == 7
    assert caught.value.server_message == (
        "503 temporarily_unavailable: AADSTS50196: The server is busy."
    )
    assert caught.value.failure is Failure.SERVER


def test_private_authority_is_asked_directly_without_instance_discovery(
    message: OutgoingMessage,
) -> None:
    """A non-Microsoft authority gets the token request; the public cloud is never asked."""
    authority = "https://login.test.example"
    with fake_graph(MAILBOX, SECRET, authority=authority, public_cloud_reachable=False) as graph:
        Opened(authority=authority, instance_discovery=False).gateway.send(message)
    assert graph.token_requests == 1 and graph.discovery_requests == 0
    assert len(graph.delivered) == 1


def test_discovery_failure_names_the_host_that_failed_and_the_fix(
    message: OutgoingMessage,
) -> None:
    """With discovery forced on a private authority, the error names the public cloud's host."""
    authority = "https://login.test.example"
    with (
        fake_graph(MAILBOX, SECRET, authority=authority, public_cloud_reachable=False) as graph,
        pytest.raises(TransientGatewayError) as caught,
    ):
        Opened(authority=authority, instance_discovery=True).gateway.send(message)
    assert str(caught.value) == (
        "cannot reach the identity platform at login.microsoftonline.com (ConnectionError) "
        "(asked by MSAL's instance discovery about authority https://login.test.example); for "
        "an authority that is not Microsoft's, set instance_discovery = false"
    )
    assert graph.token_requests == 0


# -- settings ------------------------------------------------------------------------------


def table(data: dict[str, Any], tmp_path: Path) -> Table:
    return Table(data, where="config t.toml: [gateway.graph]", base_dir=tmp_path)


BASE = {
    "mailbox": MAILBOX,
    "tenant_id": TENANT,
    "client_id": "c",
    "client_secret_env": "GRAPH_SECRET",
}


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPH_SECRET", SECRET)


@pytest.mark.usefixtures("secret_env")
def test_settings_from_table(tmp_path: Path) -> None:
    """A complete table gives settings; the secret comes from the environment, not the repr."""
    s = Settings.from_table(table(BASE, tmp_path))
    assert s.kind == "graph" and s.mailbox == MAILBOX and s.sent_item_wait == 3
    assert s.credentials.client_secret == SECRET and SECRET not in repr(s)
    assert s.base_url == GRAPH and s.scope == "https://graph.microsoft.com/.default"
    assert s.credentials.instance_discovery is True


@pytest.mark.usefixtures("secret_env")
@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"authority": "https://login.test.example"}, False),
        ({"authority": "https://login.microsoftonline.us"}, True),
        ({"authority": "https://login.test.example", "instance_discovery": True}, True),
        ({"instance_discovery": False}, False),
    ],
)
def test_instance_discovery_is_on_only_for_microsoft_hosts_unless_configured(
    tmp_path: Path, extra: dict[str, Any], expected: bool
) -> None:
    """instance_discovery defaults to whether the authority is Microsoft's; the key overrides."""
    s = Settings.from_table(table({**BASE, **extra}, tmp_path))
    assert s.credentials.instance_discovery is expected


@pytest.mark.usefixtures("secret_env")
@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"mailbox": None}, "mailbox: is required"),
        ({"tenant_id": None}, "tenant_id"),
        ({"tenant_id": "x/../common"}, "tenant_id: expected the directory (tenant) id"),
        ({"client_secret_env": None, "client_secret": "x"}, "client_secret: secrets are not"),
        ({"base_url": "http://x"}, "base_url"),
        ({"authority": "http://login.test.example"}, "authority: must be an https:// URL"),
        ({"instance_discovery": "no"}, "instance_discovery: expected true or false"),
        ({"sent_item_wait": -1}, "sent_item_wait: must be at least 0"),
        ({"scope": "x"}, "scope: unknown key"),
    ],
)
def test_bad_settings_are_config_errors(
    tmp_path: Path, change: dict[str, Any], problem: str
) -> None:
    """Each configuration mistake is a ConfigError naming the key."""
    data = {k: v for k, v in {**BASE, **change}.items() if v is not None}
    with pytest.raises(ConfigError, match=re.escape(problem)):
        Settings.from_table(table(data, tmp_path))


def test_small_form_arrives_with_its_exact_bytes(
    graph: FakeGraph, gateway: GraphGateway, message: OutgoingMessage
) -> None:
    """The MIME sent carries the form's exact bytes as its attachment."""
    gateway.send(message)
    [item] = graph.delivered
    assert graph.form_of(item) == message.attachment.data
