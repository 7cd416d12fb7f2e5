"""Fixtures shared by the gateway tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from gateway_helpers import build_message

from mash_requests.gateways.base import OutgoingMessage


@pytest.fixture
def message() -> OutgoingMessage:
    """A request for information with a small PDF form, as the message builder makes it."""
    return build_message()


@pytest.fixture
def make_message() -> Callable[..., OutgoingMessage]:
    """build_message(form=..., request_ref=...) for tests that need their own."""
    return build_message
