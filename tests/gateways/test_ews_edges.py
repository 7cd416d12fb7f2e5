"""The EWS gateway at its edges: refused logins, the server's waits, the server's own words.

The fake answers as Exchange behind IIS (or a proxy) does: a 401 with its challenges and
IIS's page, with or without ``Connection: close``; ErrorServerBusy as a SOAP fault or inside
a response message, with or without BackOffMilliseconds; HTTP.sys's 503 page.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator

import pytest
import requests
import responses
from ews_fake import (
    CREATED,
    ENDPOINT,
    MAILBOX,
    NS,
    PASSWORD,
    TENANT,
    FakeExchange,
    Reply,
    basic_settings,
    envelope,
    find_item,
    recorded,
)
from gateway_helpers import build_message

from mash_requests.errors import (
    AmbiguousGatewayError,
    Failure,
    PermanentGatewayError,
    TransientGatewayError,
)
from mash_requests.gateways.base import OutgoingMessage
from mash_requests.gateways.ews import EwsGateway, Settings
from mash_requests.retry import (
    AttemptFailure,
    RetryPolicy,
    SendResult,
    SendStatus,
    WaitSource,
    send_with_retry,
)

#: Five attempts allowed, 1 s first wait, no jitter: any retry would show.
POLICY = RetryPolicy(max_attempts=5, max_seconds=600, initial_wait=1, max_wait=60, jitter=0)
TOKEN_URL = f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token"

#: IIS's page for a refused login, and the headers it sends with it.
IIS_401_PAGE = (
    '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/'
    'DTD/xhtml1-strict.dtd"><html xmlns="http://www.w3.org/1999/xhtml"><head><meta '
    'http-equiv="Content-Type" content="text/html; charset=iso-8859-1"/><title>401 - '
    'Unauthorized: Access is denied due to invalid credentials.</title><style type="text/css">'
    'body{margin:0;font-size:.7em;}</style></head><body><div id="header"><h1>Server Error'
    '</h1></div><div id="content"><h2>401 - Unauthorized: Access is denied due to invalid '
    "credentials.</h2><h3>You do not have permission to view this directory or page using the "
    "credentials that you supplied.</h3></div></body></html>"
)
IIS_401_HEADERS = {
    "Content-Type": "text/html",
    "WWW-Authenticate": 'Negotiate, NTLM, Basic realm="mail.council.example"',
    "Server": "Microsoft-IIS/10.0",
    "X-Powered-By": "ASP.NET",
}
#: HTTP.sys's page when the EWS application pool is down.
HTTPSYS_503_PAGE = (
    '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01//EN""http://www.w3.org/TR/html4/strict.dtd">'
    '\r\n<HTML><HEAD><TITLE>Service Unavailable</TITLE>\r\n<META HTTP-EQUIV="Content-Type" '
    'Content="text/html; charset=us-ascii"></HEAD>\r\n<BODY><h2>Service Unavailable</h2>\r\n'
    "<hr><p>HTTP Error 503. The service is unavailable.</p>\r\n</BODY></HTML>\r\n"
)
HTTPSYS_503_HEADERS = {
    "Content-Type": "text/html; charset=us-ascii",
    "Server": "Microsoft-HTTPAPI/2.0",
    "Connection": "close",
}
REFUSED_WORDS = (
    "HTTP 401 Unauthorized: 401 - Unauthorized: Access is denied due to invalid credentials."
)


@pytest.fixture(autouse=True)
def _fresh_protocols() -> Iterator[None]:
    """exchangelib caches protocols per endpoint and credentials; start each test clean."""
    from exchangelib.protocol import close_connections

    close_connections()
    yield
    close_connections()


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    # Anything not mocked (another host, another path) fails the request: no network.
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def exchange(rsps: responses.RequestsMock) -> FakeExchange:
    fake = FakeExchange()
    rsps.add_callback(responses.POST, ENDPOINT, callback=fake)
    return fake


@pytest.fixture
def gateway() -> Iterator[EwsGateway]:
    gw = basic_settings().open()
    yield gw
    gw.close()


@pytest.fixture
def message() -> OutgoingMessage:
    return build_message()


def run(gateway: EwsGateway, message: OutgoingMessage) -> tuple[SendResult, list[float]]:
    """send_with_retry under POLICY; the sleeps it asked for instead of sleeping."""
    sleeps: list[float] = []
    failures: list[AttemptFailure] = []
    result = send_with_retry(
        gateway, message, POLICY, on_failure=failures.append, sleep=sleeps.append
    )
    return result, sleeps


def refusal(close: bool = True) -> tuple[int, str, dict[str, str]]:
    """IIS's 401 for a refused login; with ``Connection: close`` as a proxy in front sends."""
    headers = dict(IIS_401_HEADERS)
    if close:
        headers["Connection"] = "close"
    return 401, IIS_401_PAGE, headers


