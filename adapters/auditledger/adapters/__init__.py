"""The composition root: stores, the Ledger facade, audited clients and the CLI.

The OpenAI Batch API runner and its values are exported here too, imported on first use
(PEP 562), so `import auditledger.adapters` does not load the openai SDK.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from auditledger.adapters.async_ledger import AsyncLedger
from auditledger.adapters.ledger import Ledger
from auditledger.domain.errors import LedgerError

if TYPE_CHECKING:
    from auditledger.adapters.calls.async_batch_runner import AsyncOpenAIBatchRunner
    from auditledger.adapters.calls.batch_runner import (
        BatchHandle,
        BatchOutcome,
        BatchPending,
        MemberFailure,
        OpenAIBatchRunner,
    )

BATCH_RUNNER = "auditledger.adapters.calls.batch_runner"
_LAZY = {
    name: BATCH_RUNNER
    for name in (
        "BatchHandle",
        "BatchOutcome",
        "BatchPending",
        "MemberFailure",
        "OpenAIBatchRunner",
    )
}
_LAZY["AsyncOpenAIBatchRunner"] = "auditledger.adapters.calls.async_batch_runner"

__all__ = [
    "AsyncLedger",
    "AsyncOpenAIBatchRunner",
    "BatchHandle",
    "BatchOutcome",
    "BatchPending",
    "Ledger",
    "LedgerError",
    "MemberFailure",
    "OpenAIBatchRunner",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
