"""Fake mail systems for the gateway-switch tests, each speaking its gateway's real wire.

Every fake offers the same three things, so a test changes gateway by config alone:
``config`` (the ``[gateway]`` TOML to append to the workspace's config), ``secrets`` (the
environment variables that config names) and ``arrivals()`` (every message that reached
the fake mail system, in order, whatever answer it was given).

- outbox: the ``.eml`` files in a folder;
- smtp: a real aiosmtpd server on 127.0.0.1 with STARTTLS (a trustme CA) and AUTH LOGIN;
- graph: gateways/graph_fake.py: ``responses`` answering the Entra ID token endpoint and
  Graph's sendMail, draft, upload and Sent Items calls in the recorded wire format
  (``../shared/reference/graph``), keeping the mailbox's Drafts and Sent Items;
- ews: ``responses`` answering exchangelib's SOAP calls with recorded Exchange answers
  (``../shared/reference/ews``), FindItem built in the same shape.

Graph and EWS keep Sent Items honestly: a lookup finds a message only if its send reached
the fake, so the "found in Sent Items" paths prove something.
"""

from __future__ import annotations

import base64
import email
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol

import requests
import responses
import trustme
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session
from defusedxml.ElementTree import fromstring

from gateways.gateway_helpers import REFERENCE
from gateways.graph_fake import CLIENT_ID as GRAPH_CLIENT_ID
from gateways.graph_fake import TENANT, FakeGraph, fake_graph
from gateways.smtp_server import (
    PASSWORD,
    USER,
    FaultyHandler,
    Server,
    authenticator,
    server_context,
    start,
)

#: The sending mailbox of the workspace config (``[mash] sender``).
MAILBOX = "mash@testbury.gov.uk"
GATEWAYS = ("outbox", "smtp", "graph", "ews")

#: A ``responses`` callback's answer: status, headers, body.
Reply = tuple[int, dict[str, str], str]

GRAPH_SECRET = "graph-client-secret-never-shown"
EWS_ENDPOINT = "https://mail.testbury.gov.uk/EWS/Exchange.asmx"
EWS_PASSWORD = "ews-password-never-shown"

NS = {
    "s": "http://schemas.xmlsoap.org/soap/envelope/",
    "m": "http://schemas.microsoft.com/exchange/services/2006/messages",
    "t": "http://schemas.microsoft.com/exchange/services/2006/types",
}


def toml_string(value: object) -> str:
    """A TOML basic string (JSON's escaping is TOML's for these ASCII values)."""
    return json.dumps(str(value))


@dataclass(frozen=True)
class Arrival:
    """One message as it reached the fake mail system."""

    request_ref: str
    message_id: str
    recipients: tuple[str, ...]
    subject: str
    form: bytes


class FakeMailSystem(Protocol):
    kind: str
    config: str
    secrets: dict[str, str]

    def arrivals(self) -> list[Arrival]: ...


def _from_mime(data: bytes, recipients: tuple[str, ...] | None = None) -> Arrival:
    message = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    [form] = list(message.iter_attachments())
    content = form.get_content()
    assert isinstance(content, bytes)
    to = tuple(address.strip() for address in str(message["To"]).split(","))
    return Arrival(
        request_ref=str(message["X-MASH-Request-Ref"]),
        message_id=str(message["Message-ID"]),
        recipients=recipients if recipients is not None else to,
        subject=str(message["Subject"]),
        form=content,
    )


# -- outbox -------------------------------------------------------------------------------


@dataclass
class OutboxFake:
    folder: Path
    kind: str = "outbox"
    secrets: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> str:
        return f'\n[gateway]\ntype = "outbox"\n\n[gateway.outbox]\nfolder = "{self.folder.name}"\n'

    def arrivals(self) -> list[Arrival]:
        files = sorted(self.folder.glob("*.eml"), key=lambda path: path.stat().st_mtime_ns)
        return [_from_mime(path.read_bytes()) for path in files]


# -- SMTP ---------------------------------------------------------------------------------


