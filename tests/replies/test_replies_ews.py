"""The EWS source against a fake Exchange (``responses``) that answers as Exchange does.

The fake answers ``GetFolder`` (the inbox), ``FindItem`` with an ``IndexedPageItemView``
(``Offset``, ``MaxEntriesReturned``; the answer's ``IndexedPagingOffset``,
``TotalItemsInView`` and ``IncludesLastItemInRange``) and an ``IsGreaterThanOrEqualTo``
restriction on ``item:DateTimeReceived``, and ``GetItem`` with ``MimeContent`` — the shapes
of Microsoft's EWS reference (FindItem operation, GetItem operation) and exchangelib's own
recorded answers.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from xml.sax.saxutils import escape

import pytest
import requests
import responses
from defusedxml.ElementTree import fromstring
from replies_helpers import Sent, reply, run_cli, send_example

from mash_requests.config import Settings, load_settings
from mash_requests.errors import PermanentGatewayError
from mash_requests.replies import fetch_replies
from mash_requests.replies.sources.ews import EwsSource
from workspace import Workspace

ENDPOINT = "https://mail.testbury.gov.uk/EWS/Exchange.asmx"
MAILBOX = "mash@testbury.gov.uk"
PASSWORD = "ews-password-never-logged"
NS = {
    "s": "http://schemas.xmlsoap.org/soap/envelope/",
    "m": "http://schemas.microsoft.com/exchange/services/2006/messages",
    "t": "http://schemas.microsoft.com/exchange/services/2006/types",
}
HEADER = (
    '<s:Header><h:ServerVersionInfo xmlns:h="http://schemas.microsoft.com/exchange/services/'
    '2006/types" MajorVersion="15" MinorVersion="1" MajorBuildNumber="2375" '
    'MinorBuildNumber="7" Version="V2017_07_11"/></s:Header>'
)


def envelope(body: str) -> str:
    return (
        f'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{NS["s"]}">{HEADER}'
        f"<s:Body>{body}</s:Body></s:Envelope>"
    )


@dataclass
class FakeExchange:
    """An inbox served over EWS, recording every operation it was asked."""

    messages: list[dict[str, object]] = field(default_factory=list)
    operations: list[tuple[str, str]] = field(default_factory=list)
    fail_next: list[tuple[int, str]] = field(default_factory=list)

    def add(self, data: bytes, received: datetime, message_id: str) -> None:
        n = len(self.messages)
        self.messages.append(
            {
                "id": f"AAMkAGVmMDEz{n:05d}AAA=",
                "ck": f"CQAAABYAAAD{n:04d}",
                "received": received,
                "mid": message_id,
                "mime": data,
            }
        )

    def ops(self, name: str) -> list[str]:
        return [body for op, body in self.operations if op == name]

    def __call__(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        raw = request.body or b""
        body = raw.decode() if isinstance(raw, bytes) else str(raw)
        match = re.search(r"<m:(\w+)[ >]", body)
        operation = match.group(1) if match else "?"
        self.operations.append((operation, body))
        if self.fail_next:
            status, text = self.fail_next.pop(0)
            return status, {"Content-Type": "text/xml; charset=utf-8"}, text
        answer = {
            "GetFolder": self.get_folder,
            "FindItem": self.find_item,
            "GetItem": self.get_item,
        }[operation](body)
        return 200, {"Content-Type": "text/xml; charset=utf-8"}, answer

    def get_folder(self, body: str) -> str:
        return envelope(
            f'<m:GetFolderResponse xmlns:m="{NS["m"]}" xmlns:t="{NS["t"]}"><m:ResponseMessages>'
            '<m:GetFolderResponseMessage ResponseClass="Success">'
            "<m:ResponseCode>NoError</m:ResponseCode>"
            '<m:Folders><t:Folder><t:FolderId Id="INBOX-ID" ChangeKey="AQAAAB"/>'
            "<t:DisplayName>Inbox</t:DisplayName><t:TotalCount>0</t:TotalCount>"
            "<t:ChildFolderCount>0</t:ChildFolderCount><t:UnreadCount>0</t:UnreadCount></t:Folder>"
            "</m:Folders></m:GetFolderResponseMessage></m:ResponseMessages></m:GetFolderResponse>"
        )

    def find_item(self, body: str) -> str:
        root = fromstring(body)
        view = root.find(".//m:IndexedPageItemView", NS)
        assert view is not None
        offset, limit = int(view.get("Offset", "0")), int(view.get("MaxEntriesReturned", "1000"))
        chosen = sorted(self.messages, key=lambda m: m["received"])  # type: ignore[arg-type, return-value]
        restriction = root.find(".//t:IsGreaterThanOrEqualTo", NS)
        if restriction is not None:
            uri = restriction.find("t:FieldURI", NS)
            assert uri is not None and uri.get("FieldURI") == "item:DateTimeReceived"
            constant = restriction.find(".//t:Constant", NS)
            assert constant is not None
            since = datetime.fromisoformat(str(constant.get("Value")).replace("Z", "+00:00"))
            chosen = [m for m in chosen if m["received"] >= since]  # type: ignore[operator]
        page = chosen[offset : offset + limit]
        items = "".join(
            f'<t:Message><t:ItemId Id="{m["id"]}" ChangeKey="{m["ck"]}"/>'
            f"<t:DateTimeReceived>{m['received'].strftime('%Y-%m-%dT%H:%M:%SZ')}</t:DateTimeReceived>"  # type: ignore[attr-defined]
            f"<t:InternetMessageId>{escape(str(m['mid']))}</t:InternetMessageId></t:Message>"
            for m in page
        )
        end = offset + len(page)
        last = "true" if end >= len(chosen) else "false"
        return envelope(
            f'<m:FindItemResponse xmlns:m="{NS["m"]}" xmlns:t="{NS["t"]}"><m:ResponseMessages>'
            '<m:FindItemResponseMessage ResponseClass="Success">'
            "<m:ResponseCode>NoError</m:ResponseCode>"
            f'<m:RootFolder IndexedPagingOffset="{end}" TotalItemsInView="{len(chosen)}" '
            f'IncludesLastItemInRange="{last}"><t:Items>{items}</t:Items></m:RootFolder>'
            "</m:FindItemResponseMessage></m:ResponseMessages></m:FindItemResponse>"
        )

    def get_item(self, body: str) -> str:
        """GetItem answers with the properties asked for (exchangelib asks twice: first
        InternetMessageId and DateTimeReceived for the ids FindItem gave, then MimeContent)."""
        root = fromstring(body)
        wanted = [e.get("Id") for e in root.findall(".//m:ItemIds/t:ItemId", NS)]
        asked = {e.get("FieldURI") for e in root.findall(".//m:ItemShape//t:FieldURI", NS)}
        by_id = {m["id"]: m for m in self.messages}
        answers = []
        for item_id in wanted:
            m = by_id[item_id]
            parts = []
            if "item:MimeContent" in asked:
                mime = base64.b64encode(m["mime"]).decode()  # type: ignore[arg-type]
                parts.append(f'<t:MimeContent CharacterSet="UTF-8">{mime}</t:MimeContent>')
            parts.append(f'<t:ItemId Id="{m["id"]}" ChangeKey="{m["ck"]}"/>')
            if "item:DateTimeReceived" in asked:
                received = m["received"].strftime("%Y-%m-%dT%H:%M:%SZ")  # type: ignore[attr-defined]
                parts.append(f"<t:DateTimeReceived>{received}</t:DateTimeReceived>")
            if "message:InternetMessageId" in asked:
                parts.append(f"<t:InternetMessageId>{escape(str(m['mid']))}</t:InternetMessageId>")
            answers.append(
                '<m:GetItemResponseMessage ResponseClass="Success"><m:ResponseCode>NoError'
                f"</m:ResponseCode><m:Items><t:Message>{''.join(parts)}</t:Message></m:Items>"
                "</m:GetItemResponseMessage>"
            )
        return envelope(
            f'<m:GetItemResponse xmlns:m="{NS["m"]}" xmlns:t="{NS["t"]}"><m:ResponseMessages>'
            f"{''.join(answers)}</m:ResponseMessages></m:GetItemResponse>"
        )

    def downloaded(self) -> int:
        """How many messages' MIME was asked for."""
        return sum(
            len(fromstring(b).findall(".//m:ItemIds/t:ItemId", NS))
            for b in self.ops("GetItem")
            if "item:MimeContent" in b
        )


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
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_callback(responses.POST, ENDPOINT, callback=fake)
        yield fake