# -- a refused login is never retried ------------------------------------------------------


@pytest.mark.parametrize("close", [True, False], ids=["connection-close", "keep-alive"])
def test_refused_login_is_one_attempt_and_one_request(
    exchange: FakeExchange, gateway: EwsGateway, message: OutgoingMessage, close: bool
) -> None:
    """A 401, with or without Connection: close, fails at once: one request, no wait."""
    exchange.on("GetFolder", refusal(close))
    result, sleeps = run(gateway, message)
    assert result.status is SendStatus.FAILED and result.attempts == 1
    assert result.failure is Failure.AUTHENTICATION and result.error_class == "permanent"
    assert sleeps == []
    assert len(exchange.requests) == 1


def test_refused_login_reads_as_the_credentials_were_refused(
    exchange: FakeExchange, gateway: EwsGateway, message: OutgoingMessage
) -> None:
    """The error says whose credentials Exchange refused, IIS's words, and what to check."""
    exchange.on("GetFolder", refusal())
    with pytest.raises(PermanentGatewayError) as caught:
        gateway.send(message)
    assert str(caught.value) == (
        f"Exchange refused the credentials for {MAILBOX} (user COUNCIL\\svc-mash) while "
        f"opening Sent Items: {REFUSED_WORDS.rstrip('.')}; check username and password_env "
        "(or password_file)"
    )
    assert caught.value.server_message == REFUSED_WORDS
    assert PASSWORD not in str(caught.value)


def test_refused_login_on_create_item_is_not_ambiguous(
    exchange: FakeExchange, gateway: EwsGateway, message: OutgoingMessage
) -> None:
    """A 401 to the CreateItem itself (password changed mid-run) was not sent: no lookup."""
    exchange.on("CreateItem", refusal())
    result, sleeps = run(gateway, message)
    assert result.status is SendStatus.FAILED and result.failure is Failure.AUTHENTICATION
    assert len(exchange.ops("CreateItem")) == 1
    assert exchange.ops("FindItem") == [] and sleeps == []


def test_locked_out_account_is_a_refused_login_saying_so(
    exchange: FakeExchange, gateway: EwsGateway, message: OutgoingMessage
) -> None:
    """Exchange's "account is currently locked out" page is a refused login with that fix."""
    page = (
        "<html><head><title>The referenced account is currently locked out and may not be "
        "logged on to.</title></head><body></body></html>"
    )
    exchange.on("GetFolder", (500, page, {"Content-Type": "text/html"}))
    with pytest.raises(PermanentGatewayError) as caught:
        gateway.send(message)
    assert caught.value.failure is Failure.AUTHENTICATION
    assert "currently locked out" in caught.value.server_message
    assert "the account is locked out: have it unlocked" in str(caught.value)


def test_transport_error_carrying_401_is_a_refused_login(
    exchange: FakeExchange, gateway: EwsGateway, message: OutgoingMessage
) -> None:
    """An exchangelib TransportError quoting a 401 (no answer kept) is a refused login."""
    from exchangelib.errors import MalformedResponseError

    failure = MalformedResponseError("Unknown failure in response. Code: 401 headers: {}")
    exchange.on("GetFolder", failure)
    result, sleeps = run(gateway, message)
    assert result.status is SendStatus.FAILED and result.failure is Failure.AUTHENTICATION
    assert result.server_message == "HTTP 401" and sleeps == []


def test_after_a_refused_login_the_gateway_contacts_nothing(
    exchange: FakeExchange, gateway: EwsGateway, message: OutgoingMessage
) -> None:
    """Sends, look-ups and checks after a refused login fail alike without a request."""
    exchange.on("GetFolder", refusal())
    with pytest.raises(PermanentGatewayError) as first:
        gateway.send(message)
    for call in (
        lambda: gateway.send(build_message(request_ref="RFI-2026-0002")),
        lambda: gateway.find_sent(message.message_id),
        gateway.check,
    ):
        with pytest.raises(PermanentGatewayError) as again:
            call()
        assert str(again.value) == str(first.value)
        assert again.value.failure is Failure.AUTHENTICATION
    assert len(exchange.requests) == 1


