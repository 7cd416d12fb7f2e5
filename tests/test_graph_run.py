"""Microsoft Graph through the CLI and config alone: refused credentials end the run's use of
Graph after one token request, a private authority works without the public cloud, the
logged gateway_id is the Sent Items copy's immutable id however the send was confirmed, and a
form too large for sendMail goes the long way and leaves no draft behind."""

from __future__ import annotations

import io
import random
from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result

from gateways.graph_fake import Fault
from mash_requests.audit.events import EventKind
from mash_requests.cli import main
from switch_helpers import GRAPH_SECRET, GraphFake, graph_fake
from workspace import Workspace

FIVE_PARTNERS = """
[partners.probation]
name = "Testshire Probation"
addresses = ["probation@testbury.gov.uk"]
template = "probation"

[partners.housing]
name = "Eastbury Homes"
addresses = ["housing@eastbury.gov.uk"]
template = "housing"

[rate_limit]
per_minute = 100000
"""
PARTNERS = ["police", "health", "education", "probation", "housing"]
PRIVATE_AUTHORITY = "https://login.test.example"


def configure(workspace: Workspace, fake: GraphFake, extra: str = "") -> None:
    workspace.config.write_text(
        workspace.config.read_text(encoding="utf-8") + FIVE_PARTNERS + fake.config + extra,
        encoding="utf-8",
    )
    case = workspace.example_case()
    case["partners"] = PARTNERS
    workspace.write_case(case)


def cli(workspace: Workspace, *args: str) -> Result:
    result = CliRunner().invoke(main, [*args, "--config", str(workspace.config)])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def send(workspace: Workspace) -> Result:
    return cli(workspace, "send-request", "--case", str(workspace.cases / "case.json"))


@pytest.fixture
def graph(monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphFake]:
    monkeypatch.setenv("TEST_GRAPH_SECRET", GRAPH_SECRET)
    with graph_fake() as fake:
        yield fake


@pytest.fixture
def private_graph(monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphFake]:
    """Graph whose identity platform is a private host; the public cloud is unreachable."""
    monkeypatch.setenv("TEST_GRAPH_SECRET", GRAPH_SECRET)
    with graph_fake(authority=PRIVATE_AUTHORITY, public_cloud_reachable=False) as fake:
        yield fake


# -- refused credentials: one token request per run ---------------------------------------


@pytest.fixture
def refused(workspace: Workspace, graph: GraphFake, monkeypatch: pytest.MonkeyPatch) -> Result:
    """A five-partner case sent with a client secret the identity platform refuses."""
    configure(workspace, graph)
    monkeypatch.setenv("TEST_GRAPH_SECRET", "an-old-expired-secret-value")
    return send(workspace)


def test_refused_secret_makes_one_token_request_for_five_partners(
    refused: Result, graph: GraphFake
) -> None:
    """Five partners and a refused secret: exactly one token request, nothing sent, exit 1."""
    assert refused.exit_code == 1, refused.output
    assert graph.service.token_requests == 1
    assert graph.service.operations("sendMail") == 0 and not graph.service.delivered


def test_refused_secret_fails_every_request_with_the_same_reason(
    refused: Result, workspace: Workspace
) -> None:
    """All five requests are logged failed with one reason naming MSAL's error, no secret."""
    failed = [e for e in workspace.events() if e.kind is EventKind.FAILED]
    assert sorted(e.partner for e in failed) == sorted(PARTNERS)
    assert len({e.reason for e in failed}) == 1
    assert "invalid_client: AADSTS7000215: Invalid client secret provided" in str(failed[0].reason)
    assert [e.attempt for e in failed].count(0) == 4
    assert "an-old-expired-secret-value" not in refused.output
    assert b"an-old-expired-secret-value" not in workspace.log_path.read_bytes()


# -- a private authority by config alone --------------------------------------------------


def test_private_authority_sends_without_asking_the_public_cloud(
    workspace: Workspace, private_graph: GraphFake
) -> None:
    """authority = a private host: every partner is sent, MSAL never asks the public cloud."""
    configure(workspace, private_graph, f'authority = "{PRIVATE_AUTHORITY}"\n')
    result = send(workspace)
    assert result.exit_code == 0, result.output
    assert len(private_graph.arrivals()) == len(PARTNERS)
    assert private_graph.service.discovery_requests == 0
    assert private_graph.service.token_requests == 1


def test_forced_discovery_on_a_private_authority_names_the_host_that_failed(
    workspace: Workspace, private_graph: GraphFake
) -> None:
    """With instance_discovery = true, gateway check names the public cloud and the fix."""
    configure(
        workspace,
        private_graph,
        f'authority = "{PRIVATE_AUTHORITY}"\ninstance_discovery = true\n',
    )
    result = cli(workspace, "gateway", "check")
    assert result.exit_code == 1
    assert "cannot reach the identity platform at login.microsoftonline.com" in result.output
    assert "set instance_discovery = false" in result.output
    assert private_graph.service.token_requests == 0


# -- gateway_id -----------------------------------------------------------------------------


def test_logged_gateway_id_is_the_immutable_sent_items_id_direct_or_looked_up(
    workspace: Workspace, graph: GraphFake
) -> None:
    """A direct 202 and a 504 settled by lookup both log the sent item's immutable id."""
    configure(workspace, graph)
    graph.service.fail("sendMail", Fault.answer(504, done=True))  # police, asked first
    result = send(workspace)
    assert result.exit_code == 0, result.output
    sent = {e.message_id: e.gateway_id for e in workspace.events() if e.kind is EventKind.SENT}
    items = {item.internet_message_id: item.immutable_id for item in graph.service.sent_items}
    assert sent == items and len(sent) == len(PARTNERS)


# -- a form too large for sendMail ----------------------------------------------------------


def padded_form(form: bytes, extra: int) -> bytes:
    """``form`` with ``extra`` bytes of incompressible private data: still the same checked form."""
    from pypdf import PdfReader, PdfWriter
    from pypdf.generic import DictionaryObject, NameObject, StreamObject

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(form)))
    blob = StreamObject()
    blob.set_data(random.Random(1).randbytes(extra))
    # A stream must be an indirect object; pypdf has no public way to add one.
    private = DictionaryObject({NameObject("/Private"): writer._add_object(blob)})
    writer.root_object[NameObject("/PieceInfo")] = DictionaryObject({NameObject("/MASH"): private})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_a_3_mb_form_goes_the_long_way_and_a_lost_send_leaves_no_draft(
    workspace: Workspace, graph: GraphFake
) -> None:
    """A 3 MB form: draft and upload per partner, no sendMail; a 504 on /send, unseen in Sent
    Items, is sent once more, and no draft is left in the mailbox."""
    form = workspace.forms / "MASH-2026-0412.pdf"
    form.write_bytes(padded_form(form.read_bytes(), 3_000_000))
    configure(workspace, graph)
    graph.service.fail("send", Fault.answer(504))  # police's /send: Graph did not take it
    result = send(workspace)
    assert result.exit_code == 0, result.output
    service = graph.service
    assert [a.request_ref.split("-")[3] for a in graph.arrivals()] == [p.upper() for p in PARTNERS]
    assert all(arrival.form == form.read_bytes() for arrival in graph.arrivals())
    assert service.operations("sendMail") == 0
    assert service.operations("createDraft") == len(PARTNERS) + 1
    assert not service.drafts