@dataclass
class RecordingHandler(FaultyHandler):
    """A FaultyHandler that keeps every message whose DATA arrived, answered or not."""

    received: list[tuple[tuple[str, ...], bytes]] = field(default_factory=list)

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.original_content, bytes)
        self.received.append((tuple(envelope.rcpt_tos), envelope.original_content))
        return await super().handle_DATA(server, session, envelope)


@dataclass
class SmtpFake:
    server: Server
    handler: RecordingHandler
    ca_file: Path
    kind: str = "smtp"
    secrets: dict[str, str] = field(default_factory=lambda: {"TEST_SMTP_PASSWORD": PASSWORD})

    @property
    def config(self) -> str:
        return (
            '\n[gateway]\ntype = "smtp"\n\n[gateway.smtp]\nhost = "127.0.0.1"\n'
            f'port = {self.server.port}\nsecurity = "starttls"\n'
            f"ca_file = {toml_string(self.ca_file)}\n"
            f'auth = "login"\nusername = "{USER}"\nmailbox = "{MAILBOX}"\n'
            'password_env = "TEST_SMTP_PASSWORD"\ntimeout = 5\n'
        )

    def arrivals(self) -> list[Arrival]:
        return [_from_mime(data, rcpts) for rcpts, data in self.handler.received]


@contextmanager
def smtp_fake(ca: trustme.CA, ca_file: Path) -> Iterator[SmtpFake]:
    handler = RecordingHandler()
    server = start(
        handler,
        tls_context=server_context(ca),
        require_starttls=True,
        authenticator=authenticator,
        auth_require_tls=True,
    )
    try:
        yield SmtpFake(server, handler, ca_file)
    finally:
        server.controller.stop()


# -- Microsoft Graph ----------------------------------------------------------------------


@dataclass
class GraphFake:
    """Graph for one mailbox and its identity platform: ``service`` is the fake itself
    (see gateways/graph_fake.py) for tests that inject faults or count token requests."""

    service: FakeGraph
    kind: str = "graph"
    secrets: dict[str, str] = field(default_factory=lambda: {"TEST_GRAPH_SECRET": GRAPH_SECRET})

    config = (
        '\n[gateway]\ntype = "graph"\n\n[gateway.graph]\n'
        f'mailbox = "{MAILBOX}"\ntenant_id = "{TENANT}"\nclient_id = "{GRAPH_CLIENT_ID}"\n'
        'client_secret_env = "TEST_GRAPH_SECRET"\ntimeout = 5\n'
        # Sent Items is searched once, soon, for the sent item's id (the fake files at once).
        "sent_item_wait = 0.01\n"
    )

    def arrivals(self) -> list[Arrival]:
        arrived = []
        for item in self.service.delivered:
            if item.mime is not None:
                arrived.append(_from_mime(item.mime))
                continue
            draft = item.draft
            assert draft is not None
            [ref] = [
                h["value"]
                for h in draft["internetMessageHeaders"]
                if h["name"] == "X-MASH-Request-Ref"
            ]
            arrived.append(
                Arrival(
                    request_ref=ref,
                    message_id=draft["internetMessageId"],
                    recipients=tuple(r["emailAddress"]["address"] for r in draft["toRecipients"]),
                    subject=draft["subject"],
                    form=self.service.form_of(item),
                )
            )
        return arrived


@contextmanager
def graph_fake(**options: Any) -> Iterator[GraphFake]:
    # Anything not mocked (another host, another path) fails the request: no network.
    with fake_graph(MAILBOX, GRAPH_SECRET, **options) as service:
        yield GraphFake(service)


# -- Exchange Web Services ----------------------------------------------------------------

_SERVER_VERSION = (
    '<s:Header><h:ServerVersionInfo xmlns:h="http://schemas.microsoft.com/exchange/services/'
    '2006/types" MajorVersion="15" MinorVersion="1" MajorBuildNumber="2375" '
    'MinorBuildNumber="7" Version="V2017_07_11"/></s:Header>'
)


def _envelope(body: str) -> str:
    return (
        f'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{NS["s"]}">'
        f"{_SERVER_VERSION}<s:Body>{body}</s:Body></s:Envelope>"
    )


