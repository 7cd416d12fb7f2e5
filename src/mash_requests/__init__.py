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

from mash_requests._version import __version__ as __version__

if TYPE_CHECKING:
    from mash_requests.api import send_request
    from mash_requests.batch import BatchResult, send_batch
    from mash_requests.case import Case, Child, Consent, ConsentStatus, Rag, Worker, load_case
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
    from mash_requests.replies import (
        ChaseItem,
        ChaseResult,
        FetchResult,
        OverdueRequest,
        RecordedReply,
        chase,
        fetch_replies,
        overdue,
        record_reply,
    )

# Names are imported on first use (PEP 562), so ``mash-requests --help`` does not pay for
# the whole library; ``import mash_requests`` still offers exactly ``__all__``.
_WHERE: dict[str, str] = {
    "AmbiguousGatewayError": "mash_requests.errors",
    "BatchResult": "mash_requests.batch",
    "Case": "mash_requests.case",
    "CaseFileError": "mash_requests.errors",
    "CaseResult": "mash_requests.dispatch",
    "ChaseItem": "mash_requests.replies",
    "ChaseResult": "mash_requests.replies",
    "ConfigError": "mash_requests.errors",
    "Dispatcher": "mash_requests.dispatch",
    "DuplicateRequestError": "mash_requests.errors",
    "FetchResult": "mash_requests.replies",
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
    "OverdueRequest": "mash_requests.replies",
    "PermanentGatewayError": "mash_requests.errors",
    "Receipt": "mash_requests.gateways.base",
    "RecipientError": "mash_requests.errors",
    "RecordedReply": "mash_requests.replies",
    "RequestOutcome": "mash_requests.dispatch",
    "SendLogError": "mash_requests.errors",
    "Settings": "mash_requests.config",
    "TemplateError": "mash_requests.errors",
    "TransientGatewayError": "mash_requests.errors",
    "chase": "mash_requests.replies",
    "fetch_replies": "mash_requests.replies",
    "Child": "mash_requests.case",
    "Consent": "mash_requests.case",
    "ConsentStatus": "mash_requests.case",
    "Rag": "mash_requests.case",
    "Worker": "mash_requests.case",
    "load_case": "mash_requests.case",
    "load_settings": "mash_requests.config",
    "overdue": "mash_requests.replies",
    "record_reply": "mash_requests.replies",
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
    "ChaseItem",
    "ChaseResult",
    "Child",
    "ConfigError",
    "Consent",
    "ConsentStatus",
    "Dispatcher",
    "DuplicateRequestError",
    "FetchResult",
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
    "OverdueRequest",
    "PermanentGatewayError",
    "Rag",
    "Receipt",
    "RecipientError",
    "RecordedReply",
    "RequestOutcome",
    "SendLogError",
    "Settings",
    "TemplateError",
    "TransientGatewayError",
    "Worker",
    "chase",
    "fetch_replies",
    "load_case",
    "load_settings",
    "overdue",
    "record_reply",
    "send_batch",
    "send_request",
]
