"""A fake Microsoft Graph mailbox and Entra ID identity platform, on ``responses``.

It answers in the recorded wire format (``../shared/reference/graph``) and keeps state the
way the services do, so tests can ask what is in the mailbox afterwards:

- the identity platform: the tenant's OpenID configuration, the token endpoint (it checks
  the client secret and answers ``invalid_client`` as Entra ID does, with ``error``,
  ``error_description`` and ``error_codes``), and the public cloud's instance discovery;
  every request is counted;
- Graph: ``sendMail`` with base64 MIME (``202``, empty body; ``400`` for bad base64; ``413``
  over 4 MB), drafts (JSON), small attachments, upload sessions, ``/send``, ``DELETE``, and
  ``$filter=internetMessageId eq '…'`` searches of Drafts and Sent Items;
- ids: an item has an immutable id it keeps for life; without ``Prefer:
  IdType="ImmutableId"`` Graph answers with a regular id that changes when the item moves
  from Drafts to Sent Items, as Exchange's do;
- Sent Items is honest: it holds a message only if its send reached the fake, and
  ``filing_lag`` searches can miss a message just sent (Exchange files it a little later);
- faults are queued per operation: an answer given instead of the real one, either before
  the operation took effect (``done=False``) or after it (``done=True``: the answer was
  lost), or an exception the client sees instead of any answer.
"""

from __future__ import annotations

import base64
import binascii
import email
import itertools
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import requests
import responses

# Imported through the tests folder, so switch_helpers (one level up) can use this fake too.
from gateways.gateway_helpers import RecordedResponse, recorded_response

TENANT = "72aa88bf-76f0-494f-91ab-2d7cd730db47"
CLIENT_ID = "client-id-1"
PUBLIC_CLOUD = "https://login.microsoftonline.com"
GRAPH = "https://graph.microsoft.com/v1.0"
ACCESS_TOKEN = "eyJ0eXAiOiJKV1QiLCJub25jZSI6ImZha2UifQ.fake-graph-access-token"
#: Graph's request size limit ("The maximum request length supported is 4MB.").
REQUEST_LIMIT = 4 * 1024 * 1024
JSON = {"Content-Type": "application/json"}

Reply = tuple[int, dict[str, str], str]

_THROTTLED = RecordedResponse(
    429,
    {"Content-Type": "application/json", "Retry-After": "2.128"},
    json.dumps({"error": {"code": "TooManyRequests", "message": "Please retry again later."}}),
)
_TOO_LARGE = (
    '{"Error":{"code":"BadRequest","message":"The maximum request length supported is 4MB."}}'
)


@dataclass(frozen=True)
class Fault:
    """What the fake does instead of answering one request normally."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    #: Raised to the client instead of any answer (a timeout, a reset connection).
    exception: Exception | None = None
    #: The operation took effect before the fault (the answer was lost, not the request).
    done: bool = False

    @classmethod
    def answer(cls, status: int, *, done: bool = False, code: str = "", **headers: str) -> Fault:
        """A Graph error answer, ``{"error": {"code", "message"}}`` (empty body for 502–504)."""
        body = ""
        if code:
            body = json.dumps({"error": {"code": code, "message": f"{code} (fake)."}})
        return cls(
            status=status, headers={**JSON, **headers} if body else headers, body=body, done=done
        )

    @classmethod
    def throttled(cls) -> Fault:
        """Graph's recorded 429 with its fractional ``Retry-After``."""
        recorded = recorded_response("graph/05_throttling_429_response.http", _THROTTLED)
        return cls(status=recorded.status, headers=recorded.headers, body=recorded.body)

    @classmethod
    def lost(cls, exception: Exception, *, done: bool) -> Fault:
        return cls(exception=exception, done=done)


