"""The IMAP source against a real Dovecot on loopback (TLS from a test CA, a Maildir)."""

from __future__ import annotations

import re
import socket
import time

import pytest
import trustme
from dovecot import PASSWORD, USER, Dovecot
from replies_helpers import reply, run_cli, send_example

from mash_requests.audit.events import EventKind
from workspace import Workspace


def _configure(
    workspace: Workspace,
    server: Dovecot,
    monkeypatch: pytest.MonkeyPatch,
    *,
    security: str = "tls",
    port: int | None = None,
    ca_file: str | None = None,
    password: str = PASSWORD,
) -> None:
    monkeypatch.setenv("MASH_TEST_IMAP_PASSWORD", password)
    if port is None:
        port = server.tls_port if security == "tls" else server.starttls_port
    with workspace.config.open("a", encoding="utf-8") as handle:
        handle.write(
            f'\n[replies]\nsource = "imap"\n\n[replies.imap]\nhost = "127.0.0.1"\nport = {port}\n'
            f'security = "{security}"\nca_file = "{ca_file or server.ca_file}"\n'
            f'username = "{USER}"\n'
            'password_env = "MASH_TEST_IMAP_PASSWORD"\ntimeout = 10\n'
        )


def _fetch(workspace: Workspace) -> tuple[int, str, str]:
    return run_cli("replies", "fetch", "--config", str(workspace.config))


def _replied(workspace: Workspace) -> list[str]:
    return [str(e.request_ref) for e in workspace.events() if e.kind is EventKind.REPLIED]


def test_replies_are_read_over_imaps_and_left_unread(
    workspace: Workspace, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over implicit TLS, both replies are recorded; neither message is marked seen."""
    sent = send_example(workspace)
    _configure(workspace, dovecot, monkeypatch)
    dovecot.deliver(reply(sent["police"]))
    dovecot.deliver(reply(sent["health"], sender="safeguarding@nhs.net"))
    code, out, err = _fetch(workspace)
    assert code == 0, out + err
    assert "imap: 2 new message(s)" in out
    assert sorted(_replied(workspace)) == sorted(
        [sent["police"].request_ref, sent["health"].request_ref]
    )
    assert all("S" not in flags for flags in dovecot.flags())


def test_starttls_works_too(
    workspace: Workspace, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """security = "starttls" on the IMAP port upgrades before logging in."""
    sent = send_example(workspace)
    _configure(workspace, dovecot, monkeypatch, security="starttls")
    dovecot.deliver(reply(sent["police"]))
    code, out, err = _fetch(workspace)
    assert code == 0, out + err
    assert _replied(workspace) == [sent["police"].request_ref]


def test_a_second_fetch_downloads_nothing_already_recorded(
    workspace: Workspace, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Message-IDs are listed first: a recorded message's body is never fetched again."""
    sent = send_example(workspace)
    _configure(workspace, dovecot, monkeypatch)
    dovecot.deliver(reply(sent["police"]))
    assert _fetch(workspace)[0] == 0
    code, out, _ = _fetch(workspace)
    assert code == 0 and "0 new message(s)" in out and "1 already seen" in out
    time.sleep(0.3)  # Dovecot writes the session's summary line as the connection closes
    bodies = [int(n) for n in re.findall(r"body_count=(\d+)", dovecot.log())]
    assert bodies[-2:] == [1, 0]


def test_an_untrusted_certificate_is_refused_once_with_the_fix(
    workspace: Workspace,
    dovecot: Dovecot,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Another CA's certificate: exit 1, "not trusted … set ca_file", and no retry."""
    other = tmp_path_factory.mktemp("ca") / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    _configure(workspace, dovecot, monkeypatch, ca_file=str(other))
    send_example(workspace)
    time.sleep(0.3)
    before = len(dovecot.log())
    code, _, err = _fetch(workspace)
    assert code == 1
    assert "is not trusted" in err and "set ca_file" in err
    time.sleep(0.3)
    assert dovecot.log()[before:].count("imap-login: Info: Disconnected") == 1


def test_refused_credentials_are_tried_once(
    workspace: Workspace, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong password: exit 1, "refused the credentials", one login (no lock-out by retries)."""
    _configure(workspace, dovecot, monkeypatch, password="wrong-password")
    send_example(workspace)
    code, _, err = _fetch(workspace)
    assert code == 1 and "refused the credentials" in err
    assert "wrong-password" not in err
    time.sleep(0.3)
    assert dovecot.log().count("auth failed") == 1


def test_a_server_that_is_down_is_reported_after_the_retries(
    workspace: Workspace, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connection refused is transient: retried under [retry], then exit 1 naming the server."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    _configure(workspace, dovecot, monkeypatch, port=closed)
    send_example(workspace)
    code, _, err = _fetch(workspace)
    assert code == 1 and f"IMAP server 127.0.0.1:{closed} refused the connection" in err


def test_messages_older_than_the_last_fetch_window_are_not_read(
    workspace: Workspace, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fetch reads from the day before the last one started, not the whole mailbox."""
    sent = send_example(workspace)
    _configure(workspace, dovecot, monkeypatch)
    assert _fetch(workspace)[0] == 0  # remembers where it started
    dovecot.deliver(
        reply(sent["health"], sender="safeguarding@nhs.net"), mtime=time.time() - 10 * 86400
    )
    dovecot.deliver(reply(sent["police"]))
    code, out, _ = _fetch(workspace)
    assert code == 0 and "1 new message(s)" in out
    assert _replied(workspace) == [sent["police"].request_ref]
