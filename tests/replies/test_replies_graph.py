"""The Graph source against a fake Microsoft Graph (``responses``) that behaves as the service.

The fake serves ``GET /users/{mailbox}/mailFolders/inbox/messages`` honouring ``$filter``
(``receivedDateTime ge …``), ``$orderby``, ``$select`` and ``$top``, paging with
``@odata.nextLink`` (``$skip``), and ``GET /users/{mailbox}/messages/{id}/$value`` with the
message's MIME; answers follow Microsoft's documented shapes (List messages, Get MIME
content, throttling: 429 with a fractional ``Retry-After``, the error JSON).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
import responses
from replies_helpers import Sent, reply, send_example

from mash_requests.config import Settings, load_settings
from mash_requests.errors import PermanentGatewayError
from mash_requests.replies import fetch_replies
from mash_requests.replies.sources.graph import GraphSource
from workspace import Workspace

TENANT = "72aa88bf-76f0-494f-91ab-2d7cd730db47"
LOGIN = "https://login.microsoftonline.com"
GRAPH = "https://graph.microsoft.com/v1.0"
MAILBOX = "mash@testbury.gov.uk"
LIST_URL = f"{GRAPH}/users/{MAILBOX}/mailFolders/inbox/messages"
SECRET = "graph-secret-never-logged"


@dataclass
class FakeMailbox:
    """Messages in an inbox, served as Graph serves them."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    #: Answers to hand out before the real one, for the next list request.
    throttle: list[tuple[int, dict[str, str], str]] = field(default_factory=list)
    lists: list[requests.PreparedRequest] = field(default_factory=list)
    downloads: list[str] = field(default_factory=list)

    def add(self, data: bytes, received: datetime, message_id: str) -> None:
        item_id = f"AAMkAGI2TG93AAA{len(self.messages):04d}="
        self.messages.append(
            {"id": item_id, "received": received, "internetMessageId": message_id, "mime": data}
        )

    def list_messages(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        self.lists.append(request)
        if self.throttle:
            return self.throttle.pop(0)
        query = parse_qs(urlsplit(str(request.url)).query)
        chosen = sorted(self.messages, key=lambda m: m["received"])
        if "$filter" in query:
            field_, op, value = query["$filter"][0].split(" ", 2)
            assert (field_, op) == ("receivedDateTime", "ge"), query["$filter"]
            since = datetime.fromisoformat(value.replace("Z", "+00:00"))
            chosen = [m for m in chosen if m["received"] >= since]
        top = int(query.get("$top", ["10"])[0])
        skip = int(query.get("$skip", ["0"])[0])
        page = chosen[skip : skip + top]
        selected = query.get("$select", ["id,receivedDateTime,internetMessageId,subject"])[0].split(
            ","
        )
        values = []
        for m in page:
            item = {"@odata.etag": 'W/"CQAAABYAAAA"', "id": m["id"]}
            if "receivedDateTime" in selected:
                item["receivedDateTime"] = m["received"].strftime("%Y-%m-%dT%H:%M:%SZ")
            if "internetMessageId" in selected:
                item["internetMessageId"] = m["internetMessageId"]
            values.append(item)
        body: dict[str, Any] = {
            "@odata.context": f"{GRAPH}/$metadata#users('{MAILBOX}')/mailFolders('inbox')/messages"
            "(id,internetMessageId,receivedDateTime)",
            "value": values,
        }
        if skip + top < len(chosen):
            params = {k: v[0] for k, v in query.items()}
            params["$skip"] = str(skip + top)
            body["@odata.nextLink"] = f"{LIST_URL}?{urlencode(params)}"
        return 200, {"Content-Type": "application/json; odata.metadata=minimal"}, json.dumps(body)

    def get_value(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        item_id = str(request.url).split("/messages/", 1)[1].split("/$value")[0]
        from urllib.parse import unquote

        item_id = unquote(item_id)
        self.downloads.append(item_id)
        for m in self.messages:
            if m["id"] == item_id:
                return 200, {"Content-Type": "text/plain"}, m["mime"]
        error = {
            "error": {
                "code": "ErrorItemNotFound",
                "message": "The specified object was not found in the store.",
            }
        }
        return 404, {"Content-Type": "application/json"}, json.dumps(error).encode()


@pytest.fixture
def mailbox() -> Iterator[FakeMailbox]:
    fake = FakeMailbox()
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
        mock.add_callback(responses.GET, LIST_URL, callback=fake.list_messages)
        import re

        mock.add_callback(
            responses.GET,
            re.compile(rf"{re.escape(GRAPH)}/users/{MAILBOX}/messages/.+/\$value"),
            callback=fake.get_value,
        )
        yield fake


@pytest.fixture
def graph_config(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("MASH_TEST_GRAPH_SECRET", SECRET)
    with workspace.config.open("a", encoding="utf-8") as handle:
        handle.write(
            f'\n[replies]\nsource = "graph"\n\n[replies.graph]\nmailbox = "{MAILBOX}"\n'
            f'tenant_id = "{TENANT}"\nclient_id = "client-1"\n'
            'client_secret_env = "MASH_TEST_GRAPH_SECRET"\n'
        )
    return load_settings(workspace.config)


def _source(settings: Settings, sleeps: list[float]) -> GraphSource:
    from mash_requests.gateways.graph import TokenSource

    assert settings.replies is not None
    reader = settings.replies.reader
    tokens = TokenSource(reader.graph.credentials, reader.graph.scope, timeout=5)  # type: ignore[attr-defined]
    return GraphSource(reader, tokens, settings.retry, sleep=sleeps.append)  # type: ignore[arg-type]


def _deliver(mailbox: FakeMailbox, to: Sent, sender: str, n: int, received: datetime) -> None:
    message_id = f"<graph-reply-{n}@partner.example>"
    mailbox.add(reply(to, sender=sender, message_id=message_id), received, message_id)


def test_messages_are_listed_page_by_page_and_downloaded_as_mime(
    workspace: Workspace, mailbox: FakeMailbox, graph_config: Settings
) -> None:
    """250 messages over 3 pages: every page is read, every new message's MIME downloaded."""
    sent = send_example(workspace)
    now = datetime.now(UTC)
    for n in range(250):
        _deliver(
            mailbox, sent["police"], "officer@testshire.police.uk", n, now - timedelta(minutes=n)
        )
    result = fetch_replies(graph_config, source=_source(graph_config, []))
    assert len(result.messages) == 250 and all(
        m.request_ref == sent["police"].request_ref for m in result.messages
    )
    assert len(mailbox.lists) == 3
    assert len(mailbox.downloads) == 250
    first = parse_qs(urlsplit(str(mailbox.lists[0].url)).query)
    assert first["$select"] == ["id,internetMessageId,receivedDateTime"]
    assert first["$filter"][0].startswith("receivedDateTime ge ")
    assert mailbox.lists[0].headers["Authorization"] == "Bearer graph-token"


def test_the_filter_starts_a_day_before_the_last_fetch(
    workspace: Workspace, mailbox: FakeMailbox, graph_config: Settings
) -> None:
    """A second fetch asks only for what arrived since a day before the first one started."""
    sent = send_example(workspace)
    started = datetime.now(UTC)
    fetch_replies(graph_config, source=_source(graph_config, []))
    _deliver(mailbox, sent["police"], "officer@testshire.police.uk", 1, datetime.now(UTC))
    _deliver(mailbox, sent["police"], "officer@testshire.police.uk", 2, started - timedelta(days=3))
    result = fetch_replies(graph_config, source=_source(graph_config, []))
    query = parse_qs(urlsplit(str(mailbox.lists[-1].url)).query)
    since = datetime.fromisoformat(query["$filter"][0].split(" ge ")[1].replace("Z", "+00:00"))
    assert abs((started - timedelta(days=1) - since).total_seconds()) < 5
    assert [m.message_id for m in result.messages] == ["<graph-reply-1@partner.example>"]


def test_recorded_messages_are_not_downloaded_again(
    workspace: Workspace, mailbox: FakeMailbox, graph_config: Settings
) -> None:
    """The listing's internetMessageId says what is recorded: only new MIME is fetched."""
    sent = send_example(workspace)
    _deliver(mailbox, sent["police"], "officer@testshire.police.uk", 1, datetime.now(UTC))
    fetch_replies(graph_config, source=_source(graph_config, []))
    _deliver(mailbox, sent["health"], "safeguarding@nhs.net", 2, datetime.now(UTC))
    result = fetch_replies(graph_config, source=_source(graph_config, []))
    assert (len(result.messages), result.already_seen) == (1, 1)
    assert len(mailbox.downloads) == 2


def test_throttling_waits_the_servers_retry_after(
    workspace: Workspace, mailbox: FakeMailbox, graph_config: Settings
) -> None:
    """429 with Retry-After: 2.128 waits at least 2.128 s, then the same request succeeds."""
    sent = send_example(workspace)
    _deliver(mailbox, sent["police"], "officer@testshire.police.uk", 1, datetime.now(UTC))
    throttled = {
        "error": {
            "code": "ApplicationThrottled",
            "message": "Application is over its MailboxConcurrency limit.",
            "innerError": {"date": "2026-04-13T08:12:30", "request-id": "3f0b"},
        }
    }
    mailbox.throttle.append(
        (429, {"Retry-After": "2.128", "Content-Type": "application/json"}, json.dumps(throttled))
    )
    sleeps: list[float] = []
    result = fetch_replies(graph_config, source=_source(graph_config, sleeps))
    assert len(result.messages) == 1
    assert sleeps and sleeps[0] >= 2.128


def test_refused_credentials_are_permanent_and_not_retried(
    workspace: Workspace, mailbox: FakeMailbox, graph_config: Settings
) -> None:
    """401 from Graph: a PermanentGatewayError with Graph's words and the fix; one request."""
    send_example(workspace)
    unauthorised = {
        "error": {
            "code": "InvalidAuthenticationToken",
            "message": "Access token validation failure.",
        }
    }
    mailbox.throttle.append((401, {"Content-Type": "application/json"}, json.dumps(unauthorised)))
    with pytest.raises(PermanentGatewayError, match=r"InvalidAuthenticationToken.*check tenant_id"):
        fetch_replies(graph_config, source=_source(graph_config, []))
    assert len(mailbox.lists) == 1


def test_a_missing_permission_says_which(
    workspace: Workspace, mailbox: FakeMailbox, graph_config: Settings
) -> None:
    """403: the app needs Mail.Read for the mailbox."""
    send_example(workspace)
    denied = {
        "error": {
            "code": "ErrorAccessDenied",
            "message": "Access is denied. Check credentials and try again.",
        }
    }
    mailbox.throttle.append((403, {"Content-Type": "application/json"}, json.dumps(denied)))
    with pytest.raises(PermanentGatewayError, match=r"Mail\.Read application permission"):
        fetch_replies(graph_config, source=_source(graph_config, []))


def test_a_next_link_to_another_host_is_not_followed(
    workspace: Workspace, mailbox: FakeMailbox, graph_config: Settings
) -> None:
    """The bearer token never follows a link off Graph's host."""
    send_example(workspace)
    body = {"value": [], "@odata.nextLink": "https://attacker.example/steal?$skip=10"}
    mailbox.throttle.append((200, {"Content-Type": "application/json"}, json.dumps(body)))
    fetch_replies(graph_config, source=_source(graph_config, []))
    assert len(mailbox.lists) == 1


def test_the_cli_reads_graph_by_config_alone(
    workspace: Workspace, mailbox: FakeMailbox, graph_config: Settings
) -> None:
    """mash-requests replies fetch with [replies] source = "graph" records the reply."""
    from replies_helpers import run_cli

    sent = send_example(workspace)
    _deliver(mailbox, sent["health"], "safeguarding@nhs.net", 1, datetime.now(UTC))
    code, out, err = run_cli("replies", "fetch", "--config", str(workspace.config))
    assert code == 0, out + err
    assert out.startswith("graph: 1 new message(s)") and sent["health"].request_ref in out
    assert SECRET not in out + err