def test_refused_login_is_recognised_by_a_gateway_sharing_its_protocol(
    exchange: FakeExchange, message: OutgoingMessage
) -> None:
    """Two gateways for one account share exchangelib's protocol; each still sees the 401."""
    first, second = basic_settings().open(), basic_settings().open()
    try:
        first.send(message)
        second.send(build_message(request_ref="RFI-2026-0002"))  # now the protocol's policy
        exchange.on("CreateItem", refusal())
        with pytest.raises(PermanentGatewayError) as caught:
            first.send(build_message(request_ref="RFI-2026-0003"))
    finally:
        first.close()
        second.close()
    assert caught.value.failure is Failure.AUTHENTICATION
    assert caught.value.server_message == REFUSED_WORDS


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


def test_refused_client_secret_is_one_token_request_for_the_run(
    rsps: responses.RequestsMock, exchange: FakeExchange, message: OutgoingMessage
) -> None:
    """invalid_client from the identity platform: one token request, never retried."""
    token = rsps.add(
        responses.POST,
        TOKEN_URL,
        status=401,
        json={
            "error": "invalid_client",
            "error_description": "AADSTS7000215: Invalid client secret provided. Ensure the "
            "secret being sent in the request is the client secret value.\r\nTrace ID: 9c1",
            "error_codes": [7000215],
        },
    )
    gw = oauth_settings().open()
    try:
        result, sleeps = run(gw, message)
        with pytest.raises(PermanentGatewayError):
            gw.send(build_message(request_ref="RFI-2026-0002"))
    finally:
        gw.close()
    assert result.status is SendStatus.FAILED and result.failure is Failure.AUTHENTICATION
    assert result.attempts == 1 and sleeps == []
    assert token.call_count == 1 and exchange.requests == []


def test_refused_client_secret_reads_as_the_token_request_was_refused(
    rsps: responses.RequestsMock, exchange: FakeExchange, message: OutgoingMessage
) -> None:
    """The error names the app, the identity platform's code and words, and what to check."""
    rsps.add(
        responses.POST,
        TOKEN_URL,
        status=401,
        json={
            "error": "invalid_client",
            "error_description": "AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 9c1",
        },
    )
    gw = oauth_settings().open()
    with pytest.raises(PermanentGatewayError) as caught:
        gw.send(message)
    assert str(caught.value) == (
        "Microsoft's identity platform (login.microsoftonline.com) refused the token request "
        "of app client-id-1 for EWS: invalid_client: AADSTS7000215: Invalid client secret "
        "provided; check tenant_id, client_id and client_secret_env (or client_secret_file)"
    )
    assert "oauth-secret-never-logged" not in str(caught.value)


def test_token_refused_by_exchange_is_a_refused_login_with_its_diagnostics(
    rsps: responses.RequestsMock, exchange: FakeExchange, message: OutgoingMessage
) -> None:
    """Exchange's 401 to a token (Bearer challenge, x-ms-diagnostics) is a refused login."""
    rsps.add(
        responses.POST,
        TOKEN_URL,
        json={"token_type": "Bearer", "expires_in": 3599, "access_token": "ews-token"},
    )
    exchange.on(
        "GetFolder",
        (
            401,
            "",
            {
                "WWW-Authenticate": 'Bearer client_id="00000002-0000-0ff1-ce00-000000000000", '
                'token_types="app_asserted_user_v1 service_asserted_app_v1", '
                'error="invalid_token"',
                "x-ms-diagnostics": '2000008;reason="The token has expired.";'
                'error_category="invalid_token"',
            },
        ),
    )
    gw = oauth_settings().open()
    try:
        result, _ = run(gw, message)
    finally:
        gw.close()
    assert result.status is SendStatus.FAILED and result.failure is Failure.AUTHENTICATION
    assert result.server_message == "HTTP 401 Unauthorized (The token has expired.)"
    assert len(exchange.requests) == 1


# -- NTLM -----------------------------------------------------------------------------------


