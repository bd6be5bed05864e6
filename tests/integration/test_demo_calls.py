"""What a newcomer sees in the demo: a real LLM call, an HTTP call, a batch PENDING then done."""

from __future__ import annotations

import json
from uuid import UUID

from auditledger.adapters import Ledger
from auditledger.adapters.calls.replay import recorded_calls
from auditledger.adapters.demo.pipeline import DEMO_KEY, record_demo_run
from auditledger.domain.batch import Batch
from auditledger.domain.node_state import NodeState


def summaries(ledger: Ledger, parent: str) -> list[dict | None]:
    events = [e for e in ledger.app.events.get(UUID(parent)) if hasattr(e, "summary_json")]
    return [None if e.summary_json is None else json.loads(e.summary_json) for e in events]


def test_the_demo_records_real_sdk_http_and_batch_calls_and_can_run_twice(
    ledger: Ledger,
) -> None:
    demo = record_demo_run(ledger)
    record_demo_run(ledger)

    source = recorded_calls(ledger, UUID(demo.operation_ids[0]))
    assert [(c.call_type, c.status) for c in source] == [("http", "success")]
    assert source[0].request["url"] == "https://tickets.local/export.json"

    llm = [s for state in demo.state_ids for s in summaries(ledger, state) if s]
    assert {s["model"] for s in llm} == {"demo-llm"}
    assert all(s["via_batch"] is False and s["prompt_tokens"] for s in llm)
    retried = [recorded_calls(ledger, UUID(state)) for state in demo.state_ids]
    assert [[c.status for c in calls] for calls in retried if len(calls) > 1] == [
        ["error", "success"]
    ]

    for batch_id in demo.batch_ids:
        batch = ledger.load(Batch, batch_id)
        assert batch.status == "completed"
        state = str(batch.state_id)
        events = list(ledger.app.events.get(UUID(state)))
        assert any(isinstance(e, NodeState.StatePending) for e in events)
        assert ledger.load(NodeState, state).status == "completed"
        via_batch = [s for s in summaries(ledger, state) if s and s["via_batch"]]
        assert len(via_batch) == len(batch.members)

    for state in demo.state_ids:
        for call in recorded_calls(ledger, UUID(state)):
            assert DEMO_KEY not in json.dumps(call.request)
