"""ledger.retry_batch: attempt n+1 of a failed batch, in one write, naming its predecessor."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from auditledger.adapters import Ledger
from auditledger.domain.batch import Batch
from auditledger.domain.errors import (
    DuplicateRetry,
    InvalidArgument,
    InvalidTransition,
    LedgerError,
    NotAMember,
    RetryMembersFixed,
    RunClosed,
    UnknownBatch,
)
from auditledger.projections.tables import batch_members, batches
from tests.support.landscape_model import dump, log_events, reference_fold

TOKENS = ["t-0", "t-1", "t-2", "t-3"]


@dataclass
class Failed:
    run_id: str
    batch_id: str


def failed_batch(ledger: Ledger, tokens: list[str] = TOKENS, *, link: bool = True) -> Failed:
    run_id = ledger.begin_run(config={})
    batch_id = ledger.create_batch(run_id, "summarise")
    for token in tokens:
        ledger.add_batch_member(batch_id, token)
    if link:
        state_id = ledger.open_state(
            run_id=run_id, token_id=f"flush-{batch_id}", node_id="summarise", step_index=1
        )
        ledger.link_batch(batch_id, state_id)
        ledger.fail_state(state_id, error={"type": "Boom"})
    ledger.fail_batch(batch_id, error={"type": "Boom"})
    return Failed(run_id, batch_id)


def position(ledger: Ledger) -> int:
    return ledger.log_position()


def refused(ledger: Ledger, error: type[LedgerError], command: Callable[[], object]) -> str:
    before = position(ledger)
    with pytest.raises(error) as raised:
        command()
    assert position(ledger) == before
    return str(raised.value)


def landscape_batch(ledger: Ledger, batch_id: str) -> tuple[dict, dict[str, int]]:
    ledger.catch_up()
    with ledger.stores.landscape_engine.connect() as conn:
        row = conn.execute(select(batches).where(batches.c.batch_id == batch_id)).one()
        members = conn.execute(
            select(batch_members.c.token_id, batch_members.c.ordinal).where(
                batch_members.c.batch_id == batch_id
            )
        )
        return dict(row._mapping), {m.token_id: m.ordinal for m in members}


def test_a_retry_is_attempt_one_with_every_member_and_names_its_predecessor(
    ledger: Ledger,
) -> None:
    f = failed_batch(ledger)
    retry_id = ledger.retry_batch(f.batch_id)

    retry = ledger.load(Batch, retry_id)
    assert (retry.status, retry.attempt, str(retry.run_id)) == ("draft", 1, f.run_id)
    assert (retry.aggregation_node_id, str(retry.retry_of_batch_id)) == ("summarise", f.batch_id)
    assert retry.members == {t: n for n, t in enumerate(TOKENS)}
    row, members = landscape_batch(ledger, retry_id)
    assert (row["attempt"], row["retry_of_batch_id"], row["status"]) == (1, f.batch_id, "draft")
    assert members == retry.members
    assert landscape_batch(ledger, f.batch_id)[0]["retry_of_batch_id"] is None


def test_a_subset_keeps_the_old_order_with_ordinals_renumbered_from_zero(ledger: Ledger) -> None:
    f = failed_batch(ledger)
    retry_id = ledger.retry_batch(f.batch_id, members=["t-3", "t-1"])
    assert ledger.load(Batch, retry_id).members == {"t-1": 0, "t-3": 1}
    assert landscape_batch(ledger, retry_id)[1] == {"t-1": 0, "t-3": 1}


def test_the_retry_and_all_its_members_are_one_write(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = failed_batch(ledger)
    writer = ledger.writes.writer
    writes: list[int] = []
    real = writer.write

    def counted(stored, payloads, *rest, **options):  # type: ignore[no-untyped-def]
        writes.append(len(stored))
        return real(stored, payloads, *rest, **options)

    monkeypatch.setattr(writer, "write", counted)
    ledger.retry_batch(f.batch_id)
    assert writes == [1 + len(TOKENS)]


def test_a_retry_that_fails_is_retried_as_attempt_two(ledger: Ledger) -> None:
    f = failed_batch(ledger)
    first = ledger.retry_batch(f.batch_id, members=["t-0", "t-2"])
    ledger.fail_batch(first, error={"type": "Boom again"})
    second = ledger.retry_batch(first, members=["t-2"])

    assert len({f.batch_id, first, second}) == 3
    chain = [(landscape_batch(ledger, b)[0]["attempt"], b) for b in (f.batch_id, first, second)]
    assert [attempt for attempt, _ in chain] == [0, 1, 2]
    assert landscape_batch(ledger, second)[0]["retry_of_batch_id"] == first
    assert landscape_batch(ledger, second)[1] == {"t-2": 0}


def test_a_retry_is_linked_and_settled_like_any_batch(ledger: Ledger) -> None:
    f = failed_batch(ledger)
    retry_id = ledger.retry_batch(f.batch_id)
    state_id = ledger.open_state(
        run_id=f.run_id, token_id="flush-retry", node_id="summarise", step_index=1
    )
    ledger.link_batch(retry_id, state_id)
    ledger.complete_batch(retry_id)
    row, _ = landscape_batch(ledger, retry_id)
    assert (row["status"], row["aggregation_state_id"]) == ("completed", state_id)


def test_retrying_again_with_the_same_members_returns_the_same_retry_and_writes_nothing(
    ledger: Ledger,
) -> None:
    f = failed_batch(ledger)
    retry_id = ledger.retry_batch(f.batch_id, members=["t-1"])
    before = position(ledger)
    assert ledger.retry_batch(f.batch_id, members=["t-1"]) == retry_id
    assert position(ledger) == before
    message = refused(ledger, DuplicateRetry, lambda: ledger.retry_batch(f.batch_id))
    assert f.batch_id in message and retry_id in message


def test_another_ledger_on_the_same_store_meets_the_same_retry(shared_url: str) -> None:
    with Ledger.open(shared_url) as first, Ledger.open(shared_url) as second:
        f = failed_batch(first)
        retry_id = first.retry_batch(f.batch_id, members=["t-0"])
        assert second.retry_batch(f.batch_id, members=["t-0"]) == retry_id
        refused(second, DuplicateRetry, lambda: second.retry_batch(f.batch_id))


@pytest.mark.parametrize("status", ["draft", "executing", "completed"])
def test_only_a_failed_batch_is_retried(ledger: Ledger, status: str) -> None:
    run_id = ledger.begin_run()
    batch_id = ledger.create_batch(run_id, "summarise")
    ledger.add_batch_member(batch_id, "t-0")
    if status != "draft":
        state_id = ledger.open_state(
            run_id=run_id, token_id="flush", node_id="summarise", step_index=1
        )
        ledger.link_batch(batch_id, state_id)
    if status == "completed":
        ledger.complete_batch(batch_id)
    message = refused(ledger, InvalidTransition, lambda: ledger.retry_batch(batch_id))
    assert f"batch {batch_id} is {status}" in message


def test_refused_retries_name_the_rule_and_write_nothing(ledger: Ledger) -> None:
    f = failed_batch(ledger)
    assert "'stranger'" in refused(
        ledger, NotAMember, lambda: ledger.retry_batch(f.batch_id, members=["t-0", "stranger"])
    )
    refused(ledger, InvalidArgument, lambda: ledger.retry_batch(f.batch_id, members=[]))
    refused(ledger, InvalidArgument, lambda: ledger.retry_batch(f.batch_id, ["t-0", "t-0"]))
    refused(ledger, UnknownBatch, lambda: ledger.retry_batch(f"{f.batch_id}_row0"))
    refused(ledger, UnknownBatch, lambda: ledger.retry_batch(f.run_id))


def test_a_retry_needs_a_running_run(ledger: Ledger) -> None:
    f = failed_batch(ledger, link=False)
    ledger.complete_run(f.run_id, status="failed")
    refused(ledger, RunClosed, lambda: ledger.retry_batch(f.batch_id))
    ledger.resume_run(f.run_id)
    assert ledger.load(Batch, ledger.retry_batch(f.batch_id)).attempt == 1


def test_a_batch_with_a_later_attempt_comes_only_from_a_retry(ledger: Ledger) -> None:
    run_id = ledger.begin_run()
    refused(ledger, InvalidArgument, lambda: ledger.create_batch(run_id, "agg", attempt=1))
    assert ledger.load(Batch, ledger.create_batch(run_id, "agg", attempt=0)).attempt == 0


def test_no_token_joins_a_retry_after_it_was_made(ledger: Ledger) -> None:
    f = failed_batch(ledger)
    retry_id = ledger.retry_batch(f.batch_id, members=["t-0"])
    refused(ledger, RetryMembersFixed, lambda: ledger.add_batch_member(retry_id, "t-1"))


def test_a_retry_inside_a_unit_of_work_commits_with_the_unit_or_not_at_all(
    ledger: Ledger,
) -> None:
    f = failed_batch(ledger)
    before = position(ledger)
    with pytest.raises(RuntimeError), ledger.unit_of_work():
        ledger.retry_batch(f.batch_id)
        raise RuntimeError("the engine gave up")
    assert position(ledger) == before
    with ledger.unit_of_work():
        retry_id = ledger.retry_batch(f.batch_id)
        state_id = ledger.open_state(
            run_id=f.run_id, token_id="flush-retry", node_id="summarise", step_index=1
        )
        ledger.link_batch(retry_id, state_id)
    assert ledger.load(Batch, retry_id).status == "executing"


def test_the_landscape_of_retries_is_the_fold_of_the_log_and_rebuilds_the_same(
    ledger: Ledger,
) -> None:
    f = failed_batch(ledger)
    first = ledger.retry_batch(f.batch_id, members=["t-1", "t-2"])
    ledger.fail_batch(first, error={"type": "Boom"})
    ledger.retry_batch(first)
    ledger.catch_up()
    engine = ledger.stores.landscape_engine
    caught_up = dump(engine)
    ledger.rebuild()
    assert dump(engine) == caught_up == reference_fold(log_events(ledger))
    assert ledger.verify().passed


def test_explain_shows_which_batch_a_retry_retries(ledger: Ledger) -> None:
    f = failed_batch(ledger, link=False)
    retry_id = ledger.retry_batch(f.batch_id)
    shown = {b.batch_id: b for b in ledger.explain(run_id=f.run_id).runs[0].batches}
    assert (shown[retry_id].retry_of_batch_id, shown[retry_id].attempt) == (f.batch_id, 1)
    assert shown[f.batch_id].retry_of_batch_id is None
