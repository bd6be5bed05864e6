"""Ledger: the facade a pipeline engine talks to.

Every public method is load -> command -> save. The command validates everything before an
event exists; payload bytes are committed before the event that references them; version
conflicts (other threads, processes, machines) are retried here, bounded and with jitter,
so a caller never sees a conflict for a legal command. A typed LedgerError means nothing
was written.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any, TypeVar
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, PersistenceError

from auditledger.adapters.calls.clients import AuditedClients
from auditledger.adapters.landscape.service import LandscapeMixin
from auditledger.adapters.storage.canonical import Payload, canonical_text, checked_attachments
from auditledger.adapters.storage.event_store import LedgerApplication
from auditledger.adapters.storage.stores import Stores
from auditledger.adapters.writing.cache import AggregateCache
from auditledger.adapters.writing.units import StaleCopy as _StaleCopy
from auditledger.adapters.writing.units import UnitsMixin
from auditledger.domain.batch import Batch
from auditledger.domain.call_key import CallKey, call_key_id
from auditledger.domain.call_parent import ERROR, SUCCESS, CallFacts, CallParent
from auditledger.domain.errors import (
    CallIdConflict,
    ConcurrencyExhausted,
    DuplicateAttempt,
    InvalidArgument,
    LedgerError,
    StoreError,
    UnknownAggregate,
    UnknownBatch,
    UnknownOperation,
    UnknownRun,
    UnknownState,
)
from auditledger.domain.node_state import NodeState, state_id_for
from auditledger.domain.operation import Operation
from auditledger.domain.run import Run
from auditledger.projections.skips import Skip
from auditledger.projections.stuck import skip_event

A = TypeVar("A", bound=Aggregate)
R = TypeVar("R")

_UNKNOWN: dict[type[Aggregate], type[UnknownAggregate]] = {
    Run: UnknownRun,
    NodeState: UnknownState,
    Operation: UnknownOperation,
    Batch: UnknownBatch,
}


@lru_cache(maxsize=4096)
def _uuid_of(raw: str) -> UUID:
    """An id as a caller spells it, parsed once: a pipeline passes the same ids many times."""
    return UUID(raw)


class Ledger(AuditedClients, LandscapeMixin, UnitsMixin):
    MAX_TRIES = 200

    def __init__(self, stores: Stores, *, group_commit: bool = False) -> None:
        self.stores = stores
        self.app: LedgerApplication = stores.application
        self.payloads = stores.payloads
        self._cache = AggregateCache()
        self._init_write_paths(stores, group_commit=group_commit)

    @classmethod
    def open(
        cls,
        url: str = "sqlite:///audit",
        *,
        landscape: str | None = None,
        group_commit: bool = False,
    ) -> Ledger:
        """Open (creating if needed) the ledger at a store URL; see settings.StoreSettings.

        group_commit=True: concurrent threads' commands share commits (see units.py)."""
        return cls(Stores.open(url, landscape_url=landscape), group_commit=group_commit)

    @property
    def url(self) -> str:
        return self.stores.settings.url

    def close(self) -> None:
        self.stores.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # Runs

    def begin_run(self, config: Any = None, *, run_id: str | UUID | None = None) -> str:
        payload = Payload.of_json({} if config is None else config, "config")
        new_id = uuid4() if run_id is None else self._parse_id(Run, run_id)
        run = Run.start(
            run_id=new_id, config_json=payload.data.decode("utf-8"), config_hash=payload.digest
        )
        self._create(
            run,
            [payload],
            on_duplicate=lambda: InvalidArgument(
                "run_id", str(new_id), "a run with this id already exists"
            ),
        )
        return str(run.id)

    def complete_run(self, run_id: str | UUID, status: str = "completed") -> None:
        self._change(Run, run_id, lambda run: run.complete(status))

    def resume_run(self, run_id: str | UUID) -> None:
        self._change(Run, run_id, lambda run: run.resume())

    # Node states

    def open_state(
        self,
        *,
        run_id: str | UUID,
        token_id: str,
        node_id: str,
        step_index: int,
        input: Any = None,
        attempt: int = 0,
    ) -> str:
        run = self._read(Run, run_id)
        run.require_running()
        payloads = [] if input is None else [Payload.of_json(input, "input")]
        state = NodeState.open(
            run_id=run.id,
            token_id=token_id,
            node_id=node_id,
            step_index=step_index,
            attempt=attempt,
            input_hash=payloads[0].digest if payloads else None,
        )
        self._create(
            state,
            payloads,
            on_duplicate=lambda: DuplicateAttempt(state.id, token_id, node_id, attempt),
        )
        return str(state.id)

    def state_id(self, *, token_id: str, node_id: str, attempt: int = 0) -> str:
        """The id a state for (token, node, attempt) has, whether or not it was opened."""
        return str(state_id_for(token_id, node_id, attempt))

    def mark_pending(self, state_id: str | UUID, reason: str | None = None) -> None:
        self._change(NodeState, state_id, lambda s: s.mark_pending(reason))

    def complete_state(self, state_id: str | UUID, output: Any = None) -> None:
        payloads = [] if output is None else [Payload.of_json(output, "output")]
        digest = payloads[0].digest if payloads else None
        self._change(NodeState, state_id, lambda s: s.complete(digest), payloads=payloads)

    def fail_state(self, state_id: str | UUID, error: Any = None) -> None:
        error_json = canonical_text(error, "error")
        self._change(NodeState, state_id, lambda s: s.fail(error_json))

    # Operations (source load / sink write)

    def begin_operation(
        self,
        *,
        run_id: str | UUID,
        node_id: str,
        operation_type: str,
        input: Any = None,
        operation_id: str | UUID | None = None,
    ) -> str:
        run = self._read(Run, run_id)
        run.require_running()
        payloads = [] if input is None else [Payload.of_json(input, "input")]
        new_id = uuid4() if operation_id is None else self._parse_id(Operation, operation_id)
        operation = Operation.start(
            operation_id=new_id,
            run_id=run.id,
            node_id=node_id,
            operation_type=operation_type,
            input_hash=payloads[0].digest if payloads else None,
        )
        self._create(
            operation,
            payloads,
            on_duplicate=lambda: InvalidArgument(
                "operation_id", str(new_id), "an operation with this id already exists"
            ),
        )
        return str(operation.id)

    def mark_operation_pending(self, operation_id: str | UUID, reason: str | None = None) -> None:
        self._change(Operation, operation_id, lambda o: o.mark_pending(reason))

    def complete_operation(self, operation_id: str | UUID, output: Any = None) -> None:
        payloads = [] if output is None else [Payload.of_json(output, "output")]
        digest = payloads[0].digest if payloads else None
        self._change(Operation, operation_id, lambda o: o.complete(digest), payloads=payloads)

    def fail_operation(self, operation_id: str | UUID, error: Any = None) -> None:
        error_json = canonical_text(error, "error")
        self._change(Operation, operation_id, lambda o: o.fail(error_json))

    # Calls

    def record_call(
        self,
        state_id: str | UUID | None = None,
        *,
        operation_id: str | UUID | None = None,
        call_type: str,
        request: Any,
        response: Any = None,
        error: Any = None,
        status: str | None = None,
        latency_ms: float | None = None,
        started_at: datetime | None = None,
        call_id: str | None = None,
        summary: Mapping[str, Any] | None = None,
        attachments: Sequence[Payload] = (),
    ) -> int:
        """Record one external call under exactly one parent; returns its call_index."""
        parent_type, parent_id = self._call_parent(state_id, operation_id)
        request_payload = Payload.of_json(request, "request")
        response_payload = None if response is None else Payload.of_json(response, "response")
        facts = CallFacts(
            call_type=call_type,
            status=(ERROR if error is not None else SUCCESS) if status is None else status,
            request_hash=request_payload.digest,
            response_hash=None if response_payload is None else response_payload.digest,
            error_json=None if error is None else canonical_text(error, "error"),
            latency_ms=latency_ms,
            started_at=started_at,
            summary_json=None if summary is None else canonical_text(summary, "summary"),
            call_id=call_id,
        )  # validated by the parent before its event exists
        payloads = [request_payload, *checked_attachments(attachments)]
        if response_payload is not None:
            payloads.append(response_payload)
        return self._change(
            parent_type,
            parent_id,
            lambda parent: parent.record_call(facts),
            payloads=payloads,
            companions=(lambda parent: self._reserve_call_key(call_id, parent))
            if call_id is not None
            else None,
        )

    def store_bytes(self, data: bytes) -> str:
        """Keep raw bytes (a JSONL file, an HTTP body) in the payload store; returns the hash."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidArgument("data", type(data).__name__, "raw bytes")
        payload = Payload.of_bytes(bytes(data))
        self.payloads.put_many([payload])
        return payload.digest

    def payload(self, ref: str) -> bytes:
        """The bytes behind a payload ref, re-checked against its hash."""
        return self.payloads.get(ref)

    # Batches

    def create_batch(
        self,
        run_id: str | UUID,
        aggregation_node_id: str,
        attempt: int = 0,
        *,
        batch_id: str | UUID | None = None,
    ) -> str:
        run = self._read(Run, run_id)
        run.require_running()
        new_id = uuid4() if batch_id is None else self._parse_id(Batch, batch_id)
        batch = Batch.create(
            batch_id=new_id,
            run_id=run.id,
            aggregation_node_id=aggregation_node_id,
            attempt=attempt,
        )
        self._create(
            batch,
            [],
            on_duplicate=lambda: InvalidArgument(
                "batch_id", str(new_id), "a batch with this id already exists"
            ),
        )
        return str(batch.id)

    def add_batch_member(self, batch_id: str | UUID, token_id: str) -> int:
        return self._change(Batch, batch_id, lambda b: b.add_member(token_id))

    def link_batch(self, batch_id: str | UUID, state_id: str | UUID) -> None:
        batch_uuid = self._parse_id(Batch, batch_id)
        state = self._read(NodeState, state_id)

        def link(batch: Batch) -> None:
            batch.link(
                state.id, run_id=state.run_id, node_id=state.node_id, state_status=state.status
            )

        self._change(Batch, batch_uuid, link)

    def complete_batch(self, batch_id: str | UUID) -> None:
        self._change(Batch, batch_id, lambda b: b.complete())

    def fail_batch(self, batch_id: str | UUID, error: Any = None) -> None:
        error_json = canonical_text(error, "error")
        self._change(Batch, batch_id, lambda b: b.fail(error_json))

    # Reads of the live aggregates

    def load(self, cls: type[A], aggregate_id: str | UUID) -> A:
        """The aggregate as the event store has it now (a fresh copy, safe to inspect)."""
        return self._load(cls, aggregate_id)

    # Internals

    def _call_parent(
        self, state_id: str | UUID | None, operation_id: str | UUID | None
    ) -> tuple[type[NodeState] | type[Operation], UUID]:
        if (state_id is None) == (operation_id is None):
            raise InvalidArgument(
                "parent",
                {"state_id": state_id, "operation_id": operation_id},
                "a call has exactly one parent: a state id, or operation_id=",
            )
        if state_id is not None:
            return NodeState, self._parse_id(NodeState, state_id)
        assert operation_id is not None
        return Operation, self._parse_id(Operation, operation_id)

    def _reserve_call_key(self, call_id: str, parent: CallParent) -> list[Aggregate]:
        key_id = call_key_id(call_id)
        try:
            existing = self._unit_view(key_id) or self.app.repository.get(key_id)
            assert isinstance(existing, CallKey)
        except AggregateNotFoundError:
            return [CallKey.reserve(call_id, parent.id)]
        if existing.parent_id == parent.id:
            raise _StaleCopy
        raise CallIdConflict(
            call_id, parent.id, f"this call id is already used by parent {existing.parent_id}"
        )

    def _parse_id(self, cls: type[Aggregate], raw: str | UUID) -> UUID:
        if isinstance(raw, UUID):
            return raw
        unknown = _UNKNOWN.get(cls, UnknownAggregate)
        if not isinstance(raw, str):
            raise unknown(raw)
        try:
            return _uuid_of(raw)
        except ValueError:
            raise unknown(raw) from None

    def _load(self, cls: type[A], raw_id: str | UUID) -> A:
        aggregate_id = self._parse_id(cls, raw_id)
        try:
            aggregate: Aggregate = self.app.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise _UNKNOWN.get(cls, UnknownAggregate)(aggregate_id) from None
        except PersistenceError as error:
            raise StoreError(f"reading {aggregate_id} from {self.url}: {error}") from None
        if not isinstance(aggregate, cls):
            raise _UNKNOWN.get(cls, UnknownAggregate)(aggregate_id)
        return aggregate

    def _create(
        self,
        aggregate: Aggregate,
        payloads: Iterable[Payload],
        *,
        on_duplicate: Callable[[], LedgerError],
    ) -> None:
        if payloads and self.app.has_events(aggregate.id):
            raise on_duplicate()  # refused before its payloads are written
        unit = self._unit()
        if unit is not None:
            self._unit_create(unit, aggregate, list(payloads), on_duplicate)
            return
        with self._locks.hold(aggregate.id):
            try:
                self._commit([aggregate], list(payloads))
            except IntegrityError:
                raise on_duplicate() from None
        self._cache.put(aggregate)

    def _change(
        self,
        cls: type[A],
        raw_id: str | UUID,
        command: Callable[[A], R],
        *,
        payloads: Sequence[Payload] = (),
        companions: Callable[[A], list[Aggregate]] | None = None,
    ) -> R:
        aggregate_id = self._parse_id(cls, raw_id)
        unit = self._unit()
        if unit is not None:
            return self._unit_change(unit, cls, aggregate_id, command, payloads, companions)
        with self._locks.hold(aggregate_id):
            return self._change_alone(cls, aggregate_id, command, payloads, companions)

    def _change_alone(
        self,
        cls: type[A],
        aggregate_id: UUID,
        command: Callable[[A], R],
        payloads: Sequence[Payload],
        companions: Callable[[A], list[Aggregate]] | None,
    ) -> R:
        fresh = False
        for attempt in range(self.MAX_TRIES):
            aggregate: A | None = None if fresh else self._cache.take(aggregate_id)
            if aggregate is None or not isinstance(aggregate, cls):
                aggregate = self._load(cls, aggregate_id)
                fresh = True
            try:
                result = command(aggregate)
            except LedgerError:
                if not fresh:  # the cached copy may be stale: judge against the store
                    fresh = True
                    continue
                self._cache.put(aggregate)
                raise
            if not aggregate.pending_events:
                self._cache.put(aggregate)
                return result
            try:
                others = companions(aggregate) if companions else []
            except _StaleCopy:
                fresh = True
                continue
            try:
                self._commit([aggregate, *others], payloads)
            except IntegrityError:
                fresh = True
                time.sleep(random.uniform(0, min(0.05, 0.001 * 2 ** min(attempt, 6))))
                continue
            self._cache.put(aggregate)
            return result
        raise ConcurrencyExhausted(aggregate_id, self.MAX_TRIES)

    def skip_event(self, position: int, *, reason: str) -> Skip:
        """Let catch-up pass over the event that stops it (docs/projections.md): recorded in
        projection_skips, kept by rebuild, listed by every verify; the event stays in the log."""
        land = self._landscape()
        with land.lock, self._landscape_errors():
            return skip_event(land.engine, land.source, position, reason)
