"""Outcomes an engine can act on: one outcome per settled batch, keyed by token id, each
failure with the provider's error object, and retry_failed for the failed members only."""

from __future__ import annotations

import json
from dataclasses import dataclass

import openai
import pytest
from sqlalchemy import select

from auditledger.adapters import BatchHandle, Ledger, MemberFailure, OpenAIBatchRunner
from auditledger.adapters.calls.batch_runner import custom_id_for
from auditledger.adapters.demo.fake_provider import FakeOpenAI
from auditledger.domain.batch import Batch
from auditledger.domain.errors import InvalidTransition
from auditledger.domain.node_state import NodeState
from auditledger.projections.tables import batches
from tests.support.batches import settle

TOKENS = ["ticket-0", "ticket-1", "ticket-2"]


@dataclass
class Flush:
    run_id: str
    batch_id: str
    state_id: str


def flush(ledger: Ledger) -> Flush:
    run_id = ledger.begin_run(config={})
    batch_id = ledger.create_batch(run_id, "summarise")
    for token in TOKENS:
        ledger.add_batch_member(batch_id, token)
    state_id = ledger.open_state(
        run_id=run_id,
        token_id=f"flush-{batch_id}",
        node_id="summarise",
        step_index=1,
        input={"flush": 0},
    )
    return Flush(run_id, batch_id, state_id)


def bodies(tokens: list[str]) -> dict[str, dict]:
    return {t: {"model": "m", "messages": [{"role": "user", "content": t}]} for t in tokens}


def runner_for(ledger: Ledger, base_url: str) -> OpenAIBatchRunner:
    client = openai.OpenAI(api_key="sk-test", base_url=base_url, max_retries=0, timeout=2)
    return OpenAIBatchRunner(ledger, client)


def submitted(ledger: Ledger, fake: FakeOpenAI, base_url: str, fault: str | None):  # type: ignore[no-untyped-def]
    f = flush(ledger)
    if fault is not None:
        fake.inject(fault)
    runner = runner_for(ledger, base_url)
    return f, runner, runner.submit(f.batch_id, f.state_id, bodies(TOKENS))


@pytest.mark.parametrize("fault", [None, "error_line", "missing_line", "expire"])
def test_every_poll_of_a_settled_batch_returns_the_same_outcome_keyed_by_token_id(
    ledger: Ledger, store_url: str, fake: FakeOpenAI, base_url: str, fault: str | None
) -> None:
    _f, runner, handle = submitted(ledger, fake, base_url, fault)
    first = settle(runner, handle)
    asked = len(fake.requests)

    assert runner.poll(handle) == first
    assert runner.poll(BatchHandle.from_json(json.loads(json.dumps(handle.to_json())))) == first
    assert len(fake.requests) == asked  # settled: answered from the ledger
    assert set(first.results) | set(first.failures) == set(TOKENS)
    assert not set(first.results) & set(first.failures)
    if store_url != "memory://":
        with Ledger.open(store_url) as reopened:
            assert runner_for(reopened, base_url).poll(handle) == first


def test_a_failed_member_carries_the_providers_error_and_the_others_keep_their_results(
    ledger: Ledger, fake: FakeOpenAI, base_url: str
) -> None:
    f, runner, handle = submitted(ledger, fake, base_url, "error_line")
    outcome = settle(runner, handle)

    assert (outcome.status, outcome.provider_status) == ("failed", "completed")
    assert sorted(outcome.results) == TOKENS[1:]
    assert all(body["choices"] for body in outcome.results.values())
    failure = outcome.failures["ticket-0"]
    assert failure == MemberFailure(
        token_id="ticket-0",
        custom_id=custom_id_for(f.batch_id, 0),
        kind="BatchMemberFailed",
        error={"message": "bad request"},
        status_code=400,
        file_id=failure.file_id,
    )
    assert failure.file_id is not None
    [call] = [c for c in ledger.recorded_calls(f.state_id) if c.status == "error"]
    assert (call.error["provider_error"], call.error["status_code"]) == (
        {"message": "bad request"},
        400,
    )
    assert runner.poll(handle).results == outcome.results


def test_a_member_with_no_line_has_no_provider_error(
    ledger: Ledger, fake: FakeOpenAI, base_url: str
) -> None:
    _f, runner, handle = submitted(ledger, fake, base_url, "missing_line")
    failure = settle(runner, handle).failures["ticket-2"]
    assert (failure.kind, failure.error, failure.status_code, failure.file_id) == (
        "MissingBatchOutput",
        None,
        None,
        None,
    )


