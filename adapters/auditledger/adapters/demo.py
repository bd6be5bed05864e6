"""A small synthetic pipeline run, recorded through the public Ledger API.

Six tickets are loaded (a source operation), classified by an "LLM" (one state per token,
one call per state; one token fails, and its retry is attempt 1), summarised in batches of
three by an aggregation state that goes PENDING and completes, then written out (a sink
operation). Used by `auditledger demo` and as a readable example of the API.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .ledger import Ledger

TICKETS = [
    "printer on fire",
    "password reset",
    "refund not received",
    "app crashes on login",
    "invoice wrong",
    "feature request: dark mode",
]


@dataclass
class DemoRun:
    run_id: str
    state_ids: list[str] = field(default_factory=list)
    batch_ids: list[str] = field(default_factory=list)
    operation_ids: list[str] = field(default_factory=list)


def record_demo_run(ledger: Ledger) -> DemoRun:
    run_id = ledger.begin_run(config={"pipeline": "ticket-triage", "version": 3, "demo": True})
    demo = DemoRun(run_id=run_id)
    source = ledger.begin_operation(run_id=run_id, node_id="source", operation_type="source_load")
    demo.operation_ids.append(source)
    ledger.record_call(
        operation_id=source, call_type="file", request={"path": "tickets.csv"},
        response={"rows": len(TICKETS)}, latency_ms=1.2,
    )
    ledger.complete_operation(source, output={"rows": len(TICKETS)})

    tokens = [f"ticket-{n}" for n in range(len(TICKETS))]
    for n, (token, text) in enumerate(zip(tokens, TICKETS, strict=True)):
        demo.state_ids.append(_classify(ledger, run_id, token, text, flaky=(n == 3)))

    for start in range(0, len(tokens), 3):
        demo.batch_ids.append(_summarise(ledger, run_id, tokens[start : start + 3], start // 3))

    sink = ledger.begin_operation(run_id=run_id, node_id="sink", operation_type="sink_write")
    demo.operation_ids.append(sink)
    ledger.record_call(
        operation_id=sink, call_type="file", request={"path": "triaged.jsonl", "rows": 6},
        response={"written": 6}, latency_ms=0.8,
    )
    ledger.complete_operation(sink, output={"written": 6})
    ledger.complete_run(run_id, status="completed")
    return demo


def _classify(ledger: Ledger, run_id: str, token: str, text: str, *, flaky: bool) -> str:
    request = {"model": "demo-llm", "messages": [{"role": "user", "content": text}]}
    attempt = 0
    if flaky:
        failed = ledger.open_state(
            run_id=run_id, token_id=token, node_id="classify", step_index=1, input={"text": text}
        )
        ledger.record_call(
            failed, call_type="llm", request=request,
            error={"type": "RateLimitError", "status": 429, "message": "slow down"},
            latency_ms=40.0,
        )
        ledger.fail_state(failed, error={"type": "RateLimitError", "retryable": True})
        attempt = 1
    state = ledger.open_state(
        run_id=run_id, token_id=token, node_id="classify", step_index=1,
        input={"text": text}, attempt=attempt,
    )
    label = "urgent" if "fire" in text or "crash" in text else "normal"
    ledger.record_call(
        state, call_type="llm", request=request,
        response={"choices": [{"message": {"content": label}}]}, latency_ms=210.0,
    )
    ledger.complete_state(state, output={"label": label})
    return state


def _summarise(ledger: Ledger, run_id: str, tokens: list[str], index: int) -> str:
    batch = ledger.create_batch(run_id, "summarise")
    for token in tokens:
        ledger.add_batch_member(batch, token)
    state = ledger.open_state(
        run_id=run_id, token_id=f"batch-{index}", node_id="summarise", step_index=2,
        input={"tokens": tokens},
    )
    ledger.link_batch(batch, state)
    ledger.record_call(
        state, call_type="llm_batch", request={"submit": tokens},
        response={"id": f"batch_{index}", "status": "in_progress"}, latency_ms=95.0,
    )
    ledger.mark_pending(state, reason="provider batch in progress")
    ledger.record_call(
        state, call_type="llm_batch", request={"poll": f"batch_{index}"},
        response={"id": f"batch_{index}", "status": "completed"}, latency_ms=30.0,
    )
    ledger.complete_state(state, output={"summary": f"{len(tokens)} tickets"})
    ledger.complete_batch(batch)
    return batch