@pytest.fixture
def ews_config(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("MASH_TEST_EWS_PASSWORD", PASSWORD)
    with workspace.config.open("a", encoding="utf-8") as handle:
        handle.write(
            f'\n[replies]\nsource = "ews"\n\n[replies.ews]\nmailbox = "{MAILBOX}"\n'
            f'endpoint = "{ENDPOINT}"\nauth = "basic"\nusername = "svc-mash"\n'
            'password_env = "MASH_TEST_EWS_PASSWORD"\n'
        )
    return load_settings(workspace.config)


def _source(settings: Settings, sleeps: list[float] | None = None) -> EwsSource:
    assert settings.replies is not None
    sleeps = [] if sleeps is None else sleeps
    return EwsSource(settings.replies.reader, settings.retry, sleep=sleeps.append)  # type: ignore[arg-type]


def _deliver(exchange: FakeExchange, to: Sent, sender: str, n: int, received: datetime) -> None:
    message_id = f"<ews-reply-{n}@partner.example>"
    exchange.add(reply(to, sender=sender, message_id=message_id), received, message_id)


def test_find_item_is_paged_and_get_item_fetches_the_mime(
    workspace: Workspace, exchange: FakeExchange, ews_config: Settings
) -> None:
    """230 messages: FindItem pages of 100 until IncludesLastItemInRange, MIME by GetItem."""
    sent = send_example(workspace)
    now = datetime.now(UTC)
    for n in range(230):
        _deliver(
            exchange, sent["police"], "officer@testshire.police.uk", n, now - timedelta(minutes=n)
        )
    result = fetch_replies(ews_config, source=_source(ews_config))
    assert len(result.messages) == 230
    assert {m.request_ref for m in result.messages} == {sent["police"].request_ref}
    finds = exchange.ops("FindItem")
    offsets = [fromstring(b).find(".//m:IndexedPageItemView", NS).get("Offset") for b in finds]  # type: ignore[union-attr]
    assert offsets == ["0", "100", "200"]
    assert fromstring(finds[0]).find(".//t:IsGreaterThanOrEqualTo", NS) is not None
    assert exchange.downloaded() == 230


def test_recorded_messages_are_not_fetched_again(
    workspace: Workspace, exchange: FakeExchange, ews_config: Settings
) -> None:
    """FindItem's InternetMessageId says what is recorded; GetItem asks only for the new."""
    sent = send_example(workspace)
    _deliver(exchange, sent["police"], "officer@testshire.police.uk", 1, datetime.now(UTC))
    fetch_replies(ews_config, source=_source(ews_config))
    _deliver(exchange, sent["health"], "safeguarding@nhs.net", 2, datetime.now(UTC))
    result = fetch_replies(ews_config, source=_source(ews_config))
    assert (len(result.messages), result.already_seen) == (1, 1)
    assert exchange.downloaded() == 2


def test_server_busy_is_retried_after_its_back_off(
    workspace: Workspace, exchange: FakeExchange, ews_config: Settings
) -> None:
    """ErrorServerBusy with BackOffMilliseconds: wait that long, then the same call succeeds."""
    sent = send_example(workspace)
    _deliver(exchange, sent["police"], "officer@testshire.police.uk", 1, datetime.now(UTC))
    errors = "http://schemas.microsoft.com/exchange/services/2006/errors"
    words = "The server cannot service this request right now. Try again later."
    busy = envelope(
        f'<s:Fault><faultcode xmlns:a="{NS["t"]}">a:ErrorServerBusy</faultcode>'
        f"<faultstring>{words}</faultstring><detail>"
        f'<e:ResponseCode xmlns:e="{errors}">ErrorServerBusy</e:ResponseCode>'
        f'<e:Message xmlns:e="{errors}">{words}</e:Message>'
        f'<t:MessageXml xmlns:t="{NS["t"]}"><t:Value Name="BackOffMilliseconds">2500</t:Value>'
        "</t:MessageXml></detail></s:Fault>"
    )
    exchange.fail_next.append((500, busy))
    sleeps: list[float] = []
    result = fetch_replies(ews_config, source=_source(ews_config, sleeps))
    assert len(result.messages) == 1
    assert sleeps and sleeps[0] >= 2.5


def test_refused_credentials_are_permanent(
    workspace: Workspace, exchange: FakeExchange, ews_config: Settings
) -> None:
    """401 from Exchange: permanent, naming the credentials, no second login."""
    send_example(workspace)
    exchange.fail_next.append((401, ""))
    with pytest.raises(PermanentGatewayError, match="refused the credentials"):
        fetch_replies(ews_config, source=_source(ews_config))
    assert len(exchange.operations) == 1


def test_the_cli_reads_ews_by_config_alone(
    workspace: Workspace, exchange: FakeExchange, ews_config: Settings
) -> None:
    """mash-requests replies fetch with [replies] source = "ews" records the reply."""
    sent = send_example(workspace)
    _deliver(exchange, sent["health"], "safeguarding@nhs.net", 1, datetime.now(UTC))
    code, out, err = run_cli("replies", "fetch", "--config", str(workspace.config))
    assert code == 0, out + err
    assert out.startswith("ews: 1 new message(s)") and sent["health"].request_ref in out
    assert PASSWORD not in out + err
