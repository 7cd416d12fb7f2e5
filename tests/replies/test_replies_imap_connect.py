"""An IMAP server that cannot be reached: `replies fetch` names it (host:port) and says what
to check, for a refused connection, an unknown host, a timeout, no route, and a port that
does not speak TLS. No Dovecot needed: nothing, or a bare socket, listens."""

from __future__ import annotations

import contextlib
import errno
import socket
import threading
from collections.abc import Iterator

import pytest
from replies_helpers import run_cli, send_example

from mash_requests.errors import Failure, TransientGatewayError
from mash_requests.replies.sources.imap import ImapSource, Settings
from mash_requests.retry import RetryPolicy
from workspace import Workspace

PASSWORD = "imap-secret-never-shown"
#: What every "cannot reach it" error tells the person to check.
CHECKS = ("check [replies.imap] host and port in the config",)


def _configure(
    workspace: Workspace,
    monkeypatch: pytest.MonkeyPatch,
    *,
    host: str = "127.0.0.1",
    port: int,
    security: str = "tls",
) -> None:
    monkeypatch.setenv("MASH_TEST_IMAP_PASSWORD", PASSWORD)
    with workspace.config.open("a", encoding="utf-8") as handle:
        handle.write(
            f'\n[replies]\nsource = "imap"\n\n[replies.imap]\nhost = "{host}"\nport = {port}\n'
            f'security = "{security}"\nusername = "mash-replies"\n'
            'password_env = "MASH_TEST_IMAP_PASSWORD"\ntimeout = 1\n'
        )


def _fetch(workspace: Workspace) -> tuple[int, str, str]:
    send_example(workspace)
    return run_cli("replies", "fetch", "--config", str(workspace.config))


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never says a word (a stuck server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


@pytest.fixture
def plain_port() -> Iterator[int]:
    """A port that answers an IMAP greeting in clear (a STARTTLS port, say 143)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n")
                conn.settimeout(2)
                with contextlib.suppress(OSError):
                    conn.recv(4096)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    server.close()


def _assert_advised(err: str, where: str) -> None:
    """One Error line naming the server and what to check; no password, no traceback."""
    assert err.startswith("Error: ") and err.count("\n") == 1, err
    assert where in err
    assert all(check in err for check in CHECKS), err
    assert PASSWORD not in err and "Traceback" not in err


def test_a_refused_connection_names_the_server_and_what_to_check(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing listens: exit 1 after the retries, "refused the connection", the server,
    the config keys, that it runs, and the firewall."""
    port = _closed_port()
    _configure(workspace, monkeypatch, port=port)
    code, _, err = _fetch(workspace)
    assert code == 1
    _assert_advised(err, f"IMAP server 127.0.0.1:{port} refused the connection")
    assert "that the IMAP server is running" in err and "firewall" in err


def test_an_unknown_host_name_says_to_check_its_spelling(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host name that does not resolve: named with its port, host spelling and DNS."""
    _configure(workspace, monkeypatch, host="imap.mash-requests.invalid", port=993)
    code, _, err = _fetch(workspace)
    assert code == 1
    _assert_advised(err, "the host name of IMAP server imap.mash-requests.invalid:993 could not")
    assert "spelling" in err and "DNS" in err


def test_a_server_that_never_answers_times_out_with_advice(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, silent_port: int
) -> None:
    """Connected but no greeting within [replies.imap] timeout: named, with what to check."""
    _configure(workspace, monkeypatch, port=silent_port)
    code, _, err = _fetch(workspace)
    assert code == 1
    _assert_advised(err, f"IMAP server 127.0.0.1:{silent_port} did not answer within 1 second:")
    assert "firewall" in err


def test_a_plain_port_with_security_tls_says_to_use_starttls(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, plain_port: int
) -> None:
    """TLS from the first byte to a port that greets in clear: permanent, and the fix."""
    _configure(workspace, monkeypatch, port=plain_port)
    code, _, err = _fetch(workspace)
    assert code == 1
    assert f"IMAP server 127.0.0.1:{plain_port} did not answer in TLS" in err
    assert "use security = 'starttls'" in err and PASSWORD not in err


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (OSError(errno.EHOSTUNREACH, "No route to host"), "could not connect to IMAP server"),
        (OSError(errno.ENETUNREACH, "Network is unreachable"), "could not connect to IMAP"),
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "refused the conn"),
        (TimeoutError("timed out"), "did not answer within 5 seconds"),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "could not be found"),
    ],
)
def test_each_way_of_not_connecting_is_transient_and_advised(
    monkeypatch: pytest.MonkeyPatch, error: OSError, said: str
) -> None:
    """Whatever stops the connection: a transient CONNECTION failure (retried) whose
    message names host:port and the config keys to check."""

    def refuse(address: object, timeout: object = None, **_: object) -> socket.socket:
        raise error

    monkeypatch.setattr(socket, "create_connection", refuse)
    settings = Settings(host="imap.example.org", username="u", port=993, password=PASSWORD,
                        timeout=5)  # fmt: skip
    source = ImapSource(settings, RetryPolicy(max_attempts=1), sleep=lambda _: None)
    with pytest.raises(TransientGatewayError) as raised:
        list(source.messages(None, lambda _: False))
    message = str(raised.value)
    assert raised.value.failure is Failure.CONNECTION
    assert said in message and "imap.example.org:993" in message
    assert "check [replies.imap] host and port in the config" in message
    assert PASSWORD not in message