def test_retry_failed_submits_only_the_failed_members_as_the_next_attempt(
    ledger: Ledger, fake: FakeOpenAI, base_url: str
) -> None:
    f, runner, handle = submitted(ledger, fake, base_url, "error_line")
    settle(runner, handle)
    sent_before = len(fake.files)

    retry = runner.retry_failed(handle)
    outcome = settle(runner, retry)

    batch = ledger.load(Batch, retry.batch_id)
    assert (batch.attempt, str(batch.retry_of_batch_id), batch.members) == (
        1,
        f.batch_id,
        {"ticket-0": 0},
    )
    state = ledger.load(NodeState, retry.state_id)
    first_state = ledger.load(NodeState, f.state_id)
    assert (state.token_id, state.node_id, state.step_index, state.attempt) == (
        first_state.token_id,
        "summarise",
        1,
        1,
    )
    assert state.input_hash == first_state.input_hash
    jsonl = [json.loads(line) for line in ledger.payload(retry.input_sha256).splitlines()]
    assert [(line["custom_id"], line["body"]) for line in jsonl] == [
        (custom_id_for(retry.batch_id, 0), bodies(["ticket-0"])["ticket-0"])
    ]
    assert len(fake.files) > sent_before
    assert (outcome.status, sorted(outcome.results)) == ("completed", ["ticket-0"])
    ledger.catch_up()
    with ledger.landscape_engine.connect() as conn:
        row = conn.execute(select(batches).where(batches.c.batch_id == retry.batch_id)).one()
    assert (row.retry_of_batch_id, row.attempt, row.status) == (f.batch_id, 1, "completed")


def test_retry_failed_takes_the_batch_id_and_a_state_the_engine_opened(
    ledger: Ledger, fake: FakeOpenAI, base_url: str
) -> None:
    f, runner, handle = submitted(ledger, fake, base_url, "expire")
    settle(runner, handle)
    own = ledger.open_state(
        run_id=f.run_id, token_id="flush-again", node_id="summarise", step_index=1
    )
    changed = {t: {**body, "model": "m2"} for t, body in bodies(TOKENS).items()}

    retry = runner.retry_failed(f.batch_id, state_id=own, requests=changed)

    assert retry.state_id == own
    assert ledger.load(Batch, retry.batch_id).members == {t: n for n, t in enumerate(TOKENS)}
    jsonl = [json.loads(line) for line in ledger.payload(retry.input_sha256).splitlines()]
    assert {line["body"]["model"] for line in jsonl} == {"m2"}
    assert settle(runner, retry).status == "completed"


def test_a_retry_that_fails_again_is_retried_as_attempt_two(
    ledger: Ledger, fake: FakeOpenAI, base_url: str
) -> None:
    _f, runner, handle = submitted(ledger, fake, base_url, "fail")
    settle(runner, handle)
    fake.inject("error_line")
    second = runner.retry_failed(handle)
    assert settle(runner, second).status == "failed"
    third = runner.retry_failed(second)
    assert ledger.load(Batch, third.batch_id).attempt == 2
    assert ledger.load(NodeState, third.state_id).attempt == 2
    assert settle(runner, third).status == "completed"


@pytest.mark.parametrize("settled", [True, False])
def test_only_a_failed_batch_is_retried_and_a_refusal_writes_nothing(
    ledger: Ledger, fake: FakeOpenAI, base_url: str, settled: bool
) -> None:
    f, runner, handle = submitted(ledger, fake, base_url, None)
    if settled:
        settle(runner, handle)
    before = ledger.log_position()
    with pytest.raises(InvalidTransition, match=f.batch_id):
        runner.retry_failed(handle)
    assert ledger.log_position() == before


def test_a_batch_the_engine_failed_before_any_result_retries_every_member(
    ledger: Ledger, fake: FakeOpenAI, base_url: str
) -> None:
    f, runner, handle = submitted(ledger, fake, base_url, None)
    ledger.fail_state(f.state_id, error={"type": "EngineGaveUp"})
    ledger.fail_batch(f.batch_id, error={"type": "EngineGaveUp"})
    outcome = runner.poll(handle)
    assert {t: x.kind for t, x in outcome.failures.items()} == dict.fromkeys(
        TOKENS, "MissingBatchOutput"
    )
    retry = runner.retry_failed(handle)
    assert ledger.load(Batch, retry.batch_id).members == {t: n for n, t in enumerate(TOKENS)}