def _get_folder(folder_id: str, name: str) -> str:
    """A GetFolder answer in the shape of the MS docs sample (getfolder-operation__2)."""
    return _envelope(
        f'<m:GetFolderResponse xmlns:m="{NS["m"]}" xmlns:t="{NS["t"]}"><m:ResponseMessages>'
        '<m:GetFolderResponseMessage ResponseClass="Success"><m:ResponseCode>NoError'
        f'</m:ResponseCode><m:Folders><t:Folder><t:FolderId Id="{folder_id}" ChangeKey="AQAAAB"/>'
        f"<t:DisplayName>{name}</t:DisplayName><t:TotalCount>2</t:TotalCount>"
        "<t:ChildFolderCount>0</t:ChildFolderCount><t:UnreadCount>0</t:UnreadCount></t:Folder>"
        "</m:Folders></m:GetFolderResponseMessage></m:ResponseMessages></m:GetFolderResponse>"
    )


def _find_item(*item_ids: str) -> str:
    """A FindItem answer listing messages by id (no recorded sample; same envelope)."""
    items = "".join(
        f'<t:Message><t:ItemId Id="{item_id}" ChangeKey="CQAAAB"/>'
        "<t:DateTimeSent>2026-11-02T10:00:00Z</t:DateTimeSent></t:Message>"
        for item_id in item_ids
    )
    return _envelope(
        f'<m:FindItemResponse xmlns:m="{NS["m"]}" xmlns:t="{NS["t"]}"><m:ResponseMessages>'
        '<m:FindItemResponseMessage ResponseClass="Success"><m:ResponseCode>NoError'
        f'</m:ResponseCode><m:RootFolder TotalItemsInView="{len(item_ids)}" '
        f'IncludesLastItemInRange="true"><t:Items>{items}</t:Items></m:RootFolder>'
        "</m:FindItemResponseMessage></m:ResponseMessages></m:FindItemResponse>"
    )


_CREATED = _envelope(
    f'<m:CreateItemResponse xmlns:m="{NS["m"]}" xmlns:t="{NS["t"]}"><m:ResponseMessages>'
    '<m:CreateItemResponseMessage ResponseClass="Success"><m:ResponseCode>NoError'
    "</m:ResponseCode><m:Items/></m:CreateItemResponseMessage></m:ResponseMessages>"
    "</m:CreateItemResponse>"
)


def _created() -> str:
    """The recorded empty CreateItem success (MS docs), or the same shape inline."""
    path = REFERENCE / "ews/ms_docs/createitem-operation-email-message__2.xml"
    if not path.is_file():
        return _CREATED
    # The 2007-era sample says version 8; a 2016 server must not (see the reference README).
    return path.read_text(encoding="utf-8").replace('MajorVersion="8"', 'MajorVersion="15"')


