"""explain shows what was recorded: llm summaries, a state's payload refs, and for a token in
a batch the state that executed the batch and the member's result call."""

from __future__ import annotations

import hashlib
import json

from auditledger.adapters import Ledger
from auditledger.adapters.demo.pipeline import record_demo_run


def test_a_tokens_lineage_shows_its_llm_calls_refs_and_its_batch_result(ledger: Ledger) -> None:
    demo = record_demo_run(ledger)
    token = f"{demo.run_id[:8]}/ticket-1"

    (run,) = ledger.explain(token_id=token).runs

    (classify,) = run.states
    assert classify.input_payload == "present" and classify.output_payload == "present"
    assert classify.input_hash is not None
    text = json.loads(ledger.payload(classify.input_hash))["text"]
    assert text == "password reset"
    (call,) = classify.calls
    assert call.request_ref == call.request_hash and call.request_payload == "present"
    assert call.summary["model"] == "demo-llm" and call.summary["via_batch"] is False
    assert call.summary["total_tokens"] == (
        call.summary["prompt_tokens"] + call.summary["completion_tokens"]
    )
    (batch,) = run.batches  # executed by a state that is not the token's own
    assert batch.executed_by is not None
    assert batch.executed_by.node_id == "summarise" and batch.executed_by.status == "completed"
    member = next(m for m in batch.members if m.token_id == token)
    result = member.result_call
    assert result is not None and result.status == "success"
    assert result.summary["via_batch"] is True
    assert result.summary["custom_id"] == f"{batch.batch_id}:{member.ordinal}"
    others = [m.result_call.call_id for m in batch.members if m.result_call is not None]
    assert len(set(others)) == len(batch.members) == 3


def test_a_state_that_executed_a_batch_names_its_members_result_calls(ledger: Ledger) -> None:
    demo = record_demo_run(ledger)
    (run,) = ledger.explain(run_id=demo.run_id).runs
    summarise = [s for s in run.states if s.node_id == "summarise"]
    assert len(summarise) == 2
    for state in summarise:
        (batch,) = state.batches
        assert batch.executed_by is not None and batch.executed_by.state_id == state.state_id
        results = {c.call_id for c in state.calls}
        assert all(m.result_call is not None and m.result_call.call_id in results
                   for m in batch.members)  # fmt: skip
    assert run.batches == []  # every batch is shown under the state that executed it


def test_an_http_calls_request_json_names_a_body_whose_bytes_hash_to_it(ledger: Ledger) -> None:
    demo = record_demo_run(ledger)
    (run,) = ledger.explain(run_id=demo.run_id).runs
    source = next(op for op in run.operations if op.operation_type == "source_load")
    (call,) = source.calls
    assert call.summary is None  # a plain http call carries no llm summary
    assert call.response_ref is not None
    named = json.loads(ledger.payload(call.response_ref))["body"]["sha256"]
    assert hashlib.sha256(ledger.payload(named)).hexdigest() == named