def ntlm_challenge() -> bytes:
    """An NTLM CHALLENGE_MESSAGE (MS-NLMP 2.2.1.2) as Exchange's IIS sends it."""

    def av_pair(av_id: int, value: bytes) -> bytes:
        return struct.pack("<HH", av_id, len(value)) + value

    target = "COUNCIL".encode("utf-16-le")
    info = (
        av_pair(2, target) + av_pair(1, "EX01".encode("utf-16-le")) + av_pair(0, b"")
    )  # NbDomainName, NbComputerName, EOL
    # UNICODE | REQUEST_TARGET | NTLM | ALWAYS_SIGN | TARGET_TYPE_DOMAIN | EXTENDED_SESSION
    # SECURITY | TARGET_INFO | 128 | 56
    flags = 0x1 | 0x4 | 0x200 | 0x8000 | 0x10000 | 0x80000 | 0x800000 | 0x20000000 | 0x80000000
    header = 48
    return (
        b"NTLMSSP\x00"
        + struct.pack("<I", 2)
        + struct.pack("<HHI", len(target), len(target), header)
        + struct.pack("<I", flags)
        + bytes.fromhex("0123456789abcdef")  # server challenge
        + bytes(8)  # reserved
        + struct.pack("<HHI", len(info), len(info), header + len(target))
        + target
        + info
    )


class NtlmIis:
    """IIS's NTLM sign-in: 401 to an anonymous request, a challenge to NEGOTIATE, and an
    answer to AUTHENTICATE (here always refused). Counts the AUTHENTICATE messages, which
    are the logins a domain controller counts towards a lock-out."""

    def __init__(self, challenge: dict[str, str] | None = None) -> None:
        #: Headers answering NEGOTIATE; the default carries the challenge.
        self.challenge = challenge
        self.authenticates = 0

    def __call__(self, request: requests.PreparedRequest) -> Reply:
        scheme, _, token = str(request.headers.get("Authorization", "")).partition(" ")
        if scheme != "NTLM":
            return 401, {"WWW-Authenticate": "Negotiate, NTLM", "Content-Length": "0"}, ""
        kind = struct.unpack("<I", base64.b64decode(token)[8:12])[0]
        if kind == 1:  # NEGOTIATE
            challenge = "NTLM " + base64.b64encode(ntlm_challenge()).decode()
            return 401, self.challenge or {"WWW-Authenticate": challenge}, ""
        self.authenticates += 1
        return 401, dict(IIS_401_HEADERS), IIS_401_PAGE


@pytest.fixture
def no_channel_binding(monkeypatch: pytest.MonkeyPatch) -> None:
    """``responses`` answers without a TLS socket, so there is no certificate to bind to."""
    from requests_ntlm import requests_ntlm

    monkeypatch.setattr(requests_ntlm.HttpNtlmAuth, "_get_server_cert", lambda self, r: None)


@pytest.mark.usefixtures("no_channel_binding")
def test_ntlm_refusal_is_one_sign_in(exchange: FakeExchange, message: OutgoingMessage) -> None:
    """Wrong NTLM credentials: one AUTHENTICATE message reaches IIS, and no retry follows."""
    iis = NtlmIis()
    exchange.gate = iis
    gw = basic_settings(auth="ntlm").open()
    try:
        result, sleeps = run(gw, message)
    finally:
        gw.close()
    assert result.status is SendStatus.FAILED and result.failure is Failure.AUTHENTICATION
    assert result.attempts == 1 and sleeps == []
    assert iis.authenticates == 1
    assert result.server_message == REFUSED_WORDS


@pytest.mark.usefixtures("no_channel_binding")
@pytest.mark.parametrize(
    "answer",
    [{"WWW-Authenticate": "Negotiate"}, {"Content-Length": "0"}],
    ids=["kerberos-only", "no-challenge-header"],
)
def test_ntlm_without_a_challenge_is_a_refused_sign_in(
    exchange: FakeExchange, message: OutgoingMessage, answer: dict[str, str]
) -> None:
    """An answer to NTLM NEGOTIATE with no NTLM challenge is permanent, naming what to check."""
    iis = NtlmIis(challenge=answer)
    exchange.gate = iis
    gw = basic_settings(auth="ntlm").open()
    try:
        result, sleeps = run(gw, message)
    finally:
        gw.close()
    assert result.status is SendStatus.FAILED and result.failure is Failure.AUTHENTICATION
    assert sleeps == [] and iis.authenticates == 0
    with pytest.raises(PermanentGatewayError, match="carried no NTLM challenge; check that"):
        gw.send(message)


