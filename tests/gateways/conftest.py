"""Fixtures shared by the gateway tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme
from gateway_helpers import build_message
from smtp_server import FaultyHandler, Server, authenticator, server_context, start

from mash_requests.gateways.base import OutgoingMessage


@pytest.fixture
def message() -> OutgoingMessage:
    """A request for information with a small PDF form, as the message builder makes it."""
    return build_message()


@pytest.fixture
def make_message() -> Callable[..., OutgoingMessage]:
    """build_message(form=..., request_ref=...) for tests that need their own."""
    return build_message


# -- a real SMTP server on 127.0.0.1 ----------------------------------------------------


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
def starttls_server(ca: trustme.CA) -> Iterator[Server]:
    server = start(
        FaultyHandler(),
        tls_context=server_context(ca),
        require_starttls=True,
        authenticator=authenticator,
        auth_require_tls=True,
    )
    yield server
    server.controller.stop()


@pytest.fixture
def tls_server(ca: trustme.CA) -> Iterator[Server]:
    server = start(
        FaultyHandler(),
        ssl_context=server_context(ca),
        authenticator=authenticator,
        auth_require_tls=False,  # the whole connection is TLS; aiosmtpd cannot tell
    )
    yield server
    server.controller.stop()


@pytest.fixture
def plain_server() -> Iterator[Server]:
    server = start(FaultyHandler())
    yield server
    server.controller.stop()
