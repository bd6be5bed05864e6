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
  state PENDING and the handle usable;
- a settled batch has one outcome, keyed by token id: the first poll and every later one
  build it from the same per-member facts (later ones read them back from the member calls);
- retry_failed sends only the failed members again, as the batch's retry (attempt n+1) under
  a new attempt of the state, with the bodies sent before (read from the recorded JSONL).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import openai

from auditledger.adapters.calls.batch_retry import custom_id_for, input_bodies, plan_retry
from auditledger.adapters.calls.exchange import CallSink, error_json, is_http_request, redaction_set
from auditledger.adapters.calls.llm_summary import summarise_body, summarise_exchange
from auditledger.adapters.calls.pools import Borrowed
from auditledger.adapters.calls.ports import BatchLedger
from auditledger.adapters.calls.transports import AuditedTransport
from auditledger.adapters.storage.canonical import Payload, canonical_json
from auditledger.domain.batch import Batch
from auditledger.domain.errors import InvalidArgument
from auditledger.domain.lifecycle import COMPLETED, FAILED, OPEN
from auditledger.domain.node_state import NodeState

T = TypeVar("T")
RUNNING = frozenset({"validating", "in_progress", "finalizing", "cancelling"})
CALL_TYPE = "llm_batch"


def upload_options(batch_id: str, jsonl: bytes, digest: str) -> dict[str, Any]:
    """files.create's arguments for a batch's JSONL: a fixed multipart boundary, so the
    recorded request hashes the same on every run."""
    return {
        "file": (f"{batch_id}.jsonl", jsonl, "application/jsonl"),
        "purpose": "batch",
        "extra_headers": {
            "Content-Type": f"multipart/form-data; boundary=auditledger-{digest[:32]}"
        },
    }


def create_options(batch_id: str, file_id: str, endpoint: str, window: str) -> dict[str, Any]:
    """batches.create's arguments; the metadata names our batch."""
    return {
        "input_file_id": file_id,
        "endpoint": endpoint,
        "completion_window": window,
        "metadata": {"auditledger_batch_id": batch_id},
    }


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
class MemberFailure:
    """Why one member has no result: `error` is the provider's error object (the line's
    `error`, else its response body's `error`), None when no line came back for it."""

    token_id: str
    custom_id: str
    kind: str  # "BatchMemberFailed" (a line with an error) or "MissingBatchOutput" (no line)
    error: Any = None
    status_code: int | None = None
    file_id: str | None = None


@dataclass(frozen=True)
class BatchOutcome:
    """A settled batch: `results` (token id -> response body) for every member that has one,
    also when others failed; `failures` (token id -> MemberFailure) for the others."""

    handle: BatchHandle
    status: str
    results: dict[str, Any] = field(default_factory=dict)
    failures: dict[str, MemberFailure] = field(default_factory=dict)
    provider_status: str | None = None