# -- waits come from the server or from our policy ----------------------------------------


def busy_response_message(back_off_ms: int | None) -> str:
    """ErrorServerBusy inside a CreateItem response message, as Exchange throttles a batch."""
    xml = (
        f'<m:MessageXml><t:Value Name="BackOffMilliseconds">{back_off_ms}</t:Value></m:MessageXml>'
        if back_off_ms is not None
        else ""
    )
    return envelope(
        f'<m:CreateItemResponse xmlns:m="{NS["m"]}" xmlns:t="{NS["t"]}"><m:ResponseMessages>'
        '<m:CreateItemResponseMessage ResponseClass="Error"><m:MessageText>The server cannot '
        "service this request right now. Try again later.</m:MessageText><m:ResponseCode>"
        f"ErrorServerBusy</m:ResponseCode><m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>{xml}"
        "<m:Items/></m:CreateItemResponseMessage></m:ResponseMessages></m:CreateItemResponse>"
    )


def busy_fault_without_back_off() -> str:
    """The recorded ErrorServerBusy SOAP fault with its MessageXml (the back-off) removed."""
    fault = recorded(
        "ews/exchangelib_tests/test_services__ServicesTest__test_error_server_busy__1.xml"
    )
    start, end = fault.index("<t:MessageXml"), fault.index("</t:MessageXml>")
    return fault[:start] + fault[end + len("</t:MessageXml>") :]


def test_busy_response_message_with_back_off_waits_that_long(
    exchange: FakeExchange, gateway: EwsGateway, message: OutgoingMessage
) -> None:
    """BackOffMilliseconds in a response message is the server's hint: 5000 ms waits 5 s."""
    exchange.on("CreateItem", (200, busy_response_message(5000)), (200, CREATED))
    result, sleeps = run(gateway, message)
    assert result.status is SendStatus.SENT and sleeps == [5.0]
    assert len(exchange.ops("CreateItem")) == 2


@pytest.mark.parametrize(
    "answer",
    [(200, busy_response_message(None)), (500, busy_fault_without_back_off())],
    ids=["response-message", "soap-fault"],
)
def test_busy_without_back_off_has_no_server_hint(
    exchange: FakeExchange,
    gateway: EwsGateway,
    message: OutgoingMessage,
    answer: tuple[int, str],
) -> None:
    """ErrorServerBusy without BackOffMilliseconds carries no hint (not exchangelib's 10 s)."""
    exchange.on("CreateItem", answer)
    with pytest.raises(TransientGatewayError) as caught:
        gateway.send(message)
    assert caught.value.retry_after is None
    assert caught.value.server_message.startswith("ErrorServerBusy: The server cannot service")


def test_busy_without_back_off_waits_the_policy_wait(
    exchange: FakeExchange, gateway: EwsGateway, message: OutgoingMessage
) -> None:
    """Without the server's hint the wait is the [retry] policy's first wait (1 s), not 10 s."""
    exchange.on("CreateItem", (200, busy_response_message(None)), (200, CREATED))
    result, sleeps = run(gateway, message)
    assert result.status is SendStatus.SENT and sleeps == [1.0]


@pytest.mark.parametrize(
    ("answer", "wait", "source"),
    [
        ((200, busy_response_message(5000)), 5.0, WaitSource.SERVER),
        ((200, busy_response_message(None)), 1.0, WaitSource.POLICY),
        ((500, busy_fault_without_back_off()), 1.0, WaitSource.POLICY),
    ],
    ids=["back-off-sent", "response-message-without", "soap-fault-without"],
)
def test_busy_wait_is_recorded_as_the_servers_only_when_exchange_sent_one(
    exchange: FakeExchange,
    gateway: EwsGateway,
    message: OutgoingMessage,
    answer: tuple[int, str],
    wait: float,
    source: WaitSource,
) -> None:
    """The failed attempt the log records says whose wait it was: Exchange's, else the policy's."""
    exchange.on("CreateItem", answer, (200, CREATED))
    failures: list[AttemptFailure] = []
    result = send_with_retry(
        gateway, message, POLICY, on_failure=failures.append, sleep=lambda seconds: None
    )
    assert result.status is SendStatus.SENT
    assert [(f.wait_seconds, f.wait_from) for f in failures] == [(wait, source)]


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_header_is_the_servers_hint(
    exchange: FakeExchange, gateway: EwsGateway, message: OutgoingMessage, status: int
) -> None:
    """A 429 or 503 with Retry-After before sending carries that wait as the server's hint."""
    exchange.on("GetFolder", (status, "", {"Retry-After": "7", "Content-Length": "0"}))
    with pytest.raises(TransientGatewayError) as caught:
        gateway.send(message)
    assert caught.value.retry_after == 7.0


