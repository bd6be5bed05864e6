"""Ledger: the facade a pipeline engine talks to.

Every public method is load -> command -> save. The command validates everything before an
event exists; payload bytes are committed before the event that references them; version
conflicts (other threads, processes, machines) are retried here, bounded and with jitter,
so a caller never sees a conflict for a legal command. A typed LedgerError means nothing
was written. A command that checks another aggregate (the run of a new state, the state a
batch links to) commits only if that check still holds (WritePath.create_checked).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID, uuid4

import httpx
from eventsourcing.domain import Aggregate
from sqlalchemy import Engine

from auditledger.adapters.calls.clients import ClientFactory
from auditledger.adapters.calls.ports import RecordedCall
from auditledger.adapters.calls.replay import read_recorded_calls
from auditledger.adapters.calls.transports import AuditedTransport
from auditledger.adapters.landscape.service import LandscapeService
from auditledger.adapters.storage.canonical import Payload, canonical_text, checked_attachments
from auditledger.adapters.storage.event_store import LedgerApplication
from auditledger.adapters.storage.guards import LogGuard
from auditledger.adapters.storage.stores import Stores
from auditledger.adapters.tamper.erasure import Eraser, ErasureResult
from auditledger.adapters.tamper.merkle_proofs import InclusionProof, prove
from auditledger.adapters.writing.units import StaleCopy, UnitOfWork
from auditledger.adapters.writing.write_path import WritePath
from auditledger.domain.batch import Batch
from auditledger.domain.call_key import CallKey, call_key_id
from auditledger.domain.call_parent import ERROR, SUCCESS, CallFacts, CallParent, Context
from auditledger.domain.errors import (
    CallIdConflict,
    DuplicateAttempt,
    DuplicateRetry,
    InvalidArgument,
    ParentClosed,
)
from auditledger.domain.node_state import NodeState, state_id_for
from auditledger.domain.operation import Operation
from auditledger.domain.run import RUNNING, Run, Unsettled
from auditledger.projections import queries
from auditledger.projections.rebuild import RebuildResult
from auditledger.projections.runner import Progress
from auditledger.projections.skips import Skip
from auditledger.projections.verify import VerifyReport

if TYPE_CHECKING:
    import openai as openai_sdk

A = TypeVar("A", bound=Aggregate)


def _context(context: Any) -> tuple[Context | None, list[Payload]]:
    """A state's context as canonical JSON and its hash, and the payload that keeps it."""
    if context is None:
        return None, []
    payload = Payload.of_json(context, "context")
    return Context(payload.data.decode("utf-8"), payload.digest), [payload]