@dataclass(frozen=True)
class _Member:
    """One member's answer as the provider gave it: the line (None if none) and its file."""

    token_id: str
    custom_id: str
    file_id: str | None
    item: Any


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
                lambda: client.files.create(**upload_options(str(batch.id), jsonl, digest)),
            )
            step = "batches.create"
            created = self._step(
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

    def retry_failed(
        self,
        handle: BatchHandle | str,
        *,
        state_id: str | None = None,
        requests: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> BatchHandle:
        """Submit the failed members of a failed batch (its handle, or its id) again, as its
        retry (`ledger.retry_batch`, attempt n+1), and return the retry's handle.

        The retry runs under `state_id` (an open state at the batch's node) or, by default,
        under the next attempt of the state that ran the batch (same token, node, step and
        input; reused if it is already open). Each member's body is the one sent before
        (from the recorded JSONL) unless `requests` (token id -> body) gives them all."""
        if not isinstance(handle, BatchHandle):
            handle = self.recover(handle)
        plan = plan_retry(
            self.ledger, self.settlement, handle, state_id=state_id, requests=requests
        )
        return self.submit(plan.batch_id, plan.state_id, plan.requests)

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
        inputs = input_bodies(self.ledger.payload(handle.input_sha256))
        found: dict[str, tuple[str | None, Any]] = {}
        for source, line in lines:
            item = _parse_line(line)
            custom_id = item.get("custom_id") if isinstance(item, dict) else None
            if custom_id not in ordinals or custom_id in found:
                self.record_unexpected(handle, source, line)
                continue
            found[str(custom_id)] = (source, item)
        members = []
        for custom_id, token in sorted(ordinals.items(), key=lambda kv: batch.members[kv[1]]):
            file_id, item = found.get(custom_id, (None, None))
            member = _Member(token, custom_id, file_id, item)
            self.record_member(handle, member, inputs.get(custom_id))
            members.append(member)
        outcome = _outcome(handle, provider_status, members)
        if outcome.status == COMPLETED:
            output = {"provider_batch_id": handle.provider_batch_id, "results": outcome.results}
            self.ledger.complete_state(handle.state_id, output=output)
            self.ledger.complete_batch(handle.batch_id)
            return outcome
        error = {
            "type": "BatchIncomplete",
            "provider_batch_id": handle.provider_batch_id,
            "provider_status": provider_status,
            "custom_ids_without_result": sorted(f.custom_id for f in outcome.failures.values()),
        }
        self.ledger.fail_state(handle.state_id, error)
        self.ledger.fail_batch(handle.batch_id, error)
        return outcome

    def record_member(self, handle: BatchHandle, member: _Member, request_body: Any) -> None:
        """One llm call per member result (via_batch); an error call when it has none.
        Its call_id is derived from the custom_id, so a re-poll after a crash adds nothing."""
        request = {
            "via": "openai_batch",
            "provider_batch_id": handle.provider_batch_id,
            "custom_id": member.custom_id,
            "token_id": member.token_id,
            "input_sha256": handle.input_sha256,
            "body": request_body,
        }
        body = _success_body(member.item)
        failure = None if body is not None else _failure(member)
        error = None
        if failure is not None:
            error = {
                "type": failure.kind,
                "custom_id": member.custom_id,
                "token_id": member.token_id,
                "file_id": member.file_id,
                "status_code": failure.status_code,
                "provider_error": failure.error,
            }
        self.ledger.record_call(
            handle.state_id,
            call_type="llm",
            request=request,
            response=None
            if member.item is None
            else {"file_id": member.file_id, "line": member.item},
            error=error,
            summary=summarise_body(
                body or {}, endpoint=handle.endpoint, via_batch=True, custom_id=member.custom_id
            ),
            call_id=f"openai-batch-result:{member.custom_id}",
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
        """The outcome the settling poll returned, read back from the ledger."""
        if state.status == COMPLETED and state.output_hash is not None:
            output = json.loads(self.ledger.payload(state.output_hash))
            return BatchOutcome(
                handle, COMPLETED, dict(output.get("results", {})), provider_status=COMPLETED
            )
        error = json.loads(state.error_json) if state.error_json else {}
        provider_status = error.get("provider_status") if isinstance(error, dict) else None
        batch = self.ledger.load(Batch, handle.batch_id)
        answered: dict[str, _Member] = {}
        for call in self.ledger.recorded_calls(state.id):
            request = call.request if isinstance(call.request, dict) else {}
            custom_id, token = request.get("custom_id"), request.get("token_id")
            if request.get("via") != "openai_batch" or not isinstance(token, str):
                continue
            if token not in batch.members or custom_id != custom_id_for(
                handle.batch_id, batch.members[token]
            ):
                continue
            response = call.response if isinstance(call.response, dict) else {}
            answered[token] = _Member(
                token, custom_id, response.get("file_id"), response.get("line")
            )
        members = [
            answered.get(token) or _Member(token, custom_id_for(handle.batch_id, n), None, None)
            for token, n in sorted(batch.members.items(), key=lambda item: item[1])
        ]
        outcome = _outcome(handle, provider_status or state.status, members)
        return BatchOutcome(
            handle, state.status, outcome.results, outcome.failures, provider_status
        )

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


def _outcome(handle: BatchHandle, provider_status: str, members: list[_Member]) -> BatchOutcome:
    """Completed only when the provider said so and every member has a result."""
    results: dict[str, Any] = {}
    failures: dict[str, MemberFailure] = {}
    for member in members:
        body = _success_body(member.item)
        if body is not None:
            results[member.token_id] = body
        else:
            failures[member.token_id] = _failure(member)
    status = COMPLETED if provider_status == COMPLETED and not failures else FAILED
    return BatchOutcome(handle, status, results, failures, provider_status)


def _failure(member: _Member) -> MemberFailure:
    item = member.item
    if not isinstance(item, dict):
        return MemberFailure(member.token_id, member.custom_id, "MissingBatchOutput")
    response = item.get("response")
    response = response if isinstance(response, dict) else {}
    body = response.get("body")
    body = body if isinstance(body, dict) else {}
    status_code = response.get("status_code")
    return MemberFailure(
        member.token_id,
        member.custom_id,
        "BatchMemberFailed",
        error=item.get("error") or body.get("error"),
        status_code=status_code if isinstance(status_code, int) else None,
        file_id=member.file_id,
    )


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
