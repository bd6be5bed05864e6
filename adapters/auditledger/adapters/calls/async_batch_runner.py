"""AsyncOpenAIBatchRunner: OpenAIBatchRunner's steps with openai.AsyncOpenAI, for AsyncLedger.

The same invariants as batch_runner.py (the ledger's side is the same BatchSettlement, and a
retry is planned by the same batch_retry.plan_retry), and:
every ledger read and command runs off the event loop (`ledger.run`), the SDK's requests go
through an audited async transport that borrows the runner's inner transport (default: the
ledger's shared pool of the running loop), so nothing here blocks the loop.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, ParamSpec, Protocol, TypeVar

import httpx
import openai

from auditledger.adapters.calls.batch_retry import plan_retry
from auditledger.adapters.calls.batch_runner import (
    CALL_TYPE,
    RUNNING,
    BatchHandle,
    BatchOutcome,
    BatchPending,
    BatchSettlement,
    create_options,
    upload_options,
)
from auditledger.adapters.calls.exchange import CallSink, error_json, redaction_set
from auditledger.adapters.calls.llm_summary import summarise_exchange
from auditledger.adapters.calls.pools import AsyncBorrowed, SharedPools
from auditledger.adapters.calls.ports import BatchLedger
from auditledger.adapters.calls.transports import AsyncAuditedTransport
from auditledger.domain.batch import Batch
from auditledger.domain.node_state import NodeState

P = ParamSpec("P")
T = TypeVar("T")


class _Clients(Protocol):
    @property
    def pools(self) -> SharedPools: ...


class _SyncLedger(BatchLedger, Protocol):
    @property
    def clients(self) -> _Clients: ...


class AsyncBatchLedger(Protocol):
    """What the runner needs of AsyncLedger: the Ledger it wraps, and a way off the loop."""

    @property
    def ledger(self) -> _SyncLedger: ...

    def run(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Awaitable[T]: ...


class AsyncOpenAIBatchRunner:
    def __init__(
        self,
        ledger: AsyncBatchLedger,
        client: openai.AsyncOpenAI,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        endpoint: str = "/v1/chat/completions",
        completion_window: str = "24h",
        redact_headers: Iterable[str] = (),
    ) -> None:
        """`client` carries base_url, key and retries; its requests go through `transport`
        (default: the ledger's shared pool), wrapped by an audited one per state."""
        self.ledger = ledger
        self.client = client
        self.inner = (
            AsyncBorrowed(inner=transport)
            if transport is not None
            else AsyncBorrowed(ledger.ledger.clients.pools)
        )
        self.endpoint = endpoint
        self.completion_window = completion_window
        self.redact = redaction_set(redact_headers)
        self.settlement = BatchSettlement(ledger.ledger, endpoint)

    async def submit(
        self, batch_id: str, state_id: str, requests: Mapping[str, Mapping[str, Any]]
    ) -> BatchHandle:
        """Upload one JSONL line per batch member (keyed by token id) and create the batch."""
        sync = self.ledger.ledger
        batch = await self.ledger.run(sync.load, Batch, batch_id)
        state = await self.ledger.run(sync.load, NodeState, state_id)
        self.settlement.check(batch, state, requests)
        jsonl = self.settlement.jsonl(batch, requests)
        digest = hashlib.sha256(jsonl).hexdigest()
        await self.ledger.run(sync.link_batch, batch.id, state.id)
        client, sink = await self._bound(str(state.id))
        step = "files.create"
        try:
            uploaded = await self._step(
                sink,
                step,
                lambda: client.files.create(**upload_options(str(batch.id), jsonl, digest)),
            )
            step = "batches.create"
            created = await self._step(
                sink,
                step,
                lambda: client.batches.create(
                    **create_options(
                        str(batch.id), uploaded.id, self.endpoint, self.completion_window
                    )
                ),
            )
        except Exception as failure:
            error = {"step": step, **error_json(failure)}
            await self.ledger.run(sync.fail_state, state.id, error)
            await self.ledger.run(sync.fail_batch, batch.id, error)
            raise
        reason = f"openai batch {created.id} is {created.status}"
        await self.ledger.run(sync.mark_state_pending, state.id, reason)
        return BatchHandle(
            batch_id=str(batch.id),
            state_id=str(state.id),
            provider_batch_id=created.id,
            input_file_id=uploaded.id,
            input_sha256=digest,
            endpoint=self.endpoint,
        )

    async def poll(self, handle: BatchHandle) -> BatchOutcome:
        """Retrieve the provider batch: BatchPending while it runs, else settle state and batch."""
        state = await self.ledger.run(self.ledger.ledger.load, NodeState, handle.state_id)
        if state.is_terminal:
            return await self.ledger.run(self.settlement.settled, handle, state)
        client, sink = await self._bound(handle.state_id)
        batch = await self._step(
            sink, "batches.retrieve", lambda: client.batches.retrieve(handle.provider_batch_id)
        )
        if batch.status in RUNNING:
            raise BatchPending(handle, batch.status)
        lines: list[tuple[str, bytes]] = []
        for file_id in (batch.output_file_id, batch.error_file_id):
            if file_id:
                data = await self._download(client, sink, file_id)
                lines += [(file_id, line) for line in data.splitlines() if line.strip()]
        return await self.ledger.run(self.settlement.settle, handle, batch.status, lines)

    async def recover(self, batch_id: str) -> BatchHandle:
        """The handle of a submitted batch, rebuilt from the ledger alone."""
        return await self.ledger.run(self.settlement.recover, batch_id)

    async def retry_failed(
        self,
        handle: BatchHandle | str,
        *,
        state_id: str | None = None,
        requests: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> BatchHandle:
        """OpenAIBatchRunner.retry_failed, awaited: the failed members of a failed batch
        submitted again as its retry (attempt n+1), under `state_id` or the next attempt of
        the state that ran it, with the bodies sent before unless `requests` gives them all."""
        if not isinstance(handle, BatchHandle):
            handle = await self.recover(handle)
        plan = await self.ledger.run(
            plan_retry,
            self.ledger.ledger,
            self.settlement,
            handle,
            state_id=state_id,
            requests=requests,
        )
        return await self.submit(plan.batch_id, plan.state_id, plan.requests)

    async def _download(self, client: openai.AsyncOpenAI, sink: CallSink, file_id: str) -> bytes:
        async def content() -> bytes:
            return (await client.files.content(file_id)).content

        return await self._step(sink, "files.content", content)

    async def _bound(self, state_id: str) -> tuple[openai.AsyncOpenAI, CallSink]:
        check = self.ledger.ledger.call_parent_id
        parent_id = await self.ledger.run(check, state_id, None, open_only=True)
        sink = CallSink(self.ledger.ledger, str(parent_id), None, CALL_TYPE, summarise_exchange)
        transport = AsyncAuditedTransport(sink, self.redact, self.inner)
        client = self.client.with_options(
            http_client=openai.DefaultAsyncHttpxClient(transport=transport)
        )
        return client, sink

    async def _step(self, sink: CallSink, step: str, action: Callable[[], Awaitable[T]]) -> T:
        before = sink.recorded.calls
        try:
            return await action()
        except Exception as failure:
            log = sink.recorded
            if log.calls == before or not log.last_was_error:  # the transport did not record it
                await self.ledger.run(
                    self.ledger.ledger.record_call,
                    sink.state_id,
                    call_type=CALL_TYPE,
                    request={"step": step},
                    error={"step": step, **error_json(failure)},
                )
            raise