@dataclass
class Item:
    """One message in the mailbox."""

    immutable_id: str
    number: int
    internet_message_id: str
    folder: str  # "Drafts" or "SentItems"
    #: The MIME bytes, for a message sent with sendMail.
    mime: bytes | None = None
    #: The JSON draft, for a message made as a draft.
    draft: dict[str, Any] | None = None
    attachments: list[tuple[str, bytes]] = field(default_factory=list)
    #: Sent Items searches that will still miss this message (Exchange files it later).
    hidden_searches: int = 0

    def regular_id(self) -> str:
        """The id Graph gives without the immutable-id header: it changes with the folder."""
        return f"AAMkAD{self.folder}{self.number}AAA="


@dataclass
class FakeGraph:
    """One mailbox in one tenant, and the identity platform that issues its tokens."""

    mailbox: str
    secret: str
    authority: str = PUBLIC_CLOUD
    base_url: str = GRAPH
    tenant: str = TENANT
    #: Sent Items searches that miss a message just sent.
    filing_lag: int = 0
    items: dict[str, Item] = field(default_factory=dict)
    #: Messages whose send reached the fake (delivered), in order.
    delivered: list[Item] = field(default_factory=list)
    faults: dict[str, list[Fault]] = field(default_factory=dict)
    token_requests: int = 0
    discovery_requests: int = 0
    #: False: the public cloud cannot be reached (a closed network, a test machine).
    public_cloud_reachable: bool = True
    #: Every Graph request: (operation, Prefer header).
    calls: list[tuple[str, str]] = field(default_factory=list)
    _numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _uploads: dict[str, tuple[str, str, int, bytearray]] = field(default_factory=dict)

    # -- set-up ----------------------------------------------------------------------------

    @property
    def login(self) -> str:
        return f"{self.authority}/{self.tenant}"

    @property
    def user(self) -> str:
        return f"{self.base_url}/users/{self.mailbox}"

    def fail(self, operation: str, *faults: Fault) -> None:
        """Queue faults for the next requests of ``operation`` (see ``install``)."""
        self.faults.setdefault(operation, []).extend(faults)

    def install(self, rsps: responses.RequestsMock) -> None:
        login = re.escape(self.login)
        rsps.add_callback(
            responses.GET,
            re.compile(login + r"/v2\.0/\.well-known/openid-configuration$"),
            callback=self._openid_configuration,
        )
        rsps.add_callback(
            responses.POST, re.compile(login + r"/oauth2/v2\.0/token$"), callback=self._token
        )
        rsps.add_callback(
            responses.GET,
            re.compile(re.escape(PUBLIC_CLOUD) + r"/common/discovery/instance"),
            callback=self._instance_discovery,
        )
        user = re.escape(self.user)
        item = user + r"/messages/(?P<id>[^/?]+)"
        rsps.add_callback(responses.POST, re.compile(user + r"/sendMail$"), self._send_mail)
        rsps.add_callback(responses.POST, re.compile(user + r"/messages$"), self._create_draft)
        rsps.add_callback(responses.POST, re.compile(item + r"/attachments$"), self._attach)
        rsps.add_callback(
            responses.POST,
            re.compile(item + r"/attachments/createUploadSession$"),
            self._upload_session,
        )
        rsps.add_callback(responses.POST, re.compile(item + r"/send$"), self._send_draft)
        rsps.add_callback(responses.DELETE, re.compile(item + r"$"), self._delete)
        rsps.add_callback(
            responses.GET,
            re.compile(user + r"/mailFolders\('(?P<folder>SentItems|Drafts)'\)/messages(\?.*)?$"),
            self._search,
        )
        rsps.add_callback(
            responses.GET,
            re.compile(user + r"/mailFolders\('SentItems'\)(\?.*)?$"),
            self._folder,
        )
        rsps.add_callback(
            responses.PUT,
            re.compile(r"https://outlook\.office\.com/api/v2\.0/.*AttachmentSessions.*"),
            self._upload,
        )

    # -- what tests ask --------------------------------------------------------------------

    def folder(self, name: str) -> list[Item]:
        return [item for item in self.items.values() if item.folder == name]

    @property
    def drafts(self) -> list[Item]:
        return self.folder("Drafts")

    @property
    def sent_items(self) -> list[Item]:
        return self.folder("SentItems")

    def operations(self, name: str) -> int:
        return sum(1 for operation, _ in self.calls if operation == name)

    @staticmethod
    def form_of(item: Item) -> bytes:
        """The referral form as it arrived (MIME attachment or Graph attachment)."""
        if item.mime is not None:
            [form] = list(parse_mime(item.mime).iter_attachments())
            content = form.get_content()
            assert isinstance(content, bytes)
            return content
        [(_, data)] = item.attachments
        return data

    # -- the identity platform -------------------------------------------------------------

    def _openid_configuration(self, request: requests.PreparedRequest) -> Reply:
        body = {
            "token_endpoint": f"{self.login}/oauth2/v2.0/token",
            "authorization_endpoint": f"{self.login}/oauth2/v2.0/authorize",
            "issuer": f"{self.login}/v2.0",
        }
        return 200, JSON, json.dumps(body)

    def _instance_discovery(self, request: requests.PreparedRequest) -> Reply:
        self.discovery_requests += 1
        if not self.public_cloud_reachable:
            raise requests.ConnectionError("Failed to establish a new connection", request=request)
        host = urlsplit(self.authority).hostname or ""
        body = {
            "tenant_discovery_endpoint": f"{self.login}/v2.0/.well-known/openid-configuration",
            "api-version": "1.1",
            "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
        }
        return 200, JSON, json.dumps(body)

    def _token(self, request: requests.PreparedRequest) -> Reply:
        self.token_requests += 1
        queued = self.faults.get("token")
        if queued:
            return self._finish(queued.pop(0), (0, {}, ""))
        raw = request.body or ""
        form = parse_qs(raw.decode() if isinstance(raw, bytes) else raw)
        if form.get("client_id") != [CLIENT_ID] or form.get("client_secret") != [self.secret]:
            error = {
                "error": "invalid_client",
                "error_description": (
                    "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent "
                    "in the request is the client secret value, not the client secret ID, for a "
                    f"secret added to app '{CLIENT_ID}'.\r\nTrace ID: 0c5c\r\n"
                    "Correlation ID: 7d1e\r\nTimestamp: 2026-11-02 10:00:00Z"
                ),
                "error_codes": [7000215],
                "timestamp": "2026-11-02 10:00:00Z",
                "trace_id": "0c5c",
                "correlation_id": "7d1e",
                "error_uri": "https://login.microsoftonline.com/error?code=7000215",
            }
            return 401, JSON, json.dumps(error)
        token = {
            "token_type": "Bearer",
            "expires_in": 3599,
            "ext_expires_in": 3599,
            "access_token": ACCESS_TOKEN,
        }
        return 200, JSON, json.dumps(token)

    # -- Graph -----------------------------------------------------------------------------

    def _begin(self, operation: str, request: requests.PreparedRequest) -> Fault | Reply | None:
        """Count the call, check the token, and take the next queued fault, if any."""
        self.calls.append((operation, str(request.headers.get("Prefer", ""))))
        if request.headers.get("Authorization") != f"Bearer {ACCESS_TOKEN}":
            error = {
                "error": {
                    "code": "InvalidAuthenticationToken",
                    "message": "Access token validation failure. Invalid audience.",
                }
            }
            return 401, JSON, json.dumps(error)
        queued = self.faults.get(operation)
        return queued.pop(0) if queued else None

    @staticmethod
    def _finish(fault: Fault | None, reply: Reply) -> Reply:
        if fault is None:
            return reply
        if fault.exception is not None:
            raise fault.exception
        return fault.status, fault.headers, fault.body

    def _new_item(self, message_id: str, folder: str, **fields: Any) -> Item:
        number = next(self._numbers)
        immutable = f"AAkALgAAAAAAHYQDEapmEc2byACqAC-EWg0A{number:04d}AAA="
        item = Item(immutable, number, message_id, folder, **fields)
        self.items[immutable] = item
        return item

    def _id(self, item: Item, request: requests.PreparedRequest) -> str:
        immutable = request.headers.get("Prefer") == 'IdType="ImmutableId"'
        return item.immutable_id if immutable else item.regular_id()

    def _item(self, request: requests.PreparedRequest) -> Item | None:
        match = re.search(r"/messages/([^/?]+)", str(request.url))
        assert match is not None
        wanted = unquote(match.group(1))
        for item in self.items.values():
            if wanted in (item.immutable_id, item.regular_id()):
                return item
        return None

    def _file_sent(self, item: Item) -> None:
        item.folder = "SentItems"
        item.hidden_searches = self.filing_lag
        self.delivered.append(item)

    def _send_mail(self, request: requests.PreparedRequest) -> Reply:
        early = self._begin("sendMail", request)
        if isinstance(early, tuple):
            return early
        body = request.body or b""
        data = body if isinstance(body, bytes) else body.encode()
        if len(data) > REQUEST_LIMIT:
            return 413, JSON, _TOO_LARGE
        if early is not None and not early.done:
            return self._finish(early, (0, {}, ""))
        if request.headers.get("Content-Type") != "text/plain":
            error = {"error": {"code": "ErrorInvalidRequest", "message": "Content-Type"}}
            return 400, JSON, json.dumps(error)
        try:
            mime = base64.b64decode(data, validate=True)
        except binascii.Error:
            recorded = recorded_response("graph/04_sendMail_mime_invalid_base64_response_400.http")
            return recorded.status, recorded.headers, recorded.body
        message_id = str(parse_mime(mime)["Message-ID"])
        self._file_sent(self._new_item(message_id, "Drafts", mime=mime))
        recorded = recorded_response(
            "graph/03_sendMail_response_202.http", RecordedResponse(202, {}, "")
        )
        return self._finish(early, (recorded.status, recorded.headers, recorded.body))

    def _create_draft(self, request: requests.PreparedRequest) -> Reply:
        early = self._begin("createDraft", request)
        if isinstance(early, tuple):
            return early
        if early is not None and not early.done:
            return self._finish(early, (0, {}, ""))
        draft = json.loads(request.body or b"{}")
        item = self._new_item(str(draft.get("internetMessageId", "")), "Drafts", draft=draft)
        recorded = recorded_response(
            "graph/11_create_draft_response_201.http",
            RecordedResponse(201, JSON, json.dumps({"id": "x"})),
        )
        answer = {
            **json.loads(recorded.body),
            "id": self._id(item, request),
            "internetMessageId": item.internet_message_id,
            "isDraft": True,
        }
        return self._finish(early, (recorded.status, recorded.headers, json.dumps(answer)))

    def _attach(self, request: requests.PreparedRequest) -> Reply:
        early = self._begin("attach", request)
        if isinstance(early, tuple):
            return early
        if early is not None and not early.done:
            return self._finish(early, (0, {}, ""))
        item = self._item(request)
        if item is None or item.folder != "Drafts":
            return _not_found()
        body = json.loads(request.body or b"{}")
        item.attachments.append((body["name"], base64.b64decode(body["contentBytes"])))
        answer = {"id": f"ATT{len(item.attachments)}", "name": body["name"]}
        return self._finish(early, (201, JSON, json.dumps(answer)))

    def _upload_session(self, request: requests.PreparedRequest) -> Reply:
        early = self._begin("createUploadSession", request)
        if isinstance(early, tuple):
            return early
        if early is not None and not early.done:
            return self._finish(early, (0, {}, ""))
        item = self._item(request)
        if item is None:
            return _not_found()
        spec = json.loads(request.body or b"{}")["AttachmentItem"]
        session = f"S{len(self._uploads) + 1}"
        url = (
            f"https://outlook.office.com/api/v2.0/Users('{self.tenant}')/Messages("
            f"'{item.immutable_id}')/AttachmentSessions('{session}')?authtoken=eyJhbGciOi"
        )
        self._uploads[session] = (item.immutable_id, spec["name"], spec["size"], bytearray())
        answer = {"uploadUrl": url, "expirationDateTime": "2026-11-02T11:00:00Z"}
        return self._finish(
            early, (201, JSON, json.dumps({**answer, "nextExpectedRanges": ["0-"]}))
        )

    def _upload(self, request: requests.PreparedRequest) -> Reply:
        self.calls.append(("upload", ""))
        if "Authorization" in request.headers:
            return 401, JSON, json.dumps({"error": {"code": "InvalidAudience", "message": "x"}})
        match = re.search(r"AttachmentSessions\('([^']+)'\)", str(request.url))
        assert match is not None
        item_id, name, size, received = self._uploads[match.group(1)]
        queued = self.faults.get("upload")
        if queued:
            fault = queued.pop(0)
            return self._finish(fault, (0, {}, ""))
        body = request.body if isinstance(request.body, bytes) else b""
        received.extend(body)
        if len(received) < size:
            answer = {"nextExpectedRanges": [f"{len(received)}-"]}
            return 200, JSON, json.dumps(answer)
        self.items[item_id].attachments.append((name, bytes(received)))
        return 201, {"Location": f"{self.user}/messages/{item_id}/attachments/A1"}, ""

    def _send_draft(self, request: requests.PreparedRequest) -> Reply:
        early = self._begin("send", request)
        if isinstance(early, tuple):
            return early
        if early is not None and not early.done:
            return self._finish(early, (0, {}, ""))
        item = self._item(request)
        if item is None or item.folder != "Drafts":
            return _not_found()
        self._file_sent(item)
        return self._finish(early, (202, {}, ""))

    def _delete(self, request: requests.PreparedRequest) -> Reply:
        early = self._begin("delete", request)
        if isinstance(early, tuple):
            return early
        if early is not None and not early.done:
            return self._finish(early, (0, {}, ""))
        item = self._item(request)
        if item is None:
            return _not_found()
        del self.items[item.immutable_id]
        return self._finish(early, (204, {}, ""))

    def _search(self, request: requests.PreparedRequest) -> Reply:
        match = re.search(r"mailFolders\('(\w+)'\)", str(request.url))
        assert match is not None
        folder = match.group(1)
        early = self._begin(f"search{folder}", request)
        if isinstance(early, tuple):
            return early
        if early is not None:
            return self._finish(early, (0, {}, ""))
        [query] = parse_qs(urlsplit(str(request.url)).query)["$filter"]
        wanted = re.fullmatch(r"internetMessageId eq '(.*)'", query)
        assert wanted is not None
        message_id = wanted.group(1).replace("''", "'")
        found = []
        for item in self.folder(folder):
            if item.internet_message_id != message_id:
                continue
            if item.hidden_searches > 0:
                item.hidden_searches -= 1
                continue
            found.append(
                {
                    "id": self._id(item, request),
                    "internetMessageId": item.internet_message_id,
                    "sentDateTime": "2026-11-02T10:00:00Z",
                }
            )
        return 200, JSON, json.dumps({"value": found})

    def _folder(self, request: requests.PreparedRequest) -> Reply:
        early = self._begin("readSentItems", request)
        if isinstance(early, tuple):
            return early
        answer = {"id": "SENT", "displayName": "Sent Items", "totalItemCount": len(self.sent_items)}
        return self._finish(early, (200, JSON, json.dumps(answer)))


def _not_found() -> Reply:
    error = {
        "error": {
            "code": "ErrorItemNotFound",
            "message": "The specified object was not found in the store.",
        }
    }
    return 404, JSON, json.dumps(error)


def parse_mime(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


@contextmanager
def fake_graph(mailbox: str, secret: str, **options: Any) -> Iterator[FakeGraph]:
    """The fake, installed; a request to anything else fails (no network)."""
    fake = FakeGraph(mailbox=mailbox, secret=secret, **options)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake.install(rsps)
        yield fake
