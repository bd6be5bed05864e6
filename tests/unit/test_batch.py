"""Batch: draft (members, dense ordinals, each token once) -> executing -> completed | failed."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest

from auditledger.domain.batch import Batch, retry_id_for
from auditledger.domain.errors import (
    DuplicateMember,
    InvalidArgument,
    InvalidLink,
    InvalidTransition,
    NotAMember,
    RetryMembersFixed,
)

RUN = uuid4()
NODE = "aggregate"


def drafted() -> Batch:
    batch = Batch.create(batch_id=uuid4(), run_id=RUN, aggregation_node_id=NODE, attempt=0)
    batch.collect_events()
    return batch


def linked(state_id: UUID | None = None) -> Batch:
    batch = drafted()
    batch.add_member("t0")
    batch.link(state_id or uuid4(), run_id=RUN, node_id=NODE, state_status="open")
    batch.collect_events()
    return batch


def in_status(status: str) -> Batch:
    if status == "draft":
        return drafted()
    batch = linked()
    if status == "completed":
        batch.complete()
    elif status == "failed":
        batch.fail('{"type":"Boom"}')
    batch.collect_events()
    return batch


def test_a_new_batch_is_a_draft_with_no_members() -> None:
    batch_id = uuid4()
    batch = Batch.create(batch_id=batch_id, run_id=RUN, aggregation_node_id=NODE, attempt=0)
    assert (batch.id, batch.run_id, batch.aggregation_node_id, batch.attempt) == (
        batch_id,
        RUN,
        NODE,
        0,
    )
    assert (batch.status, batch.members, batch.state_id) == ("draft", {}, None)


@pytest.mark.parametrize(
    ("field", "value"), [("aggregation_node_id", ""), ("aggregation_node_id", 3), ("attempt", -1)]
)
def test_creating_a_batch_refuses_malformed_fields_by_name(field: str, value: object) -> None:
    fields: dict[str, object] = dict(
        batch_id=uuid4(), run_id=RUN, aggregation_node_id=NODE, attempt=0
    )
    fields[field] = value
    with pytest.raises(InvalidArgument, match=field):
        Batch.create(**fields)  # type: ignore[arg-type]


def test_members_get_dense_ordinals_from_zero() -> None:
    batch = drafted()
    assert [batch.add_member(t) for t in ("a", "b", "c")] == [0, 1, 2]
    assert [e.ordinal for e in batch.collect_events()] == [0, 1, 2]
    assert batch.members == {"a": 0, "b": 1, "c": 2}


def test_a_token_joins_a_batch_once() -> None:
    batch = drafted()
    batch.add_member("a")
    batch.collect_events()
    with pytest.raises(DuplicateMember) as raised:
        batch.add_member("a")
    assert str(batch.id) in str(raised.value)
    assert "'a'" in str(raised.value)
    assert "joins a batch once" in str(raised.value)
    assert batch.pending_events == []
    assert batch.members == {"a": 0}


def test_a_member_token_must_be_a_name() -> None:
    batch = drafted()
    with pytest.raises(InvalidArgument, match="token_id"):
        batch.add_member("")
    assert batch.pending_events == []


@pytest.mark.parametrize("status", ["executing", "completed", "failed"])
def test_members_join_only_while_the_batch_is_a_draft(status: str) -> None:
    batch = in_status(status)
    with pytest.raises(InvalidTransition) as raised:
        batch.add_member("late")
    assert str(batch.id) in str(raised.value)
    assert batch.pending_events == []
    assert "late" not in batch.members


def test_a_draft_links_to_an_open_or_pending_state_of_its_run_and_node() -> None:
    for state_status in ("open", "pending"):
        batch = drafted()
        state_id = uuid4()
        batch.link(state_id, run_id=RUN, node_id=NODE, state_status=state_status)
        assert (batch.status, batch.state_id) == ("executing", state_id)


@pytest.mark.parametrize(
    ("run_id", "node_id", "state_status", "reason"),
    [
        (uuid4(), NODE, "open", "belongs to run"),
        (RUN, "classify", "open", "is at node 'classify'"),
        (RUN, NODE, "completed", "already completed"),
        (RUN, NODE, "failed", "already failed"),
    ],
)
def test_a_draft_refuses_a_link_to_a_foreign_or_terminal_state(
    run_id: UUID, node_id: str, state_status: str, reason: str
) -> None:
    batch = drafted()
    state_id = uuid4()
    with pytest.raises(InvalidLink) as raised:
        batch.link(state_id, run_id=run_id, node_id=node_id, state_status=state_status)
    assert str(batch.id) in str(raised.value)
    assert str(state_id) in str(raised.value)
    assert reason in str(raised.value)
    assert (batch.status, batch.pending_events) == ("draft", [])


def test_linking_again_to_the_same_state_changes_nothing() -> None:
    state_id = uuid4()
    batch = linked(state_id)
    batch.link(state_id, run_id=RUN, node_id=NODE, state_status="open")
    assert batch.pending_events == []


def test_an_executing_batch_cannot_be_linked_to_another_state() -> None:
    batch = linked()
    with pytest.raises(InvalidTransition, match=str(batch.id)):
        batch.link(uuid4(), run_id=RUN, node_id=NODE, state_status="open")
    assert batch.pending_events == []


@pytest.mark.parametrize("status", ["completed", "failed"])
def test_nothing_changes_a_terminal_batch(status: str) -> None:
    batch = in_status(status)
    assert batch.state_id is not None
    for command in (
        lambda: batch.add_member("x"),
        lambda: batch.link(uuid4(), run_id=RUN, node_id=NODE, state_status="open"),
        lambda: batch.complete(),
        lambda: batch.fail('{"e":1}'),
    ):
        with pytest.raises(InvalidTransition) as raised:
            command()
        assert f"batch {batch.id} is {status}" in str(raised.value)
    assert (batch.status, batch.pending_events) == (status, [])


def test_an_executing_batch_completes() -> None:
    batch = linked()
    batch.complete()
    assert batch.status == "completed"


def test_a_draft_batch_cannot_complete_without_the_state_that_ran_it() -> None:
    batch = drafted()
    with pytest.raises(InvalidTransition, match="cannot become completed"):
        batch.complete()
    assert batch.pending_events == []


@pytest.mark.parametrize("status", ["draft", "executing"])
def test_a_draft_or_executing_batch_can_fail_with_its_error(status: str) -> None:
    batch = in_status(status)
    batch.fail('{"type":"Boom"}')
    assert batch.status == "failed"
    assert [type(e).__name__ for e in batch.collect_events()] == ["BatchFailed"]


def test_failing_a_batch_requires_an_error_text() -> None:
    batch = linked()
    with pytest.raises(InvalidArgument, match="error"):
        batch.fail("")
    assert (batch.status, batch.pending_events) == ("executing", [])


def test_replaying_a_batchs_events_reconstructs_an_equal_batch() -> None:
    batch = Batch.create(batch_id=uuid4(), run_id=RUN, aggregation_node_id=NODE, attempt=0)
    batch.add_member("a")
    batch.add_member("b")
    batch.link(uuid4(), run_id=RUN, node_id=NODE, state_status="pending")
    batch.complete()
    copy = None
    for event in batch.collect_events():
        copy = event.mutate(copy)
    assert copy == batch


def failed_with(tokens: list[str]) -> Batch:
    batch = drafted()
    for token in tokens:
        batch.add_member(token)
    batch.link(uuid4(), run_id=RUN, node_id=NODE, state_status="open")
    batch.fail('{"type":"Boom"}')
    batch.collect_events()
    return batch


@pytest.mark.parametrize("attempt", [1, 2])
def test_a_new_batch_with_a_later_attempt_is_refused_it_comes_only_from_a_retry(
    attempt: int,
) -> None:
    with pytest.raises(InvalidArgument, match="retry_batch"):
        Batch.create(batch_id=uuid4(), run_id=RUN, aggregation_node_id=NODE, attempt=attempt)


def test_a_retry_is_the_next_attempt_of_the_failed_batch_with_all_its_members() -> None:
    failed = failed_with(["a", "b", "c"])
    retry = failed.retry()
    assert (retry.id, retry.run_id, retry.aggregation_node_id, retry.attempt) == (
        retry_id_for(failed.id),
        RUN,
        NODE,
        1,
    )
    assert (retry.status, retry.members, retry.state_id) == ("draft", failed.members, None)
    assert retry.retry_of_batch_id == failed.id
    events = retry.collect_events()
    assert [type(e).__name__ for e in events] == ["BatchRetried"] + ["BatchMemberAdded"] * 3
    assert failed.pending_events == []


def test_a_subset_keeps_its_members_old_order_with_ordinals_renumbered_from_zero() -> None:
    failed = failed_with(["a", "b", "c", "d"])
    assert failed.retry(["d", "b"]).members == {"b": 0, "d": 1}


@pytest.mark.parametrize(
    ("members", "error", "named"),
    [
        (["a", "stranger"], NotAMember, "'stranger'"),
        (["a", "a"], InvalidArgument, "each token once"),
        ([], InvalidArgument, "at least one member"),
        ("a", InvalidArgument, "a list of token ids"),
        ([["a"]], InvalidArgument, "a list of token ids"),
    ],
)
def test_a_retry_holds_only_members_of_the_failed_batch_each_once(
    members: list[str], error: type[Exception], named: str
) -> None:
    failed = failed_with(["a", "b"])
    with pytest.raises(error, match=named) as raised:
        failed.retry(members)
    assert str(failed.id) in str(raised.value) or error is InvalidArgument


@pytest.mark.parametrize("status", ["draft", "executing", "completed"])
def test_only_a_failed_batch_is_retried(status: str) -> None:
    batch = in_status(status)
    with pytest.raises(InvalidTransition) as raised:
        batch.retry()
    assert f"batch {batch.id} is {status}" in str(raised.value)
    assert "only a failed batch" in str(raised.value)


def test_a_retry_that_fails_is_retried_as_the_attempt_after_it() -> None:
    first = failed_with(["a", "b"])
    second = first.retry(["b"])
    second.link(uuid4(), run_id=RUN, node_id=NODE, state_status="open")
    second.fail('{"type":"Boom"}')
    third = second.retry()
    assert (third.attempt, third.retry_of_batch_id, third.members) == (2, second.id, {"b": 0})
    assert len({first.id, second.id, third.id}) == 3


def test_the_members_of_a_retry_are_fixed() -> None:
    retry = failed_with(["a"]).retry()
    retry.collect_events()
    with pytest.raises(RetryMembersFixed, match="'b'"):
        retry.add_member("b")
    assert retry.pending_events == []


def test_replaying_a_retrys_events_reconstructs_an_equal_batch() -> None:
    retry = failed_with(["a", "b"]).retry(["b"])
    copy = None
    for event in retry.collect_events():
        copy = event.mutate(copy)
    assert copy == retry
    assert copy is not None and copy.retry_of_batch_id == retry.retry_of_batch_id
