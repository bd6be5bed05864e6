"""OpenAIBatchRunner with the real openai SDK against a fake provider on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from uuid import UUID

import openai
import pytest

from auditledger.adapters import Ledger
from auditledger.adapters.calls.batch_runner import (
    BatchHandle,
    BatchPending,
    OpenAIBatchRunner,
    custom_id_for,
)
from auditledger.adapters.calls.replay import RecordedCall, recorded_calls
from auditledger.adapters.demo.fake_provider import FakeOpenAI
from auditledger.domain.batch import Batch
from auditledger.domain.errors import InvalidArgument, UnknownState
from auditledger.domain.node_state import NodeState

TOKENS = ["ticket-0", "ticket-1", "ticket-2"]
SECRET = "sk-batch-7d1e-never-in-the-ledger"


@pytest.fixture
def batch_polls() -> int:
    return 2  # a batch answers "in progress" once before it ends


@dataclass
class Flush:
    run_id: str
    batch_id: str
    state_id: str


def flush(ledger: Ledger, tokens: list[str] = TOKENS) -> Flush:
    run_id = ledger.begin_run(config={})
    batch_id = ledger.create_batch(run_id, "summarise")
    for token in tokens:
        ledger.add_batch_member(batch_id, token)
    state_id = ledger.open_state(
        run_id=run_id, token_id="flush-0", node_id="summarise", step_index=1
    )
    return Flush(run_id, batch_id, state_id)


def requests_for(tokens: list[str]) -> dict[str, dict]:
    return {t: {"model": "m", "messages": [{"role": "user", "content": t}]} for t in tokens}


def runner_for(ledger: Ledger, base_url: str, retries: int = 0) -> OpenAIBatchRunner:
    client = openai.OpenAI(api_key=SECRET, base_url=base_url, max_retries=retries, timeout=0.3)
    return OpenAIBatchRunner(ledger, client)


def calls(ledger: Ledger, state_id: str) -> list[RecordedCall]:
    return recorded_calls(ledger, UUID(state_id))


def statuses(ledger: Ledger, f: Flush) -> tuple[str, str]:
    return ledger.load(NodeState, f.state_id).status, ledger.load(Batch, f.batch_id).status


def test_submit_leaves_the_state_pending_the_batch_linked_and_the_jsonl_hash_matched(
    ledger: Ledger, base_url: str
) -> None:
    f = flush(ledger)
    handle = runner_for(ledger, base_url).submit(f.batch_id, f.state_id, requests_for(TOKENS))

    assert statuses(ledger, f) == ("pending", "executing")
    assert str(ledger.load(Batch, f.batch_id).state_id) == f.state_id
    upload, create = calls(ledger, f.state_id)
    assert (upload.call_index, create.call_index) == (0, 1)
    [part] = [p for p in upload.request["body"]["parts"] if p["name"] == "file"]
    jsonl = ledger.payload(part["sha256"])
    assert hashlib.sha256(jsonl).hexdigest() == part["sha256"] == handle.input_sha256
    lines = [json.loads(line) for line in jsonl.splitlines()]
    assert [line["custom_id"] for line in lines] == [
        custom_id_for(f.batch_id, n) for n in range(len(TOKENS))
    ]
    assert [line["body"]["messages"][0]["content"] for line in lines] == TOKENS


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_batch_polled_after_a_restart_goes_pending_then_completes(
    kind: str, base_url: str, tmp_path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path}/ledger"
        if kind == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    with Ledger.open(url) as first:
        f = flush(first)
        handle = runner_for(first, base_url).submit(f.batch_id, f.state_id, requests_for(TOKENS))
        with pytest.raises(BatchPending) as pending:
            runner_for(first, base_url).poll(handle)
        assert pending.value.handle == handle
        assert statuses(first, f) == ("pending", "executing")
        persisted = json.dumps(handle.to_json())

    with Ledger.open(url) as second:
        outcome = runner_for(second, base_url).poll(BatchHandle.from_json(json.loads(persisted)))
        assert outcome.status == "completed"
        assert sorted(outcome.results) == TOKENS
        assert statuses(second, f) == ("completed", "completed")
        state = second.load(NodeState, f.state_id)
        output = json.loads(second.payload(state.output_hash))
        assert output["results"] == outcome.results

        recorded = calls(second, f.state_id)
        assert [c.call_index for c in recorded] == list(range(len(recorded)))
        members = [c for c in recorded if c.call_type == "llm"]
        assert [c.request["custom_id"] for c in members] == [
            custom_id_for(f.batch_id, n) for n in range(3)
        ]
        assert [c.request["token_id"] for c in members] == TOKENS
        download = next(c for c in recorded if c.request.get("url", "").endswith("/content"))
        output_file = second.payload(download.response["body"]["sha256"])
        assert len(output_file.splitlines()) == 3
        assert runner_for(second, base_url).poll(handle).status == "completed"


@pytest.mark.parametrize("fault", ["expire", "fail", "cancel"])
def test_a_batch_the_provider_does_not_finish_fails_with_an_error_call_per_member(
    memory_ledger: Ledger, fake: FakeOpenAI, base_url: str, fault: str
) -> None:
    f = flush(memory_ledger)
    fake.inject(fault)
    runner = runner_for(memory_ledger, base_url)
    handle = runner.submit(f.batch_id, f.state_id, requests_for(TOKENS))
    with pytest.raises(BatchPending):
        runner.poll(handle)
    outcome = runner.poll(handle)

    assert outcome.status == "failed"
    assert statuses(memory_ledger, f) == ("failed", "failed")
    missing = [c for c in calls(memory_ledger, f.state_id) if c.call_type == "llm"]
    assert [c.error["type"] for c in missing] == ["MissingBatchOutput"] * 3
    assert [c.error["custom_id"] for c in missing] == [
        custom_id_for(f.batch_id, n) for n in range(3)
    ]
    error = json.loads(memory_ledger.load(NodeState, f.state_id).error_json)
    assert error["provider_status"] == {"expire": "expired", "fail": "failed"}.get(
        fault, "cancelled"
    )


@pytest.mark.parametrize(
    ("fault", "member", "error_type"),
    [("missing_line", 2, "MissingBatchOutput"), ("error_line", 0, "BatchMemberFailed")],
)
def test_a_member_without_a_result_fails_the_state_and_is_named_by_custom_id(
    memory_ledger: Ledger,
    fake: FakeOpenAI,
    base_url: str,
    fault: str,
    member: int,
    error_type: str,
) -> None:
    f = flush(memory_ledger)
    fake.inject(fault)
    runner = runner_for(memory_ledger, base_url)
    handle = runner.submit(f.batch_id, f.state_id, requests_for(TOKENS))
    with pytest.raises(BatchPending):
        runner.poll(handle)
    outcome = runner.poll(handle)

    assert outcome.status == "failed"
    [(token, failure)] = outcome.failures.items()
    assert (token, failure.custom_id, failure.kind) == (
        TOKENS[member],
        custom_id_for(f.batch_id, member),
        error_type,
    )
    assert sorted(outcome.results) == sorted(set(TOKENS) - {TOKENS[member]})
    assert statuses(memory_ledger, f) == ("failed", "failed")
    errors = [c for c in calls(memory_ledger, f.state_id) if c.status == "error"]
    assert [(c.error["type"], c.error["custom_id"]) for c in errors] == [
        (error_type, custom_id_for(f.batch_id, member))
    ]


@pytest.mark.parametrize(("fault", "path"), [("500", "/files"), ("drop", "/batches")])
def test_a_failed_submit_is_an_error_call_and_leaves_state_and_batch_failed_not_open(
    memory_ledger: Ledger, fake: FakeOpenAI, base_url: str, fault: str, path: str
) -> None:
    f = flush(memory_ledger)
    fake.inject(fault, on=path)
    with pytest.raises(openai.APIError):
        runner_for(memory_ledger, base_url).submit(f.batch_id, f.state_id, requests_for(TOKENS))
    assert statuses(memory_ledger, f) == ("failed", "failed")
    recorded = calls(memory_ledger, f.state_id)
    assert recorded[-1].status == "error"
    assert [c.call_index for c in recorded] == list(range(len(recorded)))


@pytest.mark.parametrize("fault", ["timeout", "malformed", "429"])
def test_a_failed_poll_is_an_error_call_and_the_handle_stays_usable(
    memory_ledger: Ledger, fake: FakeOpenAI, base_url: str, fault: str
) -> None:
    f = flush(memory_ledger)
    runner = runner_for(memory_ledger, base_url)
    handle = runner.submit(f.batch_id, f.state_id, requests_for(TOKENS))
    fake.inject(fault, on="/batches/")
    with pytest.raises((openai.APIError, json.JSONDecodeError)):
        runner.poll(handle)
    assert statuses(memory_ledger, f) == ("pending", "executing")
    assert calls(memory_ledger, f.state_id)[-1].status == "error"

    with pytest.raises(BatchPending):
        runner.poll(handle)
    assert runner.poll(handle).status == "completed"
    assert statuses(memory_ledger, f) == ("completed", "completed")


def test_a_poll_failing_after_a_retried_error_records_each_failure_once(
    memory_ledger: Ledger, fake: FakeOpenAI, base_url: str
) -> None:
    f = flush(memory_ledger)
    runner = runner_for(memory_ledger, base_url, retries=1)
    handle = runner.submit(f.batch_id, f.state_id, requests_for(TOKENS))
    before = len(calls(memory_ledger, f.state_id))
    fake.inject("429", on="/batches/")  # an error call, then retried by the SDK
    fake.inject("malformed", on="/batches/")  # a 200 the SDK cannot parse: ends the step
    with pytest.raises((openai.APIError, json.JSONDecodeError)):
        runner.poll(handle)

    poll = calls(memory_ledger, f.state_id)[before:]
    assert [(c.status, c.error["type"]) for c in poll] == [
        ("error", "HTTPStatus"),
        ("error", "MalformedResponse"),  # the transport recorded what ended the step
    ]


def test_requests_that_do_not_match_the_members_are_refused_before_anything_is_sent(
    memory_ledger: Ledger, fake: FakeOpenAI, base_url: str
) -> None:
    f = flush(memory_ledger)
    before = memory_ledger.app.recorder.max_notification_id()
    with pytest.raises(InvalidArgument, match="one request per member"):
        runner_for(memory_ledger, base_url).submit(
            f.batch_id, f.state_id, requests_for([*TOKENS[:2], "stranger"])
        )
    assert memory_ledger.app.recorder.max_notification_id() == before
    assert fake.requests == []


def test_a_made_up_state_id_is_refused_before_anything_is_sent(
    memory_ledger: Ledger, fake: FakeOpenAI, base_url: str
) -> None:
    f = flush(memory_ledger)
    before = memory_ledger.app.recorder.max_notification_id()
    with pytest.raises(UnknownState):
        runner_for(memory_ledger, base_url).submit(
            f.batch_id, f"{f.state_id}_row0", requests_for(TOKENS)
        )
    assert memory_ledger.app.recorder.max_notification_id() == before
    assert fake.requests == []


def test_a_crash_between_batch_create_and_pending_is_recovered_from_the_ledger_alone(
    memory_ledger: Ledger, base_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = flush(memory_ledger)
    runner = runner_for(memory_ledger, base_url)

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt("the engine process died here")

    monkeypatch.setattr(memory_ledger, "mark_state_pending", crash)
    with pytest.raises(KeyboardInterrupt):
        runner.submit(f.batch_id, f.state_id, requests_for(TOKENS))
    monkeypatch.undo()
    assert statuses(memory_ledger, f) == ("open", "executing")

    handle = runner.recover(f.batch_id)
    assert statuses(memory_ledger, f) == ("pending", "executing")
    assert handle.state_id == f.state_id
    assert handle.provider_batch_id.startswith("batch-")
    with pytest.raises(BatchPending):
        runner.poll(handle)
    assert runner.poll(handle).status == "completed"
    assert runner.recover(f.batch_id) == handle


def test_a_batch_that_was_never_submitted_has_nothing_to_recover(
    memory_ledger: Ledger, base_url: str
) -> None:
    f = flush(memory_ledger)
    with pytest.raises(InvalidArgument, match="never submitted"):
        runner_for(memory_ledger, base_url).recover(f.batch_id)
