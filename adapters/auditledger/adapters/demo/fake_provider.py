"""A small OpenAI-compatible provider as plain code, for the demo and the tests.

`FakeOpenAI().handle` is an httpx.MockTransport handler (in-process); the tests also serve
it over real HTTP on 127.0.0.1. It answers chat completions (plain and streamed), file
upload / metadata / content, and batches create / retrieve / cancel. Everything is
deterministic: ids and timestamps come from counters, replies from the prompt.

Faults, switched on with `inject`:
- per request: "429", "500", "timeout", "drop" (connection closed, no response),
  "malformed" (a 200 whose JSON body does not parse);
- per batch (the next one created): "expire", "fail", "cancel", "missing_line" (the output
  file lacks the last member's line), "error_line" (the first member is in the error file).
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx

REQUEST_FAULTS = frozenset({"429", "500", "timeout", "drop", "malformed"})
BATCH_FAULTS = frozenset({"expire", "fail", "cancel", "missing_line", "error_line"})
EPOCH = 1_767_225_600
URGENT_WORDS = ("fire", "crash", "down", "outage")


def reply_for(prompt: str) -> str:
    return "urgent" if any(word in prompt.lower() for word in URGENT_WORDS) else "normal"


class FakeOpenAI:
    def __init__(self, *, batch_polls: int = 1) -> None:
        self.batch_polls = batch_polls
        self.files: dict[str, tuple[dict[str, Any], bytes]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self._plans: dict[str, tuple[str | None, int]] = {}
        self._request_faults: list[tuple[str, str]] = []
        self._batch_faults: list[str] = []
        self._counter = 0
        self._lock = threading.Lock()

    def inject(self, fault: str, *, times: int = 1, on: str = "") -> None:
        """Make the next `times` requests whose path contains `on` (or the next batch) fail."""
        if fault in REQUEST_FAULTS:
            self._request_faults.extend([(fault, on)] * times)
        elif fault in BATCH_FAULTS:
            self._batch_faults.extend([fault] * times)
        else:
            raise ValueError(f"unknown fault {fault!r}")

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        path = request.url.path.removeprefix("/v1")
        with self._lock:
            self.requests.append((request.method, path))
            fault = self._take_fault(path)
            if fault == "timeout":
                raise httpx.ReadTimeout("fake provider: no answer in time", request=request)
            if fault == "drop":
                raise httpx.RemoteProtocolError("fake provider: connection dropped")
            if fault in ("429", "500"):
                return _error(int(fault), "rate limited" if fault == "429" else "server error")
            if fault == "malformed":
                return httpx.Response(
                    200, headers={"content-type": "application/json"}, content=b"{"
                )
            return self._route(request.method, path, request, body)

    # routing

    def _route(self, method: str, path: str, request: httpx.Request, body: bytes) -> httpx.Response:
        parts = path.strip("/").split("/")
        if method == "POST" and path == "/chat/completions":
            return self._chat(json.loads(body))
        if method == "POST" and path == "/files":
            return self._upload(request.headers.get("content-type", ""), body)
        if method == "GET" and parts[0] == "files" and len(parts) == 3 and parts[2] == "content":
            return self._file_content(parts[1])
        if method == "GET" and parts[0] == "files" and len(parts) == 2:
            return self._known(self.files, parts[1], lambda f: _json(f[0]))
        if method == "POST" and path == "/batches":
            return self._create_batch(json.loads(body))
        if method == "GET" and parts[0] == "batches" and len(parts) == 2:
            return self._known(self.batches, parts[1], self._advance)
        if method == "POST" and parts[0] == "batches" and parts[-1] == "cancel":
            return self._known(self.batches, parts[1], self._cancel)
        return _error(404, f"no route for {method} {path}")

    def _next(self, prefix: str) -> tuple[str, int]:
        self._counter += 1
        return f"{prefix}-{self._counter}", EPOCH + self._counter

    def _take_fault(self, path: str) -> str | None:
        for n, (fault, on) in enumerate(self._request_faults):
            if on in path:
                del self._request_faults[n]
                return fault
        return None

    # chat

    def _completion(self, body: dict[str, Any]) -> dict[str, Any]:
        prompt = " ".join(str(m.get("content", "")) for m in body.get("messages", []))
        answer = reply_for(prompt)
        completion_id, created = self._next("chatcmpl")
        prompt_tokens = len(prompt.split())
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": body.get("model", "fake-model"),
            "service_tier": body.get("service_tier", "default"),
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer, "refusal": None},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": 1,
                "total_tokens": prompt_tokens + 1,
                "prompt_tokens_details": {"cached_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0},
            },
        }

    def _chat(self, body: dict[str, Any]) -> httpx.Response:
        completion = self._completion(body)
        if not body.get("stream"):
            return _json(completion)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return httpx.Response(
            200,
            headers={"content-type": "text/event-stream"},
            content=b"".join(_sse(completion, include_usage)),
        )

    # files

    def _upload(self, content_type: str, body: bytes) -> httpx.Response:
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
        )
        fields: dict[str, Any] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            fields[str(name)] = (part.get_filename(), part.get_payload(decode=True))
        filename, data = fields.get("file", (None, None))
        if data is None:
            return _error(400, "a file upload needs a 'file' part")
        purpose = fields.get("purpose", (None, b""))[1].decode()
        return _json(self._store_file(data, filename or "upload.jsonl", purpose)[0])

    def _store_file(self, data: bytes, filename: str, purpose: str) -> tuple[dict[str, Any], bytes]:
        file_id, created = self._next("file")
        meta = {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": created,
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
        }
        self.files[file_id] = (meta, data)
        return meta, data

    def _file_content(self, file_id: str) -> httpx.Response:
        if file_id not in self.files:
            return _error(404, f"no file {file_id}")
        return httpx.Response(
            200,
            headers={"content-type": "application/octet-stream"},
            content=self.files[file_id][1],
        )

    # batches

    def _create_batch(self, body: dict[str, Any]) -> httpx.Response:
        input_file = body.get("input_file_id", "")
        if input_file not in self.files:
            return _error(400, f"no input file {input_file}")
        batch_id, created = self._next("batch")
        self._plans[batch_id] = (self._batch_faults.pop(0) if self._batch_faults else None, 0)
        lines = self.files[input_file][1].splitlines()
        self.batches[batch_id] = {
            "id": batch_id,
            "object": "batch",
            "endpoint": body.get("endpoint"),
            "errors": None,
            "input_file_id": input_file,
            "completion_window": body.get("completion_window", "24h"),
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": created,
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            "metadata": body.get("metadata"),
        }
        return _json(self.batches[batch_id])

    def _advance(self, batch: dict[str, Any]) -> httpx.Response:
        if batch["status"] in ("validating", "in_progress"):
            fault, polls = self._plans[batch["id"]]
            polls += 1
            self._plans[batch["id"]] = (fault, polls)
            batch["status"] = "in_progress"
            if polls >= self.batch_polls:
                self._finish(batch, fault)
        return _json(batch)

    def _cancel(self, batch: dict[str, Any]) -> httpx.Response:
        if batch["status"] in ("validating", "in_progress"):
            batch["status"] = "cancelled"
        return _json(batch)

    def _finish(self, batch: dict[str, Any], fault: str | None) -> None:
        ending = {"expire": "expired", "fail": "failed", "cancel": "cancelled"}.get(fault or "")
        if ending is not None:
            batch["status"] = ending
            if ending == "failed":
                batch["errors"] = {"object": "list", "data": [{"code": "invalid", "message": "x"}]}
            return
        outputs, errors = [], []
        lines = self.files[batch["input_file_id"]][1].splitlines()
        for n, line in enumerate(lines):
            item = json.loads(line)
            if fault == "missing_line" and n == len(lines) - 1:
                continue
            if fault == "error_line" and n == 0:
                errors.append(_batch_error(item["custom_id"], self._next("batch_req")[0]))
                continue
            request_id = self._next("batch_req")[0]
            response = {
                "status_code": 200,
                "request_id": request_id,
                "body": self._completion(item["body"]),
            }
            outputs.append(
                {
                    "id": request_id,
                    "custom_id": item["custom_id"],
                    "response": response,
                    "error": None,
                }
            )
        batch["status"] = "completed"
        batch["output_file_id"] = self._jsonl_file(outputs)
        batch["error_file_id"] = self._jsonl_file(errors) if errors else None
        batch["request_counts"] = {
            "total": len(lines),
            "completed": len(outputs),
            "failed": len(errors),
        }

    def _jsonl_file(self, items: list[dict[str, Any]]) -> str:
        data = b"".join(json.dumps(item, sort_keys=True).encode() + b"\n" for item in items)
        return str(self._store_file(data, "output.jsonl", "batch_output")[0]["id"])

    def _known(self, table: dict[str, Any], key: str, then: Any) -> httpx.Response:
        return then(table[key]) if key in table else _error(404, f"no such object {key}")


def _json(value: Any) -> httpx.Response:
    return httpx.Response(200, json=value)


def _error(status: int, message: str) -> httpx.Response:
    headers = {"retry-after-ms": "1"} if status in (429, 500) else {}
    body = {"error": {"message": message, "type": "fake_error", "code": str(status)}}
    return httpx.Response(status, json=body, headers=headers)


def _batch_error(custom_id: str, request_id: str) -> dict[str, Any]:
    response = {
        "status_code": 400,
        "request_id": request_id,
        "body": {"error": {"message": "bad request"}},
    }
    return {"id": request_id, "custom_id": custom_id, "response": response, "error": None}


def _sse(completion: dict[str, Any], include_usage: bool) -> Iterator[bytes]:
    base = {
        k: completion[k] for k in ("id", "created", "model", "service_tier", "system_fingerprint")
    }
    base["object"] = "chat.completion.chunk"
    content = completion["choices"][0]["message"]["content"]
    for delta, finish in (({"role": "assistant", "content": content}, None), ({}, "stop")):
        chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
    if include_usage:
        yield (
            b"data: "
            + json.dumps({**base, "choices": [], "usage": completion["usage"]}).encode()
            + b"\n\n"
        )
    yield b"data: [DONE]\n\n"
