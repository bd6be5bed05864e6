"""A write that committed but whose connection broke before the reply is not recorded twice.

The recorder retries such a write; the retry then meets its own events. The writer must take
that as done (not as a conflict that makes the Ledger run the command again and record the
same call a second time), while a real conflict with another writer still is one.
"""

from __future__ import annotations

import pytest
from eventsourcing.persistence import IntegrityError

from auditledger.adapters import Ledger
from auditledger.adapters.writing.writer import EventWriter
from auditledger.domain.node_state import NodeState


def _pending_call(ledger: Ledger, state_id: str, request: dict[str, int]) -> NodeState:
    from auditledger.adapters.storage.canonical import Payload
    from auditledger.domain.call_parent import CallFacts

    state = ledger.load(NodeState, state_id)
    digest = Payload.of_json(request, "request").digest
    state.record_call(CallFacts(call_type="llm", status="success", request_hash=digest))
    return state


def test_a_write_that_meets_its_own_committed_events_is_taken_as_done(ledger: Ledger) -> None:
    run_id = ledger.begin_run(config={})
    state_id = ledger.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0)
    writer = EventWriter(ledger.app, ledger.payloads)
    stored = writer.collect([_pending_call(ledger, state_id, {"q": 1})])

    writer.write(stored, [])
    writer.write(stored, [])  # the retry of a write that had in fact committed

    assert ledger.load(NodeState, state_id).call_count == 1


def test_a_real_conflict_with_another_writer_is_still_a_conflict(ledger: Ledger) -> None:
    run_id = ledger.begin_run(config={})
    state_id = ledger.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0)
    writer = EventWriter(ledger.app, ledger.payloads)
    mine = writer.collect([_pending_call(ledger, state_id, {"q": 1})])
    theirs = writer.collect([_pending_call(ledger, state_id, {"q": 2})])

    writer.write(theirs, [])
    with pytest.raises(IntegrityError):
        writer.write(mine, [])