@dataclass
class EwsFake:
    """An Exchange 2016 EWS endpoint: GetFolder, CreateItem, and FindItem over what it sent."""

    kind: str = "ews"
    secrets: dict[str, str] = field(default_factory=lambda: {"TEST_EWS_PASSWORD": EWS_PASSWORD})
    #: CreateItem request bodies in the order they reached Exchange (whatever the answer).
    creates: list[str] = field(default_factory=list)
    #: Exceptions to raise for the next CreateItem calls; success once empty.
    create_faults: list[Exception] = field(default_factory=list)
    #: Requests that carried credentials (Basic auth: every request is a login).
    logins: int = 0
    #: Answer a refused login with ``Connection: close``, as IIS or a proxy in front may.
    close_on_refusal: bool = True

    config = (
        '\n[gateway]\ntype = "ews"\n\n[gateway.ews]\n'
        f'mailbox = "{MAILBOX}"\nendpoint = "{EWS_ENDPOINT}"\nversion = "Exchange2016"\n'
        'auth = "basic"\nusername = "svc-mash@testbury.gov.uk"\n'
        'password_env = "TEST_EWS_PASSWORD"\ntimeout = 5\n'
    )

    def __call__(self, request: requests.PreparedRequest) -> Reply:
        raw = request.body or b""
        body = raw.decode() if isinstance(raw, bytes) else str(raw)
        match = re.search(r"<m:(\w+)[ >]", body)
        operation = match.group(1) if match else "?"
        headers = {"Content-Type": "text/xml; charset=utf-8"}
        refused = self._refuse_login(request)
        if refused is not None:
            return refused
        if operation == "GetFolder":
            if 'Id="root"' in body:
                return 200, headers, _get_folder("ROOT-ID", "Top of Information Store")
            return 200, headers, _get_folder("SENT-ID", "Sent Items")
        if operation == "CreateItem":
            self.creates.append(body)
            if self.create_faults:
                raise self.create_faults.pop(0)
            return 200, headers, _created()
        if operation == "FindItem":
            constant = fromstring(body).find(".//t:Constant", NS)
            wanted = constant.get("Value") if constant is not None else None
            found = [
                f"SENT-ITEM-{index}"
                for index, arrival in enumerate(self.arrivals(), start=1)
                if arrival.message_id == wanted
            ]
            return 200, headers, _find_item(*found[:1])
        return 500, headers, f"unexpected EWS operation {operation}"

    def _refuse_login(self, request: requests.PreparedRequest) -> Reply | None:
        """IIS's answer to wrong Basic credentials (401, its challenges, its page), or None."""
        scheme, _, token = str(request.headers.get("Authorization", "")).partition(" ")
        if scheme == "Basic":
            self.logins += 1
            _, _, password = base64.b64decode(token).decode().partition(":")
            if password == EWS_PASSWORD:
                return None
        headers = {
            "Content-Type": "text/html",
            "WWW-Authenticate": 'Negotiate, NTLM, Basic realm="mail.testbury.gov.uk"',
            "X-FEServer": "EX01",
        }
        if self.close_on_refusal:
            headers["Connection"] = "close"
        page = (
            "<html><head><title>401 - Unauthorized: Access is denied due to invalid "
            "credentials.</title></head><body><h2>You do not have permission to view this "
            "directory or page using the credentials that you supplied.</h2></body></html>"
        )
        return 401, headers, page

    def arrivals(self) -> list[Arrival]:
        arrived = []
        for body in self.creates:
            message = fromstring(body).find(".//t:Message", NS)
            assert message is not None
            refs = [
                prop.findtext("t:Value", namespaces=NS)
                for prop in message.findall("t:ExtendedProperty", NS)
                if prop.find("t:ExtendedFieldURI", NS).get("PropertyName") == "X-MASH-Request-Ref"
            ]
            arrived.append(
                Arrival(
                    request_ref=str(refs[0]),
                    message_id=str(message.findtext("t:InternetMessageId", namespaces=NS)),
                    recipients=tuple(
                        str(address.text)
                        for address in message.findall(".//t:ToRecipients//t:EmailAddress", NS)
                    ),
                    subject=str(message.findtext("t:Subject", namespaces=NS)),
                    form=base64.b64decode(
                        message.findtext(".//t:FileAttachment/t:Content", namespaces=NS) or ""
                    ),
                )
            )
        return arrived


@contextmanager
def ews_fake() -> Iterator[EwsFake]:
    from exchangelib.protocol import close_connections

    fake = EwsFake()
    # exchangelib caches protocols per endpoint and credentials: start and end clean.
    close_connections()
    try:
        with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
            rsps.add_callback(responses.POST, EWS_ENDPOINT, callback=fake)
            yield fake
    finally:
        close_connections()


@contextmanager
def fake_mail_system(kind: str, root: Path, ca: trustme.CA) -> Iterator[FakeMailSystem]:
    """The fake for ``kind``, running until the block ends."""
    if kind == "outbox":
        yield OutboxFake(root / "sent-mail")
    elif kind == "smtp":
        ca_file = root / "test-ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        with smtp_fake(ca, ca_file) as smtp:
            yield smtp
    elif kind == "graph":
        with graph_fake() as graph:
            yield graph
    elif kind == "ews":
        with ews_fake() as ews:
            yield ews
    else:
        raise ValueError(f"no fake for gateway {kind!r}")