class Ledger:
    """The facade over three parts: the write path, the landscape service, the client factory."""

    def __init__(
        self, stores: Stores, *, group_commit: bool = False, retention_days: int | None = None
    ) -> None:
        self.stores = stores
        self.app: LedgerApplication = stores.application
        self.payloads = stores.payloads
        self.writes = WritePath(stores, group_commit=group_commit)
        self.landscape_service = LandscapeService(stores)
        self.clients = ClientFactory(self)
        days = stores.settings.retention_days if retention_days is None else retention_days
        if isinstance(days, bool) or not isinstance(days, int) or days < 0:
            raise InvalidArgument("retention_days", days, "a whole number of days >= 0")
        self.erasures = Eraser(stores, self.writes, timedelta(days=days))

    @classmethod
    def open(
        cls,
        url: str = "sqlite:///audit",
        *,
        landscape: str | None = None,
        group_commit: bool = False,
        retention_days: int | None = None,
    ) -> Ledger:
        """Open (creating if needed) the ledger at a store URL; see settings.StoreSettings.

        group_commit=True: concurrent threads' commands share commits (see units.py).
        retention_days: the minimum retention `erase` keeps (default: the URL's
        ?retention_days=, else 183)."""
        stores = Stores.open(url, landscape_url=landscape)
        try:
            return cls(stores, group_commit=group_commit, retention_days=retention_days)
        except BaseException:
            stores.close()
            raise

    @property
    def url(self) -> str:
        return self.stores.settings.url

    def close(self) -> None:
        """Close the store and the shared connection pools of the per-state clients."""
        self.clients.close()
        self.stores.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # Runs

    def begin_run(self, config: Any = None, *, run_id: str | UUID | None = None) -> str:
        payload = Payload.of_json({} if config is None else config, "config")
        new_id = uuid4() if run_id is None else self.writes.parse_id(Run, run_id)
        run = Run.start(
            run_id=new_id, config_json=payload.data.decode("utf-8"), config_hash=payload.digest
        )
        self.writes.create(
            run,
            [payload],
            on_duplicate=lambda: InvalidArgument(
                "run_id", str(new_id), "a run with this id already exists"
            ),
        )
        return str(run.id)

    def complete_run(self, run_id: str | UUID, status: str = "completed") -> None:
        """End a run. "completed" is refused (RunNotSettled) while any of its states or
        operations is open or pending or any batch draft or executing: the landscape is caught
        up and asked inside the Run's command, so a conflicting write on the Run re-asks it,
        and the write carries a log guard: if a state, operation or batch of the run was
        opened after the position the landscape was asked at, nothing is written and the
        command runs again (and then refuses with RunNotSettled)."""
        asked: list[tuple[UUID, int]] = []

        def complete(run: Run) -> None:
            unsettled = None
            asked.clear()
            if run.needs_settlement(status):
                position, count, ids = self.landscape_service.unsettled_at(str(run.id))
                asked.append((run.id, position))
                unsettled = Unsettled(count, ids)
            run.complete(status, unsettled)

        def guards() -> list[LogGuard]:
            return [self.writes.opened_since(run, position) for run, position in asked]

        self.writes.change(Run, run_id, complete, guards=guards)

    def resume_run(self, run_id: str | UUID) -> None:
        self.writes.change(Run, run_id, lambda run: run.resume())

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
        run = self.writes.read_guarded(Run, run_id, _running)
        run.require_running()
        payloads = [] if input is None else [Payload.of_json(input, "input")]

        def open_in(now: Run) -> NodeState:
            now.require_running()
            return NodeState.open(
                run_id=now.id,
                token_id=token_id,
                node_id=node_id,
                step_index=step_index,
                attempt=attempt,
                input_hash=payloads[0].digest if payloads else None,
                scoped_id=now.scoped_state_ids,
            )

        tried: list[NodeState] = []

        def build(now: Run) -> NodeState:
            tried.append(open_in(now))
            return tried[-1]

        state = self.writes.create_checked(
            run,
            build,
            payloads,
            on_duplicate=lambda: self._duplicate_attempt(tried[-1]),
        )
        return str(state.id)

    def state_id(
        self,
        *,
        run_id: str | UUID | None = None,
        token_id: str,
        node_id: str,
        attempt: int = 0,
    ) -> str:
        """The id a state for (run, token, node, attempt) has, whether or not it was opened.

        Without run_id: the (token, node, attempt) id of runs started before run-scoped ids
        (as before); with it, the id that run's scheme gives (reads the run)."""
        if run_id is None:
            return str(state_id_for(token_id, node_id, attempt))
        run = self.writes.read(Run, run_id)
        return str(
            state_id_for(token_id, node_id, attempt, run.id if run.scoped_state_ids else None)
        )

    def mark_state_pending(
        self, state_id: str | UUID, reason: str | None = None, *, context: Any = None
    ) -> None:
        """context: JSON saying how the state ran so far (kept as a payload, shown by explain)."""
        facts, payloads = _context(context)
        self.writes.change(
            NodeState, state_id, lambda s: s.mark_pending(reason, context=facts), payloads=payloads
        )

    mark_pending = mark_state_pending  # the earlier name, kept

    def complete_state(
        self,
        state_id: str | UUID,
        output: Any = None,
        *,
        context: Any = None,
        duration_ms: float | None = None,
    ) -> None:
        """context: JSON of how the state ran (pool size, retries, join order), never part of
        output_hash; duration_ms: what the engine measured (else derived from timestamps)."""
        payloads = [] if output is None else [Payload.of_json(output, "output")]
        digest = payloads[0].digest if payloads else None
        facts, context_payloads = _context(context)
        self.writes.change(
            NodeState,
            state_id,
            lambda s: s.complete(digest, context=facts, duration_ms=duration_ms),
            payloads=[*payloads, *context_payloads],
        )

    def fail_state(
        self,
        state_id: str | UUID,
        error: Any = None,
        *,
        context: Any = None,
        duration_ms: float | None = None,
    ) -> None:
        error_json = canonical_text(error, "error")
        facts, payloads = _context(context)
        self.writes.change(
            NodeState,
            state_id,
            lambda s: s.fail(error_json, context=facts, duration_ms=duration_ms),
            payloads=payloads,
        )

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
        run = self.writes.read_guarded(Run, run_id, _running)
        run.require_running()
        payloads = [] if input is None else [Payload.of_json(input, "input")]
        new_id = uuid4() if operation_id is None else self.writes.parse_id(Operation, operation_id)

        def start_in(now: Run) -> Operation:
            now.require_running()
            return Operation.start(
                operation_id=new_id,
                run_id=now.id,
                node_id=node_id,
                operation_type=operation_type,
                input_hash=payloads[0].digest if payloads else None,
            )

        operation = self.writes.create_checked(
            run,
            start_in,
            payloads,
            on_duplicate=lambda: InvalidArgument(
                "operation_id", str(new_id), "an operation with this id already exists"
            ),
        )
        return str(operation.id)

    def mark_operation_pending(self, operation_id: str | UUID, reason: str | None = None) -> None:
        self.writes.change(Operation, operation_id, lambda o: o.mark_pending(reason))

    def complete_operation(
        self, operation_id: str | UUID, output: Any = None, *, duration_ms: float | None = None
    ) -> None:
        payloads = [] if output is None else [Payload.of_json(output, "output")]
        digest = payloads[0].digest if payloads else None
        self.writes.change(
            Operation,
            operation_id,
            lambda o: o.complete(digest, duration_ms=duration_ms),
            payloads=payloads,
        )

    def fail_operation(
        self, operation_id: str | UUID, error: Any = None, *, duration_ms: float | None = None
    ) -> None:
        error_json = canonical_text(error, "error")
        self.writes.change(
            Operation, operation_id, lambda o: o.fail(error_json, duration_ms=duration_ms)
        )

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
        attached = checked_attachments(attachments)
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
            attachment_hashes=tuple(dict.fromkeys(item.digest for item in attached)),
        )  # validated by the parent before its event exists
        payloads = [request_payload, *attached]
        if response_payload is not None:
            payloads.append(response_payload)
        return self.writes.change(
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
        run = self.writes.read_guarded(Run, run_id, _running)
        run.require_running()
        new_id = uuid4() if batch_id is None else self.writes.parse_id(Batch, batch_id)

        def create_in(now: Run) -> Batch:
            now.require_running()
            return Batch.create(
                batch_id=new_id,
                run_id=now.id,
                aggregation_node_id=aggregation_node_id,
                attempt=attempt,
            )

        batch = self.writes.create_checked(
            run,
            create_in,
            [],
            on_duplicate=lambda: InvalidArgument(
                "batch_id", str(new_id), "a batch with this id already exists"
            ),
        )
        return str(batch.id)

    def add_batch_member(self, batch_id: str | UUID, token_id: str) -> int:
        return self.writes.change(Batch, batch_id, lambda b: b.add_member(token_id))

    def link_batch(
        self, batch_id: str | UUID, state_id: str | UUID, trigger_reason: str | None = None
    ) -> None:
        """trigger_reason: why the batch ran now ("count=10", "timeout", "end_of_source")."""
        batch_uuid = self.writes.parse_id(Batch, batch_id)

        def link(batch: Batch, state: NodeState) -> None:
            batch.link(
                state.id,
                run_id=state.run_id,
                node_id=state.node_id,
                state_status=state.status,
                trigger_reason=trigger_reason,
            )

        self.writes.change_checked(Batch, batch_uuid, NodeState, state_id, link)

    def retry_batch(self, batch_id: str | UUID, members: Sequence[str] | None = None) -> str:
        """The failed batch's next attempt (same run and node), holding `members` (default:
        all of its members), renumbered 0..k-1 in their old order, in one write. Retrying
        the same batch again with the same members returns the same id and writes nothing."""
        failed = self.writes.read(Batch, batch_id)
        retry = failed.retry(members)
        if self.writes.find(retry.id) is None:

            def retry_in(now: Run) -> Batch:
                now.require_running()  # checked again if the run closes meanwhile (a guard)
                return failed.retry(members)  # a fresh aggregate each try: its events unsaved

            try:
                self.writes.create_checked(
                    self.writes.read(Run, failed.run_id),
                    retry_in,
                    [],
                    on_duplicate=lambda: DuplicateRetry(failed.id, retry.id),
                )
                return str(retry.id)
            except DuplicateRetry:
                pass  # another writer retried it first: the same retry, or a refusal
        existing = self.writes.find(retry.id)
        if not isinstance(existing, Batch) or existing.members != retry.members:
            raise DuplicateRetry(failed.id, retry.id)
        return str(existing.id)

    def complete_batch(self, batch_id: str | UUID) -> None:
        self.writes.change(Batch, batch_id, lambda b: b.complete())

    def fail_batch(self, batch_id: str | UUID, error: Any = None) -> None:
        error_json = canonical_text(error, "error")
        self.writes.change(Batch, batch_id, lambda b: b.fail(error_json))

    # Reads

    def load(self, cls: type[A], aggregate_id: str | UUID) -> A:
        """The aggregate as the event store has it now (a fresh copy, safe to inspect)."""
        return self.writes.load(cls, aggregate_id)

    def recorded_calls(self, parent_id: str | UUID) -> list[RecordedCall]:
        """A state's (or operation's) calls with their request and response JSON, in order."""
        aggregate_id = self.writes.parse_id(Aggregate, parent_id)
        return read_recorded_calls(self.app, self.payloads, aggregate_id)

    def log_position(self) -> int:
        """The position (notification id) of the last event in the log; 0 when empty."""
        return self.landscape_service.log_position()

    def call_parent_id(
        self,
        state_id: str | UUID | None,
        operation_id: str | UUID | None = None,
        *,
        open_only: bool = True,
    ) -> UUID:
        """The id of a call's one parent, as it is now (in a unit: the unit's copy); refuses
        an unknown parent and, with open_only, one that is closed."""
        cls, parent_id = self._call_parent(state_id, operation_id)
        if open_only and self.writes.holds_now(cls, parent_id, lambda p: not p.is_terminal):
            return parent_id  # open as this process wrote it, nothing newer in the store
        parent = self.writes.read(cls, parent_id)
        if open_only and parent.is_terminal:
            raise ParentClosed(parent.id, parent.kind, parent.status)
        return parent_id

    # Units of work and group commit (writing/units.py)

    def unit_of_work(self) -> AbstractContextManager[UnitOfWork]:
        """Record the commands of this block in one transaction: all of them, or none."""
        return self.writes.unit_of_work()

    @property
    def group_commit(self) -> bool:
        return self.writes.group_commit

    # The landscape (landscape/service.py)

    def catch_up(self, chunk_size: int = 1000, *, progress: Progress | None = None) -> int:
        """Apply every event recorded so far to the landscape; returns how many."""
        return self.landscape_service.catch_up(chunk_size, progress=progress)

    def landscape_position(self) -> int:
        return self.landscape_service.landscape_position()

    @property
    def landscape_engine(self) -> Engine:
        """The landscape's SQLAlchemy Engine, to query its tables with SQL (docs/projections.md);
        call catch_up() first to see everything recorded so far."""
        return self.landscape_service.engine

    def follow(
        self,
        should_stop: Callable[[], bool],
        *,
        poll_seconds: float = 1.0,
        chunk_size: int = 1000,
        progress: Progress | None = None,
    ) -> int:
        """Keep the landscape current until should_stop(); PostgreSQL wakes on NOTIFY."""
        return self.landscape_service.follow(
            should_stop, poll_seconds=poll_seconds, chunk_size=chunk_size, progress=progress
        )

    def rebuild(
        self,
        until: str | int | datetime | None = None,
        *,
        chunk_size: int = 2000,
        progress: Progress | None = None,
    ) -> RebuildResult:
        """Rebuild the landscape from position 0 (up to `until`) and swap it in atomically."""
        return self.landscape_service.rebuild(until, chunk_size=chunk_size, progress=progress)

    def verify(self, *, diff: bool = True) -> VerifyReport:
        """Check the landscape's invariants as it stands (read-only: no catch-up)."""
        return self.landscape_service.verify(diff=diff)

    def explain(
        self,
        *,
        state_id: str | None = None,
        token_id: str | None = None,
        run_id: str | None = None,
    ) -> queries.Explanation:
        return self.landscape_service.explain(state_id=state_id, token_id=token_id, run_id=run_id)

    def export_rows(self, run_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every landscape row of a run as (table, row), after catching up."""
        return self.landscape_service.export_rows(run_id)

    def skip_event(self, position: int, *, reason: str) -> Skip:
        """Let catch-up pass over the event that stops it (docs/projections.md): recorded in
        projection_skips, kept by rebuild, listed by every verify; the event stays in the log."""
        return self.landscape_service.skip_event(position, reason=reason)

    # Audited and replaying clients (calls/clients.py)

    def http_client(
        self,
        state_id: str | UUID | None = None,
        *,
        operation_id: str | UUID | None = None,
        redact_headers: Iterable[str] = (),
        transport: httpx.BaseTransport | None = None,
        call_type: str = "http",
        **httpx_kwargs: Any,
    ) -> httpx.Client:
        """An httpx.Client whose every request is a call under the state (or operation)."""
        return self.clients.http_client(
            state_id,
            operation_id=operation_id,
            redact_headers=redact_headers,
            transport=transport,
            call_type=call_type,
            **httpx_kwargs,
        )

    def async_http_client(
        self,
        state_id: str | UUID | None = None,
        *,
        operation_id: str | UUID | None = None,
        redact_headers: Iterable[str] = (),
        transport: httpx.AsyncBaseTransport | None = None,
        call_type: str = "http",
        **httpx_kwargs: Any,
    ) -> httpx.AsyncClient:
        return self.clients.async_http_client(
            state_id,
            operation_id=operation_id,
            redact_headers=redact_headers,
            transport=transport,
            call_type=call_type,
            **httpx_kwargs,
        )

    def audited_transport(
        self,
        state_id: str | UUID | None = None,
        *,
        operation_id: str | UUID | None = None,
        redact_headers: Iterable[str] = (),
        transport: httpx.BaseTransport | None = None,
        call_type: str = "http",
    ) -> AuditedTransport:
        return self.clients.audited_transport(
            state_id,
            operation_id=operation_id,
            redact_headers=redact_headers,
            transport=transport,
            call_type=call_type,
        )

    def openai(
        self,
        state_id: str | UUID | None = None,
        *,
        operation_id: str | UUID | None = None,
        redact_headers: Iterable[str] = (),
        transport: httpx.BaseTransport | None = None,
        call_type: str = "llm",
        **openai_kwargs: Any,
    ) -> openai_sdk.OpenAI:
        """A real openai.OpenAI; each HTTP exchange (retries too) is an llm call with a summary."""
        return self.clients.openai(
            state_id,
            operation_id=operation_id,
            redact_headers=redact_headers,
            transport=transport,
            call_type=call_type,
            **openai_kwargs,
        )

    def async_openai(
        self,
        state_id: str | UUID | None = None,
        *,
        operation_id: str | UUID | None = None,
        redact_headers: Iterable[str] = (),
        transport: httpx.AsyncBaseTransport | None = None,
        call_type: str = "llm",
        **openai_kwargs: Any,
    ) -> openai_sdk.AsyncOpenAI:
        return self.clients.async_openai(
            state_id,
            operation_id=operation_id,
            redact_headers=redact_headers,
            transport=transport,
            call_type=call_type,
            **openai_kwargs,
        )

    def openai_transport(self, client: Any) -> httpx.BaseTransport | None:
        """The inner transport of an openai client `openai()` built, else None."""
        return self.clients.openai_transport(client)

    def replay_http_client(
        self,
        state_id: str | UUID | None = None,
        *,
        operation_id: str | UUID | None = None,
        redact_headers: Iterable[str] = (),
        **httpx_kwargs: Any,
    ) -> httpx.Client:
        """An httpx.Client answered from the parent's recorded exchanges; it writes nothing."""
        return self.clients.replay_http_client(
            state_id, operation_id=operation_id, redact_headers=redact_headers, **httpx_kwargs
        )

    def async_replay_http_client(
        self,
        state_id: str | UUID | None = None,
        *,
        operation_id: str | UUID | None = None,
        redact_headers: Iterable[str] = (),
        **httpx_kwargs: Any,
    ) -> httpx.AsyncClient:
        return self.clients.async_replay_http_client(
            state_id, operation_id=operation_id, redact_headers=redact_headers, **httpx_kwargs
        )

    def replay_openai(
        self,
        state_id: str | UUID | None = None,
        *,
        operation_id: str | UUID | None = None,
        redact_headers: Iterable[str] = (),
        **openai_kwargs: Any,
    ) -> openai_sdk.OpenAI:
        """An openai.OpenAI answered from the ledger; pass the options the recording used."""
        return self.clients.replay_openai(
            state_id, operation_id=operation_id, redact_headers=redact_headers, **openai_kwargs
        )

    def async_replay_openai(
        self,
        state_id: str | UUID | None = None,
        *,
        operation_id: str | UUID | None = None,
        redact_headers: Iterable[str] = (),
        **openai_kwargs: Any,
    ) -> openai_sdk.AsyncOpenAI:
        return self.clients.replay_async_openai(
            state_id, operation_id=operation_id, redact_headers=redact_headers, **openai_kwargs
        )

    replay_async_openai = async_replay_openai  # the earlier name, kept

    # Merkle proofs (tamper/merkle_proofs.py)

    def prove(
        self,
        *,
        position: int | None = None,
        call_id: str | None = None,
        state_id: str | UUID | None = None,
        size: int | None = None,
    ) -> list[InclusionProof]:
        """RFC 9162 inclusion proofs for sealed events: one position, a call's CallRecorded
        event, or every event of a state (docs/tamper-evidence.md)."""
        return prove(self.url, position=position, call_id=call_id, state_id=state_id, size=size)

    # Internals

    def _duplicate_attempt(self, state: NodeState) -> DuplicateAttempt:
        """What exists under the id the new state would have: its run and status."""
        existing = self.writes.find(state.id)
        return DuplicateAttempt(
            state.id,
            state.token_id,
            state.node_id,
            state.attempt,
            run_id=getattr(existing, "run_id", None),
            status=getattr(existing, "status", None),
        )

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
            return NodeState, self.writes.parse_id(NodeState, state_id)
        assert operation_id is not None
        return Operation, self.writes.parse_id(Operation, operation_id)

    def _reserve_call_key(self, call_id: str, parent: CallParent) -> list[Aggregate]:
        key_id = call_key_id(call_id)
        existing = self.writes.find(key_id)
        if existing is None:
            return [CallKey.reserve(call_id, parent.id)]
        assert isinstance(existing, CallKey)
        if existing.parent_id == parent.id:
            raise StaleCopy
        raise CallIdConflict(
            call_id, parent.id, f"this call id is already used by parent {existing.parent_id}"
        )

    # Erasure

    @property
    def retention(self) -> timedelta:
        """The minimum retention `erase` keeps unless overridden."""
        return self.erasures.retention

    def erase(
        self,
        run_id: str | UUID | None = None,
        token_id: str | None = None,
        *,
        reason: str,
        override_retention: bool = False,
    ) -> ErasureResult:
        """Delete the payload bytes a run's (or a token's) events name, keeping bytes another
        subject names; records ErasureRecorded. Events, hashes and the chain stay valid.
        Records younger than the retention: RetentionNotReached unless override_retention."""
        run = None if run_id is None else self.writes.parse_id(Run, run_id)
        return self.erasures.erase(
            run, token_id, reason=reason, override_retention=override_retention
        )


def _running(run: Run) -> bool:
    return run.status == RUNNING
