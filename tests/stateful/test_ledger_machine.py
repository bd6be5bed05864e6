"""Random command sequences drive the real Ledger and a tiny reference model side by side.

Bundles hand generated ids back to later rules; every command is tried whether or not it is
legal, and the model says which typed error an illegal one must raise. After every step:
the ledger agrees with the model, a refused command appended nothing, call_index is dense
per parent, no terminal parent accepts a call, and replaying each aggregate from the store
equals the live copy the Ledger keeps. A state's id is unique per (run, token, node, attempt);
the latest context a state was given is the one its events hold; complete_run("completed")
is refused (RunNotSettled, nothing appended) while the model has any of the run's states or
operations open or pending or batches draft or executing.

Tokens and call ids carry a per-example prefix, so examples on one SQLite directory or one
PostgreSQL database never meet (state and call-key ids derive from them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar
from uuid import UUID, uuid4

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from auditledger.adapters import Ledger
from auditledger.domain.batch import Batch
from auditledger.domain.call_parent import CallFacts
from auditledger.domain.errors import (
    CallIdConflict,
    DuplicateAttempt,
    DuplicateMember,
    DuplicateRetry,
    InvalidArgument,
    InvalidLink,
    InvalidTransition,
    LedgerError,
    NotAMember,
    ParentClosed,
    RetryMembersFixed,
    RunClosed,
    RunNotSettled,
    UnknownBatch,
    UnknownState,
)
from auditledger.domain.node_state import NodeState
from auditledger.domain.operation import Operation
from auditledger.domain.run import Run

E = TypeVar("E", bound=LedgerError)
TOKENS = st.sampled_from(["t0", "t1", "t2"])
NODES = st.sampled_from(["agg", "llm"])
ATTEMPTS = st.integers(0, 1)
REQUESTS = st.integers(0, 2)
CALL_IDS = st.none() | st.sampled_from(["k0", "k1", "k2"])
SUBSETS = (
    st.none()
    | st.lists(TOKENS, min_size=1, max_size=2, unique=True)
    | st.lists(st.sampled_from(["t0", "t9"]), max_size=2)  # strangers, twice, none
)
RUN_ENDINGS = st.sampled_from(["completed", "failed", "interrupted"])
TERMINAL = {"completed", "failed"}
NEXT = {"open": {"pending", "completed", "failed"}, "pending": {"completed", "failed"}}


@dataclass
class ParentModel:
    kind: type[NodeState] | type[Operation]
    run_id: str
    node_id: str
    status: str = "open"
    calls: list[tuple[str | None, int]] = field(default_factory=list)
    context: str | None = None


@dataclass
class BatchModel:
    run_id: str
    node_id: str
    status: str = "draft"
    members: list[str] = field(default_factory=list)
    state_id: str | None = None
    attempt: int = 0
    retry_of: str | None = None
    retry: str | None = None  # the one retry of this batch, once it failed and was retried


class LedgerMachine(RuleBasedStateMachine):
    URL = "memory://"
    shared: Ledger | None = None  # SQL backends: one Ledger (one store) for all examples

    runs = Bundle("runs")
    states = Bundle("states")
    operations = Bundle("operations")
    batches = Bundle("batches")

    def __init__(self) -> None:
        super().__init__()
        self.ledger = self.shared or Ledger.open(self.URL)
        self.prefix = uuid4().hex[:8]
        self.run_status: dict[str, str] = {}
        self.parents: dict[str, ParentModel] = {}
        self.opened: set[tuple[str, str, str, int]] = set()
        self.batch_models: dict[str, BatchModel] = {}
        self.call_keys: dict[str, str] = {}

    def teardown(self) -> None:
        if self.shared is None:
            self.ledger.close()

    # Helpers

    def position(self) -> int:
        return int(self.ledger.app.recorder.max_notification_id() or 0)

    def refused(self, error: type[LedgerError], command: Callable[[], object]) -> None:
        self.refused_with(error, command)

    def refused_with(self, error: type[E], command: Callable[[], object]) -> E:
        before = self.position()
        with pytest.raises(error) as raised:
            command()
        assert self.position() == before
        return raised.value

    def unchanged(self, command: Callable[[], Any]) -> Any:
        before = self.position()
        result = command()
        assert self.position() == before
        return result

    def token(self, token: str) -> str:
        return f"{self.prefix}-{token}"

    # Runs

    @rule(target=runs)
    def begin_run(self) -> str:
        run_id = self.ledger.begin_run(config={"example": self.prefix})
        self.run_status[run_id] = "running"
        return run_id

    def unsettled(self, run_id: str) -> set[str]:
        parents = {p for p, m in self.parents.items() if m.run_id == run_id}
        batches = {b for b, m in self.batch_models.items() if m.run_id == run_id}
        return {p for p in parents if self.parents[p].status not in TERMINAL} | {
            b for b in batches if self.batch_models[b].status in ("draft", "executing")
        }

    @rule(run_id=runs, ending=RUN_ENDINGS)
    def complete_run(self, run_id: str, ending: str) -> None:
        if self.run_status[run_id] != "running":
            self.refused(InvalidTransition, lambda: self.ledger.complete_run(run_id, ending))
            return
        unsettled = self.unsettled(run_id)
        if ending == "completed" and unsettled:
            error = self.refused_with(
                RunNotSettled, lambda: self.ledger.complete_run(run_id, ending)
            )
            assert error.count == len(unsettled)
            assert set(error.unsettled_ids) <= unsettled
            assert len(error.unsettled_ids) == min(5, len(unsettled))
            return
        self.ledger.complete_run(run_id, ending)
        self.run_status[run_id] = ending

    @precondition(
        lambda self: any(
            status == "running" and not self.unsettled(run_id)
            for run_id, status in self.run_status.items()
        )
    )
    @rule(data=st.data())
    def complete_a_settled_run(self, data: Any) -> None:
        settled = [  # in the order begun: a random id must not decide what a draw picks
            r for r, s in self.run_status.items() if s == "running" and not self.unsettled(r)
        ]
        self.complete_run(data.draw(st.sampled_from(settled)), "completed")

    @rule(run_id=runs)
    def resume_run(self, run_id: str) -> None:
        if self.run_status[run_id] not in ("failed", "interrupted"):
            self.refused(InvalidTransition, lambda: self.ledger.resume_run(run_id))
            return
        self.ledger.resume_run(run_id)
        self.run_status[run_id] = "running"

    # Node states and operations

    @rule(target=states, run_id=runs, token=TOKENS, node=NODES, attempt=ATTEMPTS)
    def open_state(self, run_id: str, token: str, node: str, attempt: int) -> Any:
        def command() -> str:
            return self.ledger.open_state(
                run_id=run_id,
                token_id=self.token(token),
                node_id=node,
                step_index=0,
                input={"token": token},
                attempt=attempt,
            )

        if self.run_status[run_id] != "running":
            self.refused(RunClosed, command)
            return multiple()
        if (run_id, token, node, attempt) in self.opened:
            self.refused(DuplicateAttempt, command)
            return multiple()
        state_id = command()
        assert state_id == self.ledger.state_id(
            run_id=run_id, token_id=self.token(token), node_id=node, attempt=attempt
        )
        self.opened.add((run_id, token, node, attempt))
        self.parents[state_id] = ParentModel(NodeState, run_id, node)
        return state_id

    @rule(target=operations, run_id=runs, node=NODES)
    def begin_operation(self, run_id: str, node: str) -> Any:
        def command() -> str:
            return self.ledger.begin_operation(
                run_id=run_id, node_id=node, operation_type="source_load"
            )

        if self.run_status[run_id] != "running":
            self.refused(RunClosed, command)
            return multiple()
        operation_id = command()
        self.parents[operation_id] = ParentModel(Operation, run_id, node)
        return operation_id

    def record(self, parent_id: str, request: int, call_id: str | None, failed: bool) -> None:
        model = self.parents[parent_id]
        key = None if call_id is None else self.token(call_id)
        as_state = model.kind is NodeState

        def command() -> int:
            return self.ledger.record_call(
                parent_id if as_state else None,
                operation_id=None if as_state else parent_id,
                call_type="llm",
                request={"n": request},
                error={"type": "Timeout"} if failed else None,
                call_id=key,
            )

        if key is not None and key in self.call_keys:
            if self.call_keys[key] == parent_id:
                index = [k for k, _ in model.calls].index(key)
                if model.calls[index][1] == request:
                    assert self.unchanged(command) == index
                else:
                    self.refused(CallIdConflict, command)
                return
            if model.status not in TERMINAL:
                self.refused(CallIdConflict, command)
                return
        if model.status in TERMINAL:
            self.refused(ParentClosed, command)
            return
        assert command() == len(model.calls)
        model.calls.append((key, request))
        if key is not None:
            self.call_keys[key] = parent_id

    @rule(state_id=states, request=REQUESTS, call_id=CALL_IDS, failed=st.booleans())
    def record_call_on_state(
        self, state_id: str, request: int, call_id: str | None, failed: bool
    ) -> None:
        self.record(state_id, request, call_id, failed)

    @rule(operation_id=operations, request=REQUESTS, call_id=CALL_IDS, failed=st.booleans())
    def record_call_on_operation(
        self, operation_id: str, request: int, call_id: str | None, failed: bool
    ) -> None:
        self.record(operation_id, request, call_id, failed)

    @rule(state_id=states)
    def record_call_on_a_synthetic_row_id(self, state_id: str) -> None:
        self.refused(
            UnknownState,
            lambda: self.ledger.record_call(f"{state_id}_row0", call_type="llm", request={}),
        )

    def transition(self, parent_id: str, target: str, context: int | None = None) -> None:
        model = self.parents[parent_id]
        as_state = model.kind is NodeState
        given = None if context is None or not as_state else {"pool": context}
        commands: dict[str, Callable[[], None]] = {
            "pending": lambda: (
                self.ledger.mark_pending(parent_id, "polling", context=given)
                if as_state
                else self.ledger.mark_operation_pending(parent_id, "polling")
            ),
            "completed": lambda: (
                self.ledger.complete_state(parent_id, output={"done": target}, context=given)
                if as_state
                else self.ledger.complete_operation(parent_id, output={"done": target})
            ),
            "failed": lambda: (
                self.ledger.fail_state(parent_id, error={"type": "Boom"}, context=given)
                if as_state
                else self.ledger.fail_operation(parent_id, error={"type": "Boom"})
            ),
        }
        if target not in NEXT.get(model.status, set()):
            self.refused(InvalidTransition, commands[target])
            return
        commands[target]()
        model.status = target
        if given is not None:
            model.context = f'{{"pool":{context}}}'

    @rule(
        parent_id=states | operations,
        goal=st.sampled_from(["pending", "completed", "failed"]),
        context=st.none() | st.integers(0, 3),
    )
    def move_parent(self, parent_id: str, goal: str, context: int | None) -> None:
        self.transition(parent_id, goal, context)

    def live_parents(self) -> list[str]:
        return sorted(p for p, m in self.parents.items() if m.status not in TERMINAL)

    @precondition(lambda self: bool(self.live_parents()))
    @rule(data=st.data(), request=REQUESTS, call_id=CALL_IDS)
    def record_call_on_a_live_parent(self, data: Any, request: int, call_id: str | None) -> None:
        parent_id = data.draw(st.sampled_from(self.live_parents()))
        self.record(parent_id, request, call_id, failed=False)

    def linkable(self) -> list[tuple[str, str]]:
        return [
            (b, s)
            for b, batch in sorted(self.batch_models.items())
            if batch.status == "draft"
            for s, state in sorted(self.parents.items())
            if state.kind is NodeState
            and state.status not in TERMINAL
            and (state.run_id, state.node_id) == (batch.run_id, batch.node_id)
        ]

    @precondition(lambda self: bool(self.linkable()))
    @rule(data=st.data())
    def link_a_draft_batch_to_a_live_state(self, data: Any) -> None:
        batch_id, state_id = data.draw(st.sampled_from(self.linkable()))
        self.link_batch(batch_id, state_id)

    # Batches

    @rule(target=batches, run_id=runs, node=NODES)
    def create_batch(self, run_id: str, node: str) -> Any:
        if self.run_status[run_id] != "running":
            self.refused(RunClosed, lambda: self.ledger.create_batch(run_id, node))
            return multiple()
        batch_id = self.ledger.create_batch(run_id, node)
        self.batch_models[batch_id] = BatchModel(run_id, node)
        return batch_id

    @rule(batch_id=batches, token=TOKENS)
    def add_batch_member(self, batch_id: str, token: str) -> None:
        model = self.batch_models[batch_id]
        command = lambda: self.ledger.add_batch_member(batch_id, self.token(token))  # noqa: E731
        if model.retry_of is not None:
            self.refused(RetryMembersFixed, command)
        elif token in model.members:
            self.refused(DuplicateMember, command)
        elif model.status != "draft":
            self.refused(InvalidTransition, command)
        else:
            assert command() == len(model.members)
            model.members.append(token)

    @rule(batch_id=batches, state_id=states)
    def link_batch(self, batch_id: str, state_id: str) -> None:
        model, state = self.batch_models[batch_id], self.parents[state_id]
        command = lambda: self.ledger.link_batch(batch_id, state_id)  # noqa: E731
        if model.status == "executing" and model.state_id == state_id:
            self.unchanged(command)
        elif model.status != "draft":
            self.refused(InvalidTransition, command)
        elif state.status in TERMINAL or (state.run_id, state.node_id) != (
            model.run_id,
            model.node_id,
        ):
            self.refused(InvalidLink, command)
        else:
            command()
            model.status, model.state_id = "executing", state_id

    @rule(batch_id=batches, fail=st.booleans())
    def end_batch(self, batch_id: str, fail: bool) -> None:
        model = self.batch_models[batch_id]
        if fail:
            command = lambda: self.ledger.fail_batch(batch_id, {"type": "Boom"})  # noqa: E731
            legal = model.status in ("draft", "executing")
        else:
            command = lambda: self.ledger.complete_batch(batch_id)  # noqa: E731
            legal = model.status == "executing"
        if not legal:
            self.refused(InvalidTransition, command)
            return
        command()
        model.status = "failed" if fail else "completed"

    @rule(
        target=batches,
        run_id=runs,
        node=NODES,
        tokens=st.lists(TOKENS, min_size=1, max_size=3, unique=True),
    )
    def a_batch_with_members_that_failed(self, run_id: str, node: str, tokens: list[str]) -> Any:
        """Create, fill and fail a batch in one step, so retries meet failed batches often."""
        batch_id = self.create_batch(run_id, node)
        if isinstance(batch_id, str):
            for token in tokens:
                self.add_batch_member(batch_id, token)
            self.end_batch(batch_id, fail=True)
        return batch_id

    def retryable(self) -> list[str]:
        """Failed batches with members, in creation order (ids are random; the order is not)."""
        return [
            b
            for b, batch in self.batch_models.items()
            if batch.status == "failed" and batch.members
        ]

    @precondition(lambda self: bool(self.retryable()))
    @rule(
        target=batches,
        pick=st.integers(0, 7),
        keep=st.none() | st.lists(st.booleans(), min_size=3, max_size=3),
    )
    def retry_a_failed_batch_with_members(self, pick: int, keep: list[bool] | None) -> Any:
        batch_id = self.retryable()[pick % len(self.retryable())]
        members = self.batch_models[batch_id].members
        kept = None if keep is None else [t for t, k in zip(members, keep, strict=False) if k]
        subset = None if kept is None else kept or members
        return self.retry_batch(batch_id, subset)

    @rule(target=batches, batch_id=batches, subset=SUBSETS)
    def retry_batch(self, batch_id: str, subset: list[str] | None) -> Any:
        """Legal from failed only; members of the failed batch, each once, at least one; the
        retry is attempt + 1 holding them in their old order, ordinals from 0; a second retry
        of one batch is the same retry (same members) or refused."""
        model = self.batch_models[batch_id]
        tokens = None if subset is None else [self.token(t) for t in subset]
        command = lambda: self.ledger.retry_batch(batch_id, members=tokens)  # noqa: E731
        chosen = model.members if subset is None else subset
        if model.status != "failed":
            self.refused(InvalidTransition, command)
        elif any(t not in model.members for t in chosen):
            self.refused(NotAMember, command)
        elif not chosen or len(set(chosen)) != len(chosen):
            self.refused(InvalidArgument, command)
        elif model.retry is not None:
            retry = self.batch_models[model.retry]
            if retry.members == sorted(chosen, key=model.members.index):
                assert self.unchanged(command) == model.retry
            else:
                self.refused(DuplicateRetry, command)
        elif self.run_status[model.run_id] != "running":
            self.refused(RunClosed, command)
        else:
            retry_id = command()
            model.retry = retry_id
            self.batch_models[retry_id] = BatchModel(
                model.run_id,
                model.node_id,
                members=sorted(chosen, key=model.members.index),
                attempt=model.attempt + 1,
                retry_of=batch_id,
            )
            return retry_id
        return multiple()

    @rule(batch_id=consumes(batches))
    def batch_id_used_as_a_state_id(self, batch_id: str) -> None:
        self.refused(UnknownState, lambda: self.ledger.complete_state(batch_id))
        self.refused(UnknownBatch, lambda: self.ledger.complete_batch(f"{batch_id}_row0"))

    # Invariants

    def replayed(self, aggregate_id: str) -> Any:
        return self.ledger.app.repository.get(UUID(aggregate_id))

    def all_ids(self) -> Iterator[str]:
        yield from self.run_status
        yield from self.parents
        yield from self.batch_models

    @invariant()
    def the_ledger_agrees_with_the_model(self) -> None:
        for run_id, status in self.run_status.items():
            run = self.replayed(run_id)
            assert isinstance(run, Run)
            assert run.status == status
        for parent_id, model in self.parents.items():
            parent = self.replayed(parent_id)
            assert isinstance(parent, model.kind)
            assert (parent.status, parent.call_count) == (model.status, len(model.calls))
            assert str(parent.run_id) == model.run_id
            contexts = [
                e.context_json
                for e in self.ledger.app.events.get(UUID(parent_id))
                if getattr(e, "context_json", None) is not None
            ]
            assert (contexts[-1] if contexts else None) == model.context
        for batch_id, batch_model in self.batch_models.items():
            batch = self.replayed(batch_id)
            assert isinstance(batch, Batch)
            assert batch.status == batch_model.status
            assert (batch.attempt, batch.retry_of_batch_id) == (
                batch_model.attempt,
                None if batch_model.retry_of is None else UUID(batch_model.retry_of),
            )
            assert batch.members == {self.token(t): i for i, t in enumerate(batch_model.members)}
            assert batch.state_id == (
                None if batch_model.state_id is None else UUID(batch_model.state_id)
            )
        for key, parent_id in self.call_keys.items():
            assert str(self.ledger.app.repository.get(_call_key(key)).parent_id) == parent_id

    @invariant()
    def call_indices_are_dense_per_parent(self) -> None:
        for parent_id in self.parents:
            events = self.ledger.app.events.get(UUID(parent_id))
            indices = [e.call_index for e in events if type(e).__name__ == "CallRecorded"]
            assert indices == list(range(len(indices)))

    @invariant()
    def no_parent_is_both_terminal_and_accepting_calls(self) -> None:
        facts = CallFacts(call_type="probe", status="success", request_hash="f" * 64)
        for parent_id in self.parents:
            parent = self.replayed(parent_id)
            if parent.status in TERMINAL:
                with pytest.raises(ParentClosed):
                    parent.record_call(facts)
            else:
                assert parent.record_call(facts) == parent.call_count - 1
            # the probe lives only on this copy: it is never saved

    @invariant()
    def replaying_each_aggregate_equals_the_live_copy(self) -> None:
        cache = self.ledger.writes.cache
        for aggregate_id in self.all_ids():
            live = cache.take(UUID(aggregate_id))
            if live is None:
                continue
            cache.put(live)
            assert live.pending_events == []
            assert self.replayed(aggregate_id) == live


def _call_key(call_id: str) -> UUID:
    from auditledger.domain.call_key import call_key_id

    return call_key_id(call_id)


def run_machine(url: str, examples: int, steps: int) -> None:
    shared = None if url == "memory://" else Ledger.open(url)

    class Machine(LedgerMachine):
        URL = url

    Machine.shared = shared
    try:
        run_state_machine_as_test(
            Machine,
            settings=settings(
                max_examples=examples,
                stateful_step_count=steps,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )
    finally:
        if shared is not None:
            shared.close()


def test_random_command_sequences_keep_every_invariant_in_memory() -> None:
    run_machine("memory://", examples=60, steps=40)


def test_random_command_sequences_keep_every_invariant_on_sqlite(tmp_path: Any) -> None:
    run_machine(f"sqlite:///{tmp_path}/ledger", examples=12, steps=30)


@pytest.mark.postgres
def test_random_command_sequences_keep_every_invariant_on_postgresql(postgres_url: str) -> None:
    run_machine(postgres_url, examples=8, steps=30)
