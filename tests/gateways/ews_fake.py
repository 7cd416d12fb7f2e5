"""A fake Exchange 2016 EWS endpoint for the gateway tests, answering from recorded shapes.

Answers are per EWS operation (GetFolder, CreateItem, FindItem …), as exchangelib's SOAP
bodies name them, with the status, headers and body a real server (or the IIS / proxy in
front of it) sends: ``Connection: close``, ``WWW-Authenticate``, HTML error pages.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests
from gateway_helpers import reference_file

from mash_requests.gateways.ews import Settings

ENDPOINT = "https://mail.council.example/EWS/Exchange.asmx"
MAILBOX = "mash@council.example"
PASSWORD = "ews-password-never-logged"
TENANT = "72aa88bf-76f0-494f-91ab-2d7cd730db47"
NS = {
    "s": "http://schemas.xmlsoap.org/soap/envelope/",
    "m": "http://schemas.microsoft.com/exchange/services/2006/messages",
    "t": "http://schemas.microsoft.com/exchange/services/2006/types",
}

SERVER_VERSION = (
    '<s:Header><h:ServerVersionInfo xmlns:h="http://schemas.microsoft.com/exchange/services/'
    '2006/types" MajorVersion="15" MinorVersion="1" MajorBuildNumber="2375" '
    'MinorBuildNumber="7" Version="V2017_07_11"/></s:Header>'
)


def envelope(body: str) -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?><s:Envelope '
        f'xmlns:s="{NS["s"]}">{SERVER_VERSION}<s:Body>{body}</s:Body></s:Envelope>'
    )


def get_folder(folder_id: str, name: str) -> str:
    """A GetFolder answer (the shape of the MS docs sample, from an Exchange 2016 server)."""
    return envelope(
        f'<m:GetFolderResponse xmlns:m="{NS["m"]}" xmlns:t="{NS["t"]}"><m:ResponseMessages>'
        '<m:GetFolderResponseMessage ResponseClass="Success"><m:ResponseCode>NoError'
        f'</m:ResponseCode><m:Folders><t:Folder><t:FolderId Id="{folder_id}" ChangeKey="AQAAAB"/>'
        f"<t:DisplayName>{name}</t:DisplayName><t:TotalCount>7</t:TotalCount>"
        "<t:ChildFolderCount>0</t:ChildFolderCount><t:UnreadCount>0</t:UnreadCount></t:Folder>"
        "</m:Folders></m:GetFolderResponseMessage></m:ResponseMessages></m:GetFolderResponse>"
    )


def find_item(*item_ids: str) -> str:
    """A FindItem answer listing messages by id (Sent Items search)."""
    items = "".join(
        f'<t:Message><t:ItemId Id="{i}" ChangeKey="CQAAAB"/>'
        "<t:DateTimeSent>2026-11-02T10:00:00Z</t:DateTimeSent></t:Message>"
        for i in item_ids
    )
    return envelope(
        f'<m:FindItemResponse xmlns:m="{NS["m"]}" xmlns:t="{NS["t"]}"><m:ResponseMessages>'
        '<m:FindItemResponseMessage ResponseClass="Success"><m:ResponseCode>NoError'
        f'</m:ResponseCode><m:RootFolder TotalItemsInView="{len(item_ids)}" '
        f'IncludesLastItemInRange="true"><t:Items>{items}</t:Items></m:RootFolder>'
        "</m:FindItemResponseMessage></m:ResponseMessages></m:FindItemResponse>"
    )


#: An empty CreateItem success, inline, so the happy path runs without ../shared.
CREATED = envelope(
    f'<m:CreateItemResponse xmlns:m="{NS["m"]}" xmlns:t="{NS["t"]}"><m:ResponseMessages>'
    '<m:CreateItemResponseMessage ResponseClass="Success"><m:ResponseCode>NoError'
    "</m:ResponseCode><m:Items/></m:CreateItemResponseMessage></m:ResponseMessages>"
    "</m:CreateItemResponse>"
)


def recorded(relative: str) -> str:
    """A recorded answer; the 2007-era MS samples report version 8, which a 2016 fake must not."""
    return reference_file(relative).replace('MajorVersion="8"', 'MajorVersion="15"')


#: (status, body), (status, body, headers) or an exception raised as the transport's.
Answer = tuple[int, str] | tuple[int, str, dict[str, str]] | Exception
Reply = tuple[int, dict[str, str], str]


@dataclass
class FakeExchange:
    """Answers EWS operations from per-operation queues (the last answer repeats)."""

    answers: dict[str, list[Answer]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    #: Sees every request first (e.g. a sign-in handshake); its answer, if any, is given.
    gate: Callable[[requests.PreparedRequest], Reply | None] | None = None

    def __post_init__(self) -> None:
        self.answers.setdefault("GetFolder", [])
        self.answers.setdefault("CreateItem", [(200, CREATED)])
        self.answers.setdefault("FindItem", [(200, find_item())])

    def on(self, operation: str, *answers: Answer) -> None:
        self.answers[operation] = list(answers)

    def ops(self, name: str) -> list[str]:
        return [body for op, body, _ in self.requests if op == name]

    def __call__(self, request: requests.PreparedRequest) -> Reply:
        raw = request.body or b""
        body = raw.decode() if isinstance(raw, bytes) else str(raw)
        match = re.search(r"<m:(\w+)[ >]", body)
        operation = match.group(1) if match else "?"
        self.requests.append((operation, body, dict(request.headers)))
        gated = self.gate(request) if self.gate is not None else None
        if gated is not None:
            return gated
        if operation == "GetFolder" and not self.answers["GetFolder"]:
            if 'Id="root"' in body:
                return 200, {}, get_folder("ROOT-ID", "Top of Information Store")
            return 200, {}, get_folder("SENT-ID", "Sent Items")
        queue = self.answers[operation]
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            raise answer
        status, text, *extra = answer
        return (
            status,
            {"Content-Type": "text/xml; charset=utf-8", **(extra[0] if extra else {})},
            text,
        )


def basic_settings(**overrides: Any) -> Settings:
    """Settings for the fake endpoint with Basic auth (every request carries the login)."""
    values: dict[str, Any] = {
        "mailbox": MAILBOX,
        "endpoint": ENDPOINT,
        "auth": "basic",
        "username": "COUNCIL\\svc-mash",
        "password": PASSWORD,
    }
    values.update(overrides)
    return Settings(**values)