# -- the server's words are the server's ---------------------------------------------------


def test_iis_503_page_is_reported_with_its_status_and_text(
    exchange: FakeExchange, gateway: EwsGateway, message: OutgoingMessage
) -> None:
    """HTTP.sys's 503 page with Connection: close gives its status and its own text."""
    exchange.on("GetFolder", (503, HTTPSYS_503_PAGE, HTTPSYS_503_HEADERS))
    with pytest.raises(TransientGatewayError) as caught:
        gateway.send(message)
    words = "HTTP 503 Service Unavailable: HTTP Error 503. The service is unavailable."
    assert caught.value.server_message == words
    assert str(caught.value) == f"Exchange is unavailable (opening Sent Items): {words[:-1]}"


def test_iis_503_page_never_logs_a_library_internal(
    exchange: FakeExchange, gateway: EwsGateway, message: OutgoingMessage
) -> None:
    """Every logged attempt of a 503 page carries its words, never exchangelib's 'root'."""
    exchange.on("GetFolder", (503, HTTPSYS_503_PAGE, HTTPSYS_503_HEADERS))
    failures: list[AttemptFailure] = []
    send_with_retry(gateway, message, POLICY, on_failure=failures.append, sleep=lambda s: None)
    assert len(failures) == POLICY.max_attempts
    assert {f.server_message for f in failures} == {
        "HTTP 503 Service Unavailable: HTTP Error 503. The service is unavailable."
    }


def test_503_page_to_create_item_is_looked_up_before_any_resend(
    exchange: FakeExchange, gateway: EwsGateway, message: OutgoingMessage
) -> None:
    """A 503 page answering CreateItem is ambiguous, with its words; Sent Items decides."""
    exchange.on("CreateItem", (503, HTTPSYS_503_PAGE, HTTPSYS_503_HEADERS))
    exchange.on("FindItem", (200, find_item("SENT-ITEM-1")))
    with pytest.raises(AmbiguousGatewayError) as caught:
        gateway.send(message)
    assert caught.value.server_message.startswith("HTTP 503 Service Unavailable: HTTP Error 503")
    result, _ = run(gateway, message)
    assert result.status is SendStatus.SENT
    assert len(exchange.ops("CreateItem")) == 2  # the first send here, one more in run()
    assert len(exchange.ops("FindItem")) == 1


def test_long_error_page_words_are_bounded(
    exchange: FakeExchange, gateway: EwsGateway, message: OutgoingMessage
) -> None:
    """A page's text is cut to a bounded length on one line, its scripts left out."""
    page = (
        "<html><head><script>var secret = 1;</script></head><body><p>"
        + "Proxy failure\n" * 500
        + "</p></body></html>"
    )
    exchange.on("GetFolder", (502, page, {"Content-Type": "text/html"}))
    with pytest.raises(TransientGatewayError) as caught:
        gateway.send(message)
    words = caught.value.server_message
    assert words.startswith("HTTP 502 Bad Gateway: Proxy failure Proxy failure")
    assert len(words) <= 230 and "\n" not in words and "secret" not in words


def test_plain_text_answer_gives_its_first_line(
    exchange: FakeExchange, gateway: EwsGateway, message: OutgoingMessage
) -> None:
    """A plain-text error from a proxy gives its first line after the status."""
    text = "upstream connect error or disconnect/reset before headers\nreset reason: overflow"
    exchange.on("GetFolder", (503, text, {"Content-Type": "text/plain"}))
    with pytest.raises(TransientGatewayError) as caught:
        gateway.send(message)
    assert caught.value.server_message == (
        "HTTP 503 Service Unavailable: upstream connect error or disconnect/reset before headers"
    )
