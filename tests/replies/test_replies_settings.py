"""The ``[replies]`` table: validated in full when the config loads."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from mash_requests.config import load_settings
from mash_requests.errors import ConfigError
from mash_requests.replies.sources.ews import Settings as EwsSettings
from mash_requests.replies.sources.folder import Settings as FolderSettings
from mash_requests.replies.sources.graph import Settings as GraphSettings
from mash_requests.replies.sources.imap import Settings as ImapSettings
from workspace import Workspace

GRAPH_GATEWAY = """
[gateway]
type = "graph"

[gateway.graph]
mailbox = "mash@testbury.gov.uk"
tenant_id = "72aa88bf-76f0-494f-91ab-2d7cd730db47"
client_id = "client-1"
client_secret_env = "MASH_TEST_GRAPH_SECRET"
"""


def _with(workspace: Workspace, text: str) -> Path:
    workspace.config.write_text(workspace.config.read_text() + text, encoding="utf-8")
    return workspace.config


def _error(workspace: Workspace, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(_with(workspace, text))
    return str(caught.value)


def test_no_replies_table_means_no_replies(workspace: Workspace) -> None:
    """Without [replies] the settings say so (None); sending works as before."""
    assert load_settings(workspace.config).replies is None


def test_the_folder_is_relative_to_the_config_file(workspace: Workspace) -> None:
    """[replies] folder is resolved against the config file's folder, like other paths."""
    settings = load_settings(
        _with(workspace, '\n[replies]\nsource = "folder"\nfolder = "in/replies"\n')
    )
    assert settings.replies is not None
    assert settings.replies.reader == FolderSettings(folder=workspace.root / "in" / "replies")
    assert settings.replies.state_file == workspace.root / "data" / "replies-state.json"


def test_source_is_required(workspace: Workspace) -> None:
    """[replies] without source names the choices."""
    assert "source: is required: one of folder, imap, graph, ews" in _error(
        workspace, '\n[replies]\nfolder = "r"\n'
    )


def test_an_unknown_source_is_refused(workspace: Workspace) -> None:
    """source = "pop3" is not a source."""
    assert "expected one of folder, imap, graph, ews" in _error(
        workspace, '\n[replies]\nsource = "pop3"\n'
    )


def test_an_unknown_key_is_refused(workspace: Workspace) -> None:
    """A typo in [replies] is an error naming the key."""
    message = _error(workspace, '\n[replies]\nsource = "folder"\nfolder = "r"\nfodler = "x"\n')
    assert "[replies] fodler: unknown key" in message


def test_the_folder_source_needs_a_folder(workspace: Workspace) -> None:
    """source = "folder" without folder says what to set."""
    assert "folder: is required" in _error(workspace, '\n[replies]\nsource = "folder"\n')


