"""What a retry of a failed batch sends, decided on the ledger's side alone; the sync and the
async runners both submit what `plan_retry` returns (`retry_failed`), so they cannot differ.

Invariants kept here:
- only a failed batch is retried (any other is refused by `retry_batch`, writing nothing),
  and only its members without a result; a batch whose every member has one is refused;
- the retry is the batch's next attempt (`retry_batch`, attempt n+1), run under the given
  open state or else the next attempt of the state that ran the batch (same token, node,
  step and input; reused when a crash left it opened);
- each member's body is the one sent before (from the recorded JSONL) unless the caller
  gives them all.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from auditledger.adapters.calls.ports import BatchLedger
from auditledger.domain.batch import Batch
from auditledger.domain.errors import InvalidArgument, UnknownState
from auditledger.domain.lifecycle import BatchStatus
from auditledger.domain.node_state import NodeState

Requests = Mapping[str, Mapping[str, Any]]


class _Outcome(Protocol):
    @property
    def failures(self) -> Mapping[str, Any]: ...


class Settled(Protocol):
    """What the plan asks of BatchSettlement: a settled batch's outcome."""

    def settled(self, handle: Any, state: NodeState) -> _Outcome: ...


@dataclass(frozen=True)
class RetryPlan:
    batch_id: str  # the retry's batch (attempt n+1), holding the failed members only
    state_id: str  # the open state it runs under
    requests: Requests  # token id -> body


def plan_retry(
    ledger: BatchLedger,
    settlement: Settled,
    handle: Any,
    *,
    state_id: str | None = None,
    requests: Requests | None = None,
) -> RetryPlan:
    """Create the retry of the failed batch of `handle` (a BatchHandle) and say what to send."""
    batch = ledger.load(Batch, handle.batch_id)
    if batch.status != BatchStatus.FAILED:
        ledger.retry_batch(batch.id)  # refused: only a failed batch is retried
    state = ledger.load(NodeState, handle.state_id)
    tokens = list(settlement.settled(handle, state).failures)
    if not tokens:
        raise InvalidArgument(
            "batch_id", handle.batch_id, "every member has a result: nothing to retry"
        )
    if requests is None:
        sent = input_bodies(ledger.payload(handle.input_sha256))
        requests = {t: sent[custom_id_for(handle.batch_id, batch.members[t])] for t in tokens}
    retry_id = ledger.retry_batch(batch.id, members=tokens)
    return RetryPlan(retry_id, state_id or next_attempt(ledger, state), requests)


def custom_id_for(batch_id: str, ordinal: int) -> str:
    """A member's custom_id in the JSONL: "<batch_id>:<ordinal>"."""
    return f"{batch_id}:{ordinal}"


def next_attempt(ledger: BatchLedger, state: NodeState) -> str:
    """The next attempt of `state`: opened now, or the one a crash left open."""
    attempt = state.attempt + 1
    next_id = ledger.state_id(token_id=state.token_id, node_id=state.node_id, attempt=attempt)
    try:
        return str(ledger.load(NodeState, next_id).id)
    except UnknownState:
        pass
    given = None if state.input_hash is None else json.loads(ledger.payload(state.input_hash))
    return ledger.open_state(
        run_id=state.run_id,
        token_id=state.token_id,
        node_id=state.node_id,
        step_index=state.step_index,
        input=given,
        attempt=attempt,
    )


def input_bodies(jsonl: bytes) -> dict[str, Any]:
    """custom_id -> body of a batch's recorded JSONL."""
    bodies = {}
    for line in jsonl.splitlines():
        item = json.loads(line)
        bodies[item["custom_id"]] = item["body"]
    return bodies
