"""mash-requests: MASH requests for information, with the referral form attached and evidenced.

The public API, for case-management scripts and auditors' notebooks::

    from pathlib import Path
    import mash_requests

    settings = mash_requests.load_settings(Path("mash-requests.toml"))
    result = mash_requests.send_request(settings, Path("cases/MASH-2026-0412.json"))
    for outcome in result.outcomes:
        print(outcome.partner, outcome.outcome, outcome.request_ref)

Everything else in the package is an implementation detail and may change.
"""

from __future__ import annotations

from mash_requests.api import send_request
from mash_requests.case import Case, load_case
from mash_requests.config import Settings, load_settings
from mash_requests.dispatch import CaseResult, Dispatcher, Outcome, RequestOutcome
from mash_requests.errors import (
    AmbiguousGatewayError,
    CaseFileError,
    ConfigError,
    DuplicateRequestError,
    FormRefusedError,
    GatewayError,
    InputError,
    LogError,
    MashRequestsError,
    OperationalError,
    PermanentGatewayError,
    RecipientError,
    TemplateError,
    TransientGatewayError,
)
from mash_requests.gateways.base import Gateway, OutgoingMessage, Receipt

__all__ = [
    "AmbiguousGatewayError",
    "Case",
    "CaseFileError",
    "CaseResult",
    "ConfigError",
    "Dispatcher",
    "DuplicateRequestError",
    "FormRefusedError",
    "Gateway",
    "GatewayError",
    "InputError",
    "LogError",
    "MashRequestsError",
    "OperationalError",
    "Outcome",
    "OutgoingMessage",
    "PermanentGatewayError",
    "Receipt",
    "RecipientError",
    "RequestOutcome",
    "Settings",
    "TemplateError",
    "TransientGatewayError",
    "load_case",
    "load_settings",
    "send_request",
]
