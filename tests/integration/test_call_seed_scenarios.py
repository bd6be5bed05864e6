"""The field reports of ../shared/seeds about external calls, replayed against the adapters.

000/001 synthetic state ids; 002 JSONL not kept and SDK failures not recorded; 003 a batch
left OPEN and unlinked; 004 call_index gaps. Plus: no secret ever reaches any store.
Each runs on memory://, SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from pathlib import Path
from uuid import UUID

import httpx
import openai
import pytest
from sqlalchemy import MetaData, create_engine, select

from auditledger.adapters import Ledger
from auditledger.adapters.calls.batch_runner import BatchPending, OpenAIBatchRunner, custom_id_for
from auditledger.adapters.calls.replay import recorded_calls
from auditledger.adapters.demo.fake_provider import FakeOpenAI
from auditledger.domain.batch import Batch
from auditledger.domain.call_parent import CallRecordedEvent
from auditledger.domain.errors import UnknownState
from auditledger.domain.node_state import NodeState

SECRET = "sk-seed-0c7f21d9-must-never-be-stored"
CONTROL = "gpt-seed-visible-control"
TOKENS = [f"row-{n}" for n in range(4)]


@pytest.fixture
def batch_polls() -> int:
    return 2  # a batch answers "in progress" once before it ends


def aggregation(ledger: Ledger) -> tuple[str, str, str]:
    run_id = ledger.begin_run(config={"seed": True})
    batch_id = ledger.create_batch(run_id, "classify_batch")
    for token in TOKENS:
        ledger.add_batch_member(batch_id, token)
    state_id = ledger.open_state(
        run_id=run_id, token_id="flush-0", node_id="classify_batch", step_index=1
    )
    return run_id, batch_id, state_id


def requests_for(tokens: list[str]) -> dict[str, dict]:
    return {t: {"model": CONTROL, "messages": [{"role": "user", "content": t}]} for t in tokens}


def call_events(ledger: Ledger) -> list[CallRecordedEvent]:
    events = []
    for notification in ledger.app.recorder.select_notifications(start=1, limit=100_000):
        event = ledger.app.mapper.to_domain_event(notification)
        if isinstance(event, CallRecordedEvent):
            events.append(event)
    return events


def run_batch_to_completion(ledger: Ledger, base_url: str) -> tuple[str, str]:
    _, batch_id, state_id = aggregation(ledger)
    client = openai.OpenAI(api_key=SECRET, base_url=base_url, max_retries=0)
    runner = OpenAIBatchRunner(ledger, client)
    handle = runner.submit(batch_id, state_id, requests_for(TOKENS))
    with pytest.raises(BatchPending):
        runner.poll(handle)
    assert runner.poll(handle).status == "completed"
    return batch_id, state_id


def test_000_001_batch_mode_records_every_call_under_the_real_state_never_a_synthetic_one(
    ledger: Ledger, base_url: str
) -> None:
    _, batch_id, state_id = aggregation(ledger)
    for n in range(len(TOKENS)):
        with pytest.raises(UnknownState):
            ledger.openai(f"{state_id}_row{n}", api_key=SECRET, base_url=base_url)
        with pytest.raises(UnknownState):
            ledger.record_call(f"{state_id}_row{n}", call_type="llm", request={"row": n})
    client = openai.OpenAI(api_key=SECRET, base_url=base_url, max_retries=0)
    runner = OpenAIBatchRunner(ledger, client)
    handle = runner.submit(batch_id, state_id, requests_for(TOKENS))
    with pytest.raises(BatchPending):
        runner.poll(handle)
    runner.poll(handle)

    parents = {event.originator_id for event in call_events(ledger)}
    assert parents == {UUID(state_id)}
    members = [c for c in recorded_calls(ledger, UUID(state_id)) if c.call_type == "llm"]
    batch = ledger.load(Batch, batch_id)
    assert {c.request["custom_id"]: c.request["token_id"] for c in members} == {
        custom_id_for(batch_id, ordinal): token for token, ordinal in batch.members.items()
    }


def test_002_the_jsonl_is_kept_whole_and_matches_its_hash(ledger: Ledger, base_url: str) -> None:
    _, state_id = run_batch_to_completion(ledger, base_url)
    calls = recorded_calls(ledger, UUID(state_id))
    upload = calls[0]
    [part] = [p for p in upload.request["body"]["parts"] if p["name"] == "file"]
    jsonl = ledger.payload(part["sha256"])
    assert hashlib.sha256(jsonl).hexdigest() == part["sha256"]
    assert len(jsonl.splitlines()) == len(TOKENS)
    downloads = [c for c in calls if c.request.get("url", "").endswith("/content")]
    assert downloads
    for download in downloads:
        body = ledger.payload(download.response["body"]["sha256"])
        assert hashlib.sha256(body).hexdigest() == download.response["body"]["sha256"]
        assert len(body) == download.response["body"]["size"]


@pytest.mark.parametrize(
    "fault", ["429", "500", "timeout", "drop", "malformed", "expire", "missing_line"]
)
def test_002_every_injected_fault_produced_an_error_call(
    ledger: Ledger, fake: FakeOpenAI, base_url: str, fault: str
) -> None:
    _, batch_id, state_id = aggregation(ledger)
    client = openai.OpenAI(api_key=SECRET, base_url=base_url, max_retries=0, timeout=0.3)
    runner = OpenAIBatchRunner(ledger, client)
    if fault in ("expire", "missing_line"):
        fake.inject(fault)
        handle = runner.submit(batch_id, state_id, requests_for(TOKENS))
        with pytest.raises(BatchPending):
            runner.poll(handle)
        assert runner.poll(handle).status == "failed"
    else:
        fake.inject(fault, on="/files")
        with pytest.raises(Exception) as raised:
            runner.submit(batch_id, state_id, requests_for(TOKENS))
        assert isinstance(raised.value, (openai.OpenAIError, json.JSONDecodeError))
    errors = [c for c in recorded_calls(ledger, UUID(state_id)) if c.status == "error"]
    assert errors
    assert ledger.load(NodeState, state_id).status == "failed"
    assert ledger.load(Batch, batch_id).status == "failed"


def test_003_a_batch_that_goes_pending_then_completes_leaves_no_open_state_and_is_linked(
    ledger: Ledger, base_url: str
) -> None:
    batch_id, state_id = run_batch_to_completion(ledger, base_url)
    opened = [
        ledger.app.mapper.to_domain_event(n)
        for n in ledger.app.recorder.select_notifications(start=1, limit=100_000)
    ]
    state_ids = {e.originator_id for e in opened if isinstance(e, NodeState.StateOpened)}
    assert {ledger.load(NodeState, s).status for s in state_ids} == {"completed"}
    assert any(isinstance(e, NodeState.StatePending) for e in opened)
    batch = ledger.load(Batch, batch_id)
    assert (batch.status, str(batch.state_id)) == ("completed", state_id)


def test_004_call_index_is_dense_per_state_under_threads_and_retries(
    ledger: Ledger, fake: FakeOpenAI, base_url: str
) -> None:
    run_id = ledger.begin_run(config={})
    states = [
        ledger.open_state(run_id=run_id, token_id=f"t{n}", node_id="classify", step_index=0)
        for n in range(2)
    ]
    fake.inject("429", times=3)
    clients = [ledger.openai(s, api_key=SECRET, base_url=base_url, max_retries=5) for s in states]

    def work(client: openai.OpenAI) -> None:
        for _ in range(3):
            client.chat.completions.create(
                model=CONTROL, messages=[{"role": "user", "content": "x"}]
            )

    threads = [threading.Thread(target=work, args=(clients[n % 2],)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for state in states:
        indices = [c.call_index for c in recorded_calls(ledger, UUID(state))]
        successes = [c for c in recorded_calls(ledger, UUID(state)) if c.status == "success"]
        assert indices == list(range(len(indices)))
        assert len(successes) == 6
    total = sum(len(recorded_calls(ledger, UUID(s))) for s in states)
    assert total == 12 + 3


def test_no_secret_reaches_any_store(
    store_url: str, base_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    with Ledger.open(store_url) as ledger:
        run_batch_to_completion(ledger, base_url)
        state = ledger.open_state(
            run_id=ledger.begin_run(config={}), token_id="s", node_id="n", step_index=0
        )
        chat = ledger.openai(
            state,
            api_key=SECRET,
            base_url=base_url,
            default_headers={"api-key": SECRET, "x-api-key": SECRET, "x-vault": SECRET},
            redact_headers=["X-Vault"],
        )
        chat.chat.completions.create(model=CONTROL, messages=[{"role": "user", "content": "hi"}])
        answer = httpx.MockTransport(
            lambda r: httpx.Response(200, headers={"set-cookie": f"sid={SECRET}"}, text=CONTROL)
        )
        with ledger.http_client(state, transport=answer) as client:
            client.get("https://api.example/", headers={"Cookie": f"sid={SECRET}"})
        events, raw = everything_stored(ledger, store_url)
    assert CONTROL.encode() in raw  # the raw scan does see what was recorded
    assert SECRET.encode() not in events
    assert SECRET.encode() not in raw


def everything_stored(ledger: Ledger, store_url: str) -> tuple[bytes, bytes]:
    """(every decoded event, every raw byte held: files on disk, every table, payloads)."""
    notifications = ledger.app.recorder.select_notifications(start=1, limit=100_000)
    events = b"\n".join(
        repr(vars(ledger.app.mapper.to_domain_event(n))).encode() for n in notifications
    )
    blobs = [n.state for n in notifications]
    if store_url.startswith("sqlite:///"):
        directory = Path(store_url.removeprefix("sqlite:///"))
        blobs += [p.read_bytes() for p in directory.rglob("*") if p.is_file()]
    elif store_url.startswith("postgresql://"):
        engine = create_engine(store_url.replace("postgresql://", "postgresql+psycopg://", 1))
        tables = MetaData()
        try:
            with engine.connect() as conn:
                tables.reflect(conn)
                for table in tables.sorted_tables:
                    for row in conn.execute(select(table)):
                        blobs += [v if isinstance(v, bytes) else str(v).encode() for v in row]
        finally:
            engine.dispose()
    else:
        blobs += reachable_payloads(ledger, events)
    return events, b"\n".join(blobs)


def reachable_payloads(ledger: Ledger, events: bytes) -> list[bytes]:
    """Every payload a digest in the events (or in a payload read so far) names."""
    found: dict[str, bytes] = {}
    pending = set(re.findall(rb"[0-9a-f]{64}", events))
    while pending:
        digests = [d.decode() for d in pending if d.decode() not in found]
        pending = set()
        for digest, (data, _) in ledger.payloads.read_many(digests).items():
            found[digest] = data or b""
            pending |= set(re.findall(rb"[0-9a-f]{64}", data or b""))
    return [data for data in found.values() if data]
