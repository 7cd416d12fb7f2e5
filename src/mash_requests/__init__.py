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

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mash_requests.api import send_request
    from mash_requests.batch import BatchResult, send_batch
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
        HandedOver,
        InputError,
        LogError,
        MashRequestsError,
        OperationalError,
        PermanentGatewayError,
        RecipientError,
        SendLogError,
        TemplateError,
        TransientGatewayError,
    )
    from mash_requests.gateways.base import Gateway, OutgoingMessage, Receipt

# Names are imported on first use (PEP 562), so ``mash-requests --help`` does not pay for
# the whole library; ``import mash_requests`` still offers exactly ``__all__``.
_WHERE: dict[str, str] = {
    "AmbiguousGatewayError": "mash_requests.errors",
    "BatchResult": "mash_requests.batch",
    "Case": "mash_requests.case",
    "CaseFileError": "mash_requests.errors",
    "CaseResult": "mash_requests.dispatch",
    "ConfigError": "mash_requests.errors",
    "Dispatcher": "mash_requests.dispatch",
    "DuplicateRequestError": "mash_requests.errors",
    "FormRefusedError": "mash_requests.errors",
    "Gateway": "mash_requests.gateways.base",
    "GatewayError": "mash_requests.errors",
    "HandedOver": "mash_requests.errors",
    "InputError": "mash_requests.errors",
    "LogError": "mash_requests.errors",
    "MashRequestsError": "mash_requests.errors",
    "OperationalError": "mash_requests.errors",
    "Outcome": "mash_requests.dispatch",
    "OutgoingMessage": "mash_requests.gateways.base",
    "PermanentGatewayError": "mash_requests.errors",
    "Receipt": "mash_requests.gateways.base",
    "RecipientError": "mash_requests.errors",
    "RequestOutcome": "mash_requests.dispatch",
    "SendLogError": "mash_requests.errors",
    "Settings": "mash_requests.config",
    "TemplateError": "mash_requests.errors",
    "TransientGatewayError": "mash_requests.errors",
    "load_case": "mash_requests.case",
    "load_settings": "mash_requests.config",
    "send_batch": "mash_requests.batch",
    "send_request": "mash_requests.api",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'mash_requests' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "AmbiguousGatewayError",
    "BatchResult",
    "Case",
    "CaseFileError",
    "CaseResult",
    "ConfigError",
    "Dispatcher",
    "DuplicateRequestError",
    "FormRefusedError",
    "Gateway",
    "GatewayError",
    "HandedOver",
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
    "SendLogError",
    "Settings",
    "TemplateError",
    "TransientGatewayError",
    "load_case",
    "load_settings",
    "send_batch",
    "send_request",
]
