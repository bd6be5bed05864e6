"""A small synthetic pipeline run, recorded through the public Ledger API and its adapters.

Six tickets are fetched from a ticket service (a source operation: one real HTTP call through
the audited httpx client), classified by an LLM (the real openai SDK, one state per token;
one token is rate limited and retried as attempt 1, another gets a 500 the SDK retries
inside its state), summarised in batches of three through the OpenAI Batch API (each
aggregation state goes PENDING, is polled, and completes), then written out (a sink
operation). Every external party is in-process (httpx.MockTransport, FakeOpenAI), so the
demo needs no network and no key. Used by `auditledger demo`, and a readable example.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import httpx
import openai
from openai.types.chat import ChatCompletionMessageParam

from auditledger.adapters.calls.batch_runner import BatchHandle, BatchPending, OpenAIBatchRunner
from auditledger.adapters.demo.fake_provider import FakeOpenAI
from auditledger.adapters.ledger import Ledger

TICKETS = [
    "printer on fire",
    "password reset",
    "refund not received",
    "app crashes on login",
    "invoice wrong",
    "feature request: dark mode",
]
PROVIDER_URL = "https://fake-openai.local/v1"
DEMO_KEY = "sk-demo-redacted-in-the-ledger"
MAX_POLLS = 10


@dataclass
class DemoRun:
    run_id: str
    state_ids: list[str] = field(default_factory=list)
    batch_ids: list[str] = field(default_factory=list)
    operation_ids: list[str] = field(default_factory=list)


def ticket_service(request: httpx.Request) -> httpx.Response:
    """The in-process ticket system the source reads from."""
    return httpx.Response(200, json={"tickets": TICKETS})


def record_demo_run(ledger: Ledger) -> DemoRun:
    provider = FakeOpenAI(batch_polls=2)
    run_id = ledger.begin_run(config={"pipeline": "ticket-triage", "version": 4, "demo": True})
    demo = DemoRun(run_id=run_id)

    source = ledger.begin_operation(run_id=run_id, node_id="source", operation_type="source_load")
    demo.operation_ids.append(source)
    with ledger.http_client(
        operation_id=source, transport=httpx.MockTransport(ticket_service)
    ) as tickets_api:
        tickets = tickets_api.get("https://tickets.local/export.json").json()["tickets"]
    ledger.complete_operation(source, output={"rows": len(tickets)})

    tokens = [f"{run_id[:8]}/ticket-{n}" for n in range(len(tickets))]  # token ids are per run
    for n, (token, text) in enumerate(zip(tokens, tickets, strict=True)):
        if n == 3:
            provider.inject("429")  # attempt 0 gives up; the engine retries as attempt 1
        if n == 4:
            provider.inject("500")  # the SDK retries inside the state: error, then success
        demo.state_ids.append(_classify(ledger, provider, run_id, token, text))

    client = openai.OpenAI(api_key=DEMO_KEY, base_url=PROVIDER_URL, max_retries=1)
    runner = OpenAIBatchRunner(ledger, client, transport=httpx.MockTransport(provider.handle))
    for start in range(0, len(tokens), 3):
        members = dict(zip(tokens[start : start + 3], tickets[start : start + 3], strict=True))
        demo.batch_ids.append(_summarise(ledger, runner, run_id, members, start // 3))

    sink = ledger.begin_operation(run_id=run_id, node_id="sink", operation_type="sink_write")
    demo.operation_ids.append(sink)
    ledger.record_call(
        operation_id=sink,
        call_type="file",
        request={"path": "triaged.jsonl", "rows": len(tokens)},
        response={"written": len(tokens)},
        latency_ms=0.8,
    )
    ledger.complete_operation(sink, output={"written": len(tokens)})
    ledger.complete_run(run_id, status="completed")
    return demo


def _classify(ledger: Ledger, provider: FakeOpenAI, run_id: str, token: str, text: str) -> str:
    messages: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": f"Classify this ticket: {text}"}
    ]
    for attempt in range(2):
        state = ledger.open_state(
            run_id=run_id,
            token_id=token,
            node_id="classify",
            step_index=1,
            input={"text": text},
            attempt=attempt,
        )
        llm = ledger.openai(
            state,
            api_key=DEMO_KEY,
            base_url=PROVIDER_URL,
            max_retries=0 if attempt == 0 and token.endswith("ticket-3") else 1,
            transport=httpx.MockTransport(provider.handle),
        )
        try:
            completion = llm.chat.completions.create(model="demo-llm", messages=messages)
        except openai.RateLimitError as error:
            ledger.fail_state(state, error={"type": type(error).__name__, "retryable": True})
            continue
        ledger.complete_state(state, output={"label": completion.choices[0].message.content})
        return state
    raise RuntimeError(f"{token}: still rate limited after a retry")


def _summarise(
    ledger: Ledger, runner: OpenAIBatchRunner, run_id: str, members: dict[str, str], index: int
) -> str:
    batch = ledger.create_batch(run_id, "summarise")
    for token in members:
        ledger.add_batch_member(batch, token)
    state = ledger.open_state(
        run_id=run_id,
        token_id=f"{run_id[:8]}/batch-{index}",
        node_id="summarise",
        step_index=2,
        input={"tokens": list(members)},
    )
    requests = {
        token: {
            "model": "demo-llm",
            "messages": [{"role": "user", "content": f"Summarise: {text}"}],
        }
        for token, text in members.items()
    }
    handle = json.dumps(runner.submit(batch, state, requests).to_json())  # what an engine keeps
    for _ in range(MAX_POLLS):
        try:
            runner.poll(BatchHandle.from_json(json.loads(handle)))
            return batch
        except BatchPending:
            continue
    raise RuntimeError(f"batch {batch} still pending after {MAX_POLLS} polls")
