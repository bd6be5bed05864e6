"""Polling a batch on the fake provider until it settles."""

from __future__ import annotations

from auditledger.adapters import OpenAIBatchRunner
from auditledger.adapters.calls.batch_runner import BatchHandle, BatchOutcome, BatchPending


def settle(runner: OpenAIBatchRunner, handle: BatchHandle, polls: int = 5) -> BatchOutcome:
    """The batch's outcome after at most `polls` polls; fails the test if it is still pending."""
    for _ in range(polls):
        try:
            return runner.poll(handle)
        except BatchPending:
            continue
    raise AssertionError("the fake provider never finished")
