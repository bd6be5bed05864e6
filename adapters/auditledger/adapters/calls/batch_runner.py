"""The OpenAI Batch API for an aggregation batch, with an audit trail that cannot lie.

Invariants kept here:
- every call is recorded under the real node state that runs the batch (the batch is linked
  to it before anything is sent); per-member results are traced by custom_id
  "<batch_id>:<ordinal>" to the batch member, never to a made-up state;
- the JSONL is byte-exact in the payload store: the files.create call names its sha256 (the
  multipart part), and the output / error files are recorded in full by files.content;
- submit leaves the state PENDING (or FAILED with the batch), never OPEN; poll leaves it
  PENDING, or settles state and batch together: COMPLETED with an output hash only when
  every member has a result, FAILED otherwise, with an error call naming each custom_id
  that has none;
- every SDK exception is an error call before it propagates (the transport records failed
  exchanges; other exceptions are recorded here as a step error); a failed poll leaves the
  state PENDING and the handle usable.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import openai

from auditledger.adapters.calls.exchange import CallSink, error_json, is_http_request, redaction_set
from auditledger.adapters.calls.llm_summary import summarise_body, summarise_exchange
from auditledger.adapters.calls.pools import Borrowed
from auditledger.adapters.calls.ports import BatchLedger
from auditledger.adapters.calls.transports import AuditedTransport
from auditledger.adapters.storage.canonical import Payload, canonical_json
from auditledger.domain.batch import Batch
from auditledger.domain.errors import InvalidArgument
from auditledger.domain.lifecycle import COMPLETED, OPEN
from auditledger.domain.node_state import NodeState

T = TypeVar("T")
RUNNING = frozenset({"validating", "in_progress", "finalizing", "cancelling"})
CALL_TYPE = "llm_batch"


def custom_id_for(batch_id: str, ordinal: int) -> str:
    return f"{batch_id}:{ordinal}"


@dataclass(frozen=True)
class BatchHandle:
    """What an engine persists to poll later, in any process: JSON in, JSON out."""

    batch_id: str
    state_id: str
    provider_batch_id: str
    input_file_id: str
    input_sha256: str
    endpoint: str

    def to_json(self) -> dict[str, str]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, value: Mapping[str, str]) -> BatchHandle:
        return cls(**{key: str(value[key]) for key in cls.__dataclass_fields__})


class BatchPending(Exception):
    """The provider batch still runs; the state is PENDING. Persist `handle`, poll later."""

    def __init__(self, handle: BatchHandle, provider_status: str) -> None:
        self.handle = handle
        self.provider_status = provider_status
        super().__init__(
            f"batch {handle.batch_id} (openai {handle.provider_batch_id}) is {provider_status}; "
            f"node state {handle.state_id} stays pending"
        )


@dataclass(frozen=True)
class BatchOutcome:
    handle: BatchHandle
    status: str
    results: dict[str, Any] = field(default_factory=dict)
    failures: dict[str, Any] = field(default_factory=dict)


class OpenAIBatchRunner:
    def __init__(
        self,
        ledger: BatchLedger,
        client: openai.OpenAI,
        *,
        transport: httpx.BaseTransport | None = None,
        endpoint: str = "/v1/chat/completions",
        completion_window: str = "24h",
        redact_headers: Iterable[str] = (),
    ) -> None:
        """`client` carries base_url, key and retries; its requests go through `transport`
        (default: the inner transport of a client the ledger built, else a new
        httpx.HTTPTransport), wrapped by an audited one per state."""
        self.ledger = ledger
        self.client = client
        self.inner = transport or ledger.openai_transport(client) or httpx.HTTPTransport()
        self.endpoint = endpoint
        self.completion_window = completion_window
        self.redact = redaction_set(redact_headers)
        self.settlement = BatchSettlement(ledger, endpoint)

    def submit(
        self, batch_id: str, state_id: str, requests: Mapping[str, Mapping[str, Any]]
    ) -> BatchHandle:
        """Upload one JSONL line per batch member (keyed by token id) and create the batch."""
        batch = self.ledger.load(Batch, batch_id)
        state = self.ledger.load(NodeState, state_id)
        self.settlement.check(batch, state, requests)
        jsonl = self.settlement.jsonl(batch, requests)
        digest = hashlib.sha256(jsonl).hexdigest()
        self.ledger.link_batch(batch.id, state.id)
        client, sink = self._bound(str(state.id))
        step = "files.create"
        try:
            uploaded = self._step(
                sink,
                step,
                lambda: client.files.create(
                    file=(f"{batch.id}.jsonl", jsonl, "application/jsonl"),
                    purpose="batch",
                    extra_headers={
                        "Content-Type": f"multipart/form-data; boundary=auditledger-{digest[:32]}"
                    },
                ),
            )
            step = "batches.create"
            created = self._step(
                sink,
                step,
                lambda: client.batches.create(
                    input_file_id=uploaded.id,
                    endpoint=self.endpoint,  # type: ignore[arg-type]
                    completion_window=self.completion_window,  # type: ignore[arg-type]
                    metadata={"auditledger_batch_id": str(batch.id)},
                ),
            )
        except Exception as failure:
            error = {"step": step, **error_json(failure)}
            self.ledger.fail_state(state.id, error)
            self.ledger.fail_batch(batch.id, error)
            raise
        self.ledger.mark_state_pending(state.id, f"openai batch {created.id} is {created.status}")
        return BatchHandle(
            batch_id=str(batch.id),
            state_id=str(state.id),
            provider_batch_id=created.id,
            input_file_id=uploaded.id,
            input_sha256=digest,
            endpoint=self.endpoint,
        )

    def poll(self, handle: BatchHandle) -> BatchOutcome:
        """Retrieve the provider batch: BatchPending while it runs, else settle state and batch."""
        state = self.ledger.load(NodeState, handle.state_id)
        if state.is_terminal:
            return self.settlement.settled(handle, state)
        client, sink = self._bound(handle.state_id)
        batch = self._step(
            sink, "batches.retrieve", lambda: client.batches.retrieve(handle.provider_batch_id)
        )
        if batch.status in RUNNING:
            raise BatchPending(handle, batch.status)
        lines: list[tuple[str, bytes]] = []
        for file_id in (batch.output_file_id, batch.error_file_id):
            if file_id:
                data = self._download(client, sink, file_id)
                lines += [(file_id, line) for line in data.splitlines() if line.strip()]
        return self.settlement.settle(handle, batch.status, lines)

    def recover(self, batch_id: str) -> BatchHandle:
        """The handle of a submitted batch, rebuilt from the ledger alone (the engine lost it,
        or crashed between batches.create and PENDING); an OPEN state becomes PENDING."""
        return self.settlement.recover(batch_id)

    # internals

    def _download(self, client: openai.OpenAI, sink: CallSink, file_id: str) -> bytes:
        return self._step(sink, "files.content", lambda: client.files.content(file_id).content)

    def _bound(self, state_id: str) -> tuple[openai.OpenAI, CallSink]:
        parent_id = self.ledger.call_parent_id(state_id, None, open_only=True)
        sink = CallSink(self.ledger, str(parent_id), None, CALL_TYPE, summarise_exchange)
        transport = AuditedTransport(sink, self.redact, Borrowed(self.inner))
        client = self.client.with_options(
            http_client=openai.DefaultHttpxClient(transport=transport)
        )
        return client, sink

    def _step(self, sink: CallSink, step: str, action: Callable[[], T]) -> T:
        before = sink.recorded.calls
        try:
            return action()
        except Exception as failure:
            log = sink.recorded
            if log.calls == before or not log.last_was_error:  # the transport did not record it
                self.ledger.record_call(
                    sink.state_id,
                    call_type=CALL_TYPE,
                    request={"step": step},
                    error={"step": step, **error_json(failure)},
                )
            raise


class BatchSettlement:
    """The ledger's side of a batch, shared by the sync and async runners: the submit checks,
    the JSONL, settling state and batch from the provider's result lines, recovery."""

    def __init__(self, ledger: BatchLedger, endpoint: str) -> None:
        self.ledger = ledger
        self.endpoint = endpoint

    def jsonl(self, batch: Batch, requests: Mapping[str, Mapping[str, Any]]) -> bytes:
        """One canonical JSONL line per member, in ordinal order."""
        members = sorted(batch.members.items(), key=lambda item: item[1])
        return b"".join(
            canonical_json(
                {
                    "custom_id": custom_id_for(str(batch.id), ordinal),
                    "method": "POST",
                    "url": self.endpoint,
                    "body": dict(requests[token]),
                },
                f"requests[{token!r}]",
            )
            + b"\n"
            for token, ordinal in members
        )

    def check(self, batch: Batch, state: NodeState, requests: Mapping[str, Any]) -> None:
        if state.status != OPEN:
            raise InvalidArgument(
                "state_id", str(state.id), f"submit needs an open node state; it is {state.status}"
            )
        missing = sorted(set(batch.members) - set(requests))
        extra = sorted(set(requests) - set(batch.members))
        if not batch.members or missing or extra:
            raise InvalidArgument(
                "requests",
                {"missing": missing, "not_members": extra},
                f"one request per member of batch {batch.id}, keyed by token id",
            )

    def settle(
        self, handle: BatchHandle, provider_status: str, lines: list[tuple[str, bytes]]
    ) -> BatchOutcome:
        batch = self.ledger.load(Batch, handle.batch_id)
        ordinals = {custom_id_for(handle.batch_id, n): token for token, n in batch.members.items()}
        inputs = _input_bodies(self.ledger.payload(handle.input_sha256))
        found: dict[str, tuple[str | None, Any]] = {}
        for source, line in lines:
            item = _parse_line(line)
            custom_id = item.get("custom_id") if isinstance(item, dict) else None
            if custom_id not in ordinals or custom_id in found:
                self.record_unexpected(handle, source, line)
                continue
            found[str(custom_id)] = (source, item)
        results: dict[str, Any] = {}
        failures: dict[str, Any] = {}
        for custom_id, token in sorted(ordinals.items(), key=lambda kv: batch.members[kv[1]]):
            file_id, item = found.get(custom_id, (None, None))
            body = _success_body(item)
            if body is not None:
                results[token] = body
            else:
                failures[token] = custom_id
            self.record_member(handle, custom_id, token, file_id, item, inputs.get(custom_id))
        if provider_status == COMPLETED and not failures:
            output = {"provider_batch_id": handle.provider_batch_id, "results": results}
            self.ledger.complete_state(handle.state_id, output=output)
            self.ledger.complete_batch(handle.batch_id)
            return BatchOutcome(handle, COMPLETED, results)
        error = {
            "type": "BatchIncomplete",
            "provider_batch_id": handle.provider_batch_id,
            "provider_status": provider_status,
            "custom_ids_without_result": sorted(failures.values()),
        }
        self.ledger.fail_state(handle.state_id, error)
        self.ledger.fail_batch(handle.batch_id, error)
        return BatchOutcome(handle, "failed", results, failures)

    def record_member(
        self,
        handle: BatchHandle,
        custom_id: str,
        token: str,
        file_id: str | None,
        item: Any,
        request_body: Any,
    ) -> None:
        """One llm call per member result (via_batch); an error call when it has none.
        Its call_id is derived from the custom_id, so a re-poll after a crash adds nothing."""
        request = {
            "via": "openai_batch",
            "provider_batch_id": handle.provider_batch_id,
            "custom_id": custom_id,
            "token_id": token,
            "input_sha256": handle.input_sha256,
            "body": request_body,
        }
        body = _success_body(item)
        error = None
        if body is None:
            kind = "MissingBatchOutput" if item is None else "BatchMemberFailed"
            error = {"type": kind, "custom_id": custom_id, "token_id": token, "file_id": file_id}
        self.ledger.record_call(
            handle.state_id,
            call_type="llm",
            request=request,
            response=None if item is None else {"file_id": file_id, "line": item},
            error=error,
            summary=summarise_body(
                body or {}, endpoint=handle.endpoint, via_batch=True, custom_id=custom_id
            ),
            call_id=f"openai-batch-result:{custom_id}",
        )

    def record_unexpected(self, handle: BatchHandle, file_id: str, line: bytes) -> None:
        """A line naming no (or an already answered) member: kept as an error, never mapped."""
        raw = Payload.of_bytes(line)
        self.ledger.record_call(
            handle.state_id,
            call_type="llm",
            request={"via": "openai_batch", "provider_batch_id": handle.provider_batch_id},
            error={"type": "UnexpectedBatchOutput", "file_id": file_id, "line_sha256": raw.digest},
            attachments=[raw],
            call_id=f"openai-batch-unexpected:{handle.batch_id}:{raw.digest}",
        )

    def settled(self, handle: BatchHandle, state: NodeState) -> BatchOutcome:
        if state.status == COMPLETED and state.output_hash is not None:
            output = json.loads(self.ledger.payload(state.output_hash))
            return BatchOutcome(handle, COMPLETED, dict(output.get("results", {})))
        error = json.loads(state.error_json) if state.error_json else {}
        failed = error.get("custom_ids_without_result", []) if isinstance(error, dict) else []
        return BatchOutcome(handle, state.status, failures={c: c for c in failed})

    def recover(self, batch_id: str) -> BatchHandle:
        """The handle of a submitted batch, rebuilt from the ledger alone (the engine lost it,
        or crashed between batches.create and PENDING); an OPEN state becomes PENDING."""
        batch = self.ledger.load(Batch, batch_id)
        if batch.state_id is None:
            raise InvalidArgument("batch_id", batch_id, "the batch was never submitted")
        upload = created = None
        for call in self.ledger.recorded_calls(batch.state_id):
            if call.status != "success" or not is_http_request(call.request):
                continue
            if call.request["method"] == "POST" and call.request["url"].endswith("/files"):
                upload = call
            elif call.request["method"] == "POST" and call.request["url"].endswith("/batches"):
                created = call
        if upload is None or created is None:
            raise InvalidArgument(
                "batch_id", batch_id, "no successful files.create and batches.create recorded"
            )
        [part] = [p for p in upload.request["body"].get("parts", []) if p.get("name") == "file"]
        provider_batch = json.loads(_decoded(self.ledger, created.response))
        handle = BatchHandle(
            batch_id=str(batch.id),
            state_id=str(batch.state_id),
            provider_batch_id=str(provider_batch["id"]),
            input_file_id=str(json.loads(_decoded(self.ledger, upload.response))["id"]),
            input_sha256=str(part["sha256"]),
            endpoint=str(provider_batch.get("endpoint") or self.endpoint),
        )
        if self.ledger.load(NodeState, handle.state_id).status == OPEN:
            self.ledger.mark_state_pending(
                handle.state_id, f"openai batch {handle.provider_batch_id}"
            )
        return handle


def _decoded(ledger: BatchLedger, response: Mapping[str, Any]) -> bytes:
    data = ledger.payload(response["body"]["sha256"])
    return httpx.Response(200, headers=response["headers"], content=data).content


def _parse_line(line: bytes) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        return None


def _success_body(item: Any) -> dict[str, Any] | None:
    if not isinstance(item, dict) or item.get("error"):
        return None
    response = item.get("response")
    if not isinstance(response, dict) or not 200 <= int(response.get("status_code") or 0) < 300:
        return None
    body = response.get("body")
    return body if isinstance(body, dict) else None


def _input_bodies(jsonl: bytes) -> dict[str, Any]:
    bodies = {}
    for line in jsonl.splitlines():
        item = json.loads(line)
        bodies[item["custom_id"]] = item["body"]
    return bodies