def test_imap_reads_its_table_and_its_secret_from_the_environment(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """[replies.imap]: host, username, password_env; TLS on 993 by default."""
    monkeypatch.setenv("MASH_TEST_IMAP_PASSWORD", "s3cret")
    settings = load_settings(
        _with(
            workspace,
            '\n[replies]\nsource = "imap"\n\n[replies.imap]\nhost = "imap.testbury.gov.uk"\n'
            'username = "mash-replies"\npassword_env = "MASH_TEST_IMAP_PASSWORD"\n',
        )
    )
    assert settings.replies is not None
    reader = settings.replies.reader
    assert isinstance(reader, ImapSettings)
    assert (reader.host, reader.port, reader.security, reader.password) == (
        "imap.testbury.gov.uk", 993, "tls", "s3cret",
    )  # fmt: skip
    assert "s3cret" not in repr(reader)


def test_an_inline_password_is_refused(workspace: Workspace) -> None:
    """Secrets are never written in the config: password = "…" is an error."""
    message = _error(
        workspace,
        '\n[replies]\nsource = "imap"\n\n[replies.imap]\nhost = "imap.testbury.gov.uk"\n'
        'username = "u"\npassword = "hunter2"\n',
    )
    assert "secrets are not written in the config" in message and "hunter2" not in message


def test_clear_imap_is_allowed_only_to_loopback(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """security = "none" to a remote host is refused (TLS rules as for SMTP)."""
    monkeypatch.setenv("P", "x")
    message = _error(
        workspace,
        '\n[replies]\nsource = "imap"\n\n[replies.imap]\nhost = "imap.testbury.gov.uk"\n'
        'security = "none"\nusername = "u"\npassword_env = "P"\n',
    )
    assert "allowed only to localhost" in message


def test_a_missing_ca_file_is_refused(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ca_file must name a file."""
    monkeypatch.setenv("P", "x")
    message = _error(
        workspace,
        '\n[replies]\nsource = "imap"\n\n[replies.imap]\nhost = "h.example"\nca_file = "nope.pem"\n'
        'username = "u"\npassword_env = "P"\n',
    )
    assert "ca_file: no such file" in message


def test_graph_takes_what_it_leaves_out_from_the_graph_gateway(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """[replies.graph] needs only what differs: mailbox, tenant and client come from the gateway."""
    monkeypatch.setenv("MASH_TEST_GRAPH_SECRET", "graph-secret")
    settings = load_settings(
        _with(
            workspace,
            GRAPH_GATEWAY + '\n[replies]\nsource = "graph"\n\n[replies.graph]\nfolder = "inbox"\n',
        )
    )
    assert settings.replies is not None
    reader = settings.replies.reader
    assert isinstance(reader, GraphSettings)
    assert reader.graph.mailbox == "mash@testbury.gov.uk"
    assert reader.graph.credentials.client_secret == "graph-secret"


def test_graph_can_read_another_mailbox_with_its_own_secret(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replies mailbox and secret of its own replace the gateway's, in either form."""
    monkeypatch.setenv("MASH_TEST_GRAPH_SECRET", "graph-secret")
    secret = workspace.root / "replies-secret.txt"
    secret.write_text("replies-secret\n")
    settings = load_settings(
        _with(
            workspace,
            GRAPH_GATEWAY + '\n[replies]\nsource = "graph"\n\n[replies.graph]\n'
            'mailbox = "mash-replies@testbury.gov.uk"\nclient_secret_file = "replies-secret.txt"\n',
        )
    )
    assert settings.replies is not None
    reader = settings.replies.reader
    assert isinstance(reader, GraphSettings)
    assert reader.graph.mailbox == "mash-replies@testbury.gov.uk"
    assert reader.graph.credentials.client_secret == "replies-secret"


def test_ews_without_a_gateway_table_needs_its_own_keys(workspace: Workspace) -> None:
    """[replies.ews] with nothing to inherit names the first missing key."""
    message = _error(workspace, '\n[replies]\nsource = "ews"\n\n[replies.ews]\nfolder = "inbox"\n')
    assert "[replies.ews] mailbox: is required" in message


def test_ews_reads_a_folder_under_the_inbox(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """folder = "inbox/MASH replies" is accepted; anything outside the inbox is not."""
    monkeypatch.setenv("P", "x")
    table = (
        '\n[replies]\nsource = "ews"\n\n[replies.ews]\nmailbox = "mash@testbury.gov.uk"\n'
        'endpoint = "https://mail.testbury.gov.uk/EWS/Exchange.asmx"\nusername = "svc"\n'
        'password_env = "P"\nfolder = "inbox/MASH replies"\n'
    )
    settings = load_settings(_with(workspace, table))
    assert settings.replies is not None and isinstance(settings.replies.reader, EwsSettings)
    assert settings.replies.reader.folder == "inbox/MASH replies"
    workspace.config.write_text(
        workspace.config.read_text().replace("inbox/MASH replies", "Deleted Items")
    )
    with pytest.raises(ConfigError, match="expected 'inbox' or a folder under it"):
        load_settings(workspace.config)


def test_an_unused_sources_table_is_validated_too(workspace: Workspace) -> None:
    """A [replies.imap] kept for later is still checked: a typo there is an error."""
    message = _error(
        workspace,
        '\n[replies]\nsource = "folder"\nfolder = "r"\n\n[replies.imap]\nhots = "x"\n',
    )
    assert "[replies.imap] host: is required" in message


def test_the_cli_exits_2_on_a_bad_replies_table(workspace: Workspace) -> None:
    """A bad [replies] stops every command at load: exit 2, one Error line."""
    from replies_helpers import run_cli

    _with(workspace, '\n[replies]\nsource = "folder"\n')
    code, _, err = run_cli("replies", "fetch", "--config", str(workspace.config))
    assert code == 2 and err.startswith("Error: ") and "folder: is required" in err


IMAP_REPLIES = (
    '\n[replies]\nsource = "imap"\naddress = "mash-replies@testbury.gov.uk"\n\n'
    '[replies.imap]\nhost = "imap.testbury.gov.uk"\nusername = "mash-replies"\n'
    'password_env = "MASH_TEST_IMAP_PASSWORD"\n'
)


def test_sending_needs_no_replies_secret(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A machine that only sends needs neither the replies mailbox's password variable nor
    file (as for a gateway not in use): the config loads, requests carry the replies
    address, and send-request sends; only reading the mailbox asks for the secret."""
    from replies_helpers import run_cli

    monkeypatch.delenv("MASH_TEST_IMAP_PASSWORD", raising=False)
    config = _with(workspace, IMAP_REPLIES)
    settings = load_settings(config)
    assert settings.replies is not None
    assert settings.replies.address == "mash-replies@testbury.gov.uk"
    code, out, err = run_cli(
        "send-request", "--config", str(config), "--case",
        str(workspace.write_case(workspace.example_case())),
        "--partner", "police",
    )  # fmt: skip
    assert code == 0, out + err
    with pytest.raises(ConfigError, match=r"\[replies.imap\] password_env: environment "):
        _ = settings.replies.reader
    code, _, err = run_cli("replies", "fetch", "--config", str(config))
    assert code == 2
    assert "[replies.imap] password_env: environment variable MASH_TEST_IMAP_PASSWORD" in err
    assert "Traceback" not in err


def test_the_replies_secret_is_read_when_the_mailbox_is(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Set later (a scheduled task's own environment), the secret is read on first use."""
    monkeypatch.delenv("MASH_TEST_IMAP_PASSWORD", raising=False)
    settings = load_settings(_with(workspace, IMAP_REPLIES))
    monkeypatch.setenv("MASH_TEST_IMAP_PASSWORD", "later")
    assert settings.replies is not None
    reader = settings.replies.reader
    assert isinstance(reader, ImapSettings) and reader.password == "later"


def test_every_other_replies_key_is_still_checked_when_the_config_loads(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deferring the secret defers nothing else: a bad key of the source is refused at load,
    without the secret being set."""
    monkeypatch.delenv("MASH_TEST_IMAP_PASSWORD", raising=False)
    message = _error(workspace, IMAP_REPLIES + "prot = 993\n")
    assert "[replies.imap] prot: unknown key" in message


def test_fetch_help_teaches_each_source_s_config() -> None:
    """`replies fetch --help` says which table and keys each source reads, and that only
    this command reads the mailbox's secret (a new user sets IMAP, Graph or EWS from it)."""
    from replies_helpers import run_cli

    code, out, _ = run_cli("replies", "fetch", "--help")
    assert code == 0
    for text in (
        '[replies] source = "folder", folder = "replies"',
        "[replies.imap] host, username, password_env",
        "[replies.graph] mailbox, folder",
        "from [gateway.graph] unless given;",
        "the app needs Mail.Read",
        "[replies.ews] mailbox, folder; the rest from [gateway.ews]",
        "Only this command reads the mailbox's secret.",
    ):
        assert text in out, text
    assert out.isascii()


@pytest.mark.parametrize(
    "table",
    [
        '\n[replies]\nsource = "folder"\nfolder = "replies"\n',
        '\n[replies]\nsource = "imap"\n\n[replies.imap]\nhost = "imap.testbury.gov.uk"\n'
        'username = "u"\npassword_env = "P"\n',
        GRAPH_GATEWAY + '\n[replies]\nsource = "graph"\n\n[replies.graph]\nfolder = "inbox"\n',
        '\n[replies]\nsource = "ews"\n\n[replies.ews]\nmailbox = "mash@testbury.gov.uk"\n'
        'endpoint = "https://mail.testbury.gov.uk/EWS/Exchange.asmx"\nusername = "svc"\n'
        'password_env = "P"\n',
    ],
    ids=["folder", "imap", "graph", "ews"],
)
def test_settings_with_any_replies_source_cross_to_a_worker_process(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, table: str
) -> None:
    """send-batch --workers pickles the settings to each worker: a [replies] table of any
    source must not stop it (a lambda and a module object once did, with a traceback)."""
    monkeypatch.setenv("P", "x")
    monkeypatch.setenv("MASH_TEST_GRAPH_SECRET", "graph-secret")
    settings = load_settings(_with(workspace, table))
    copy = pickle.loads(pickle.dumps(settings))  # noqa: S301 - our own object, round trip
    assert copy.replies is not None and settings.replies is not None
    assert type(copy.replies.reader) is type(settings.replies.reader)


def test_ews_replies_may_sign_in_another_way_than_the_gateway(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gateway signs in with NTLM (username, password), the replies mailbox with OAuth:
    the replies table takes the gateway's endpoint and mailbox, but none of its sign-in
    keys (which would read as 'not read here' or unknown under another auth)."""
    monkeypatch.setenv("P", "x")
    monkeypatch.setenv("S", "y")
    table = (
        '\n[gateway]\ntype = "ews"\n\n[gateway.ews]\nmailbox = "mash@testbury.gov.uk"\n'
        'endpoint = "https://mail.testbury.gov.uk/EWS/Exchange.asmx"\nauth = "ntlm"\n'
        'username = "svc"\npassword_env = "P"\n'
        '\n[replies]\nsource = "ews"\n\n[replies.ews]\nauth = "oauth"\n'
        'tenant_id = "11111111-2222-3333-4444-555555555555"\n'
        'client_id = "66666666-7777-8888-9999-000000000000"\nclient_secret_env = "S"\n'
    )
    settings = load_settings(_with(workspace, table))
    assert settings.replies is not None and isinstance(settings.replies.reader, EwsSettings)
    reader = settings.replies.reader
    assert (reader.ews.auth, reader.ews.mailbox) == ("oauth", "mash@testbury.gov.uk")
