"""How one HTTP exchange becomes a call: the JSON shapes of docs/calls.md, and their recording.

Invariants kept here:
- secrets never reach the ledger: the values of credential headers and query parameters
  (`is_secret`: SECRET_HEADERS, any name the caller gives, any name with a word containing
  one of SECRET_FRAGMENTS), URL userinfo, and those same values inside an exception's
  message are replaced by REDACTED before anything is hashed or stored, so the request hash
  is the hash of what is stored;
- body bytes are their own payloads, referenced by sha256 and committed before the call event
  (they travel as `attachments=`), so a body ref never dangles;
- a response body is kept once: chunks are hashed as they pass and joined once at the end.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import unquote_plus

import httpx

from auditledger.adapters.calls.ports import CallRecorder
from auditledger.adapters.storage.canonical import Payload

REDACTED = "[redacted]"
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "api-key",
        "x-api-key",
        "cookie",
        "set-cookie",
    }
)
SECRET_FRAGMENTS = (
    "key",
    "token",
    "secret",
    "auth",
    "sig",
    "password",
    "passwd",
    "passphrase",
    "pwd",
    "credential",
    "session",
    "sessid",
    "cookie",
    "jwt",
)
"""A header or query parameter whose name, lower-cased, has a word (split at - _ . and
spaces) containing one of these is a credential: its value is never stored."""
COUNT_WORDS = frozenset({"tokens"})
"""Words that name a count, not a credential (max_tokens, x-ratelimit-remaining-tokens)."""

_WORD_BREAK = re.compile(r"[-_.\s]+")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@'\"<>]+@")
_PAIR = re.compile(r"([\w.%+\-]+)=([^\s&#'\"<>,;()\[\]{}]+)")
_SHORTEST_SCRUBBED = 4

Summariser = Callable[["Exchange"], tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]]
"""(summary, error) for a finished exchange; an error turns a 2xx call into an error call."""


def redaction_set(extra: Iterable[str] = ()) -> frozenset[str]:
    """The names redacted whatever the rule says: SECRET_HEADERS and the caller's own."""
    return SECRET_HEADERS | {name.lower() for name in extra}


@lru_cache(maxsize=4096)
def is_secret(name: str, redact: frozenset[str] = SECRET_HEADERS) -> bool:
    """Whether a header or query parameter called `name` carries a credential."""
    lowered = name.lower()
    if lowered in redact:
        return True
    words = (word for word in _WORD_BREAK.split(lowered) if word not in COUNT_WORDS)
    return any(fragment in word for word in words for fragment in SECRET_FRAGMENTS)


def redact_text(text: str, redact: frozenset[str] = SECRET_HEADERS) -> str:
    """`text` with URL userinfo and the value of every secret `name=value` pair replaced."""
    if "=" not in text and "@" not in text:
        return text
    text = _USERINFO.sub(lambda m: f"{m[1]}{REDACTED}@", text)
    return _PAIR.sub(
        lambda m: f"{m[1]}={REDACTED}" if is_secret(unquote_plus(m[1]), redact) else m[0], text
    )


def redact_query(query: str, redact: frozenset[str] = SECRET_HEADERS) -> str:
    """A raw query string (or fragment) with each secret parameter's value replaced."""
    pairs = []
    for pair in query.split("&"):
        name, equals, value = pair.partition("=")
        if equals and value and is_secret(unquote_plus(name), redact):
            pair = f"{name}={REDACTED}"
        pairs.append(pair)
    return "&".join(pairs)


def header_pairs(headers: httpx.Headers, redact: frozenset[str]) -> list[list[str]]:
    return [
        [name, REDACTED if is_secret(name, redact) else redact_text(value, redact)]
        for name, value in headers.multi_items()
    ]


def safe_url(url: httpx.URL, redact: frozenset[str] = SECRET_HEADERS) -> str:
    """The URL as stored: userinfo and secret query (and fragment) values redacted."""
    if url.userinfo:
        url = url.copy_with(username=REDACTED, password=None)
    if url.query:
        url = url.copy_with(query=redact_query(url.query.decode("ascii"), redact).encode())
    if "=" in url.fragment:
        url = url.copy_with(fragment=redact_query(url.fragment, redact))
    return str(url)


def secret_values(request: httpx.Request, redact: frozenset[str] = SECRET_HEADERS) -> set[str]:
    """The credentials a request carries: secret header and query values, the URL password."""
    values = {value for name, value in request.headers.multi_items() if is_secret(name, redact)}
    values |= {value for name, value in request.url.params.multi_items() if is_secret(name, redact)}
    for pair in request.url.query.decode("ascii").split("&"):
        name, _, value = pair.partition("=")
        if is_secret(unquote_plus(name), redact):
            values.add(value)
    values |= {part for value in set(values) for part in value.split()}
    if request.url.password:
        values.add(request.url.password)
    return {value for value in values if len(value) >= _SHORTEST_SCRUBBED}


RequestPayloads = tuple[Payload, list[tuple[dict[str, str], Payload]]]
"""A request body as kept: the whole body, and each multipart part with its headers."""


def request_payloads(request: httpx.Request, body: bytes) -> RequestPayloads:
    """The body and its multipart parts, each hashed once (for the refs and the store)."""
    parts = multipart_parts(request.headers.get("content-type"), body)
    return Payload.of_bytes(body), [(headers, Payload.of_bytes(data)) for headers, data in parts]


def body_ref(payload: Payload, content_type: str | None) -> dict[str, Any]:
    return {"sha256": payload.digest, "size": len(payload.data), "content_type": content_type}


def request_json(
    request: httpx.Request,
    body: bytes,
    redact: frozenset[str],
    payloads: RequestPayloads | None = None,
) -> dict[str, Any]:
    whole, parts = payloads or request_payloads(request, body)
    ref = body_ref(whole, request.headers.get("content-type"))
    if parts:
        ref["parts"] = [
            {
                **{k: v for k, v in headers.items() if k in ("name", "filename")},
                **body_ref(part, headers.get("content-type")),
            }
            for headers, part in parts
        ]
    return {
        "method": request.method,
        "url": safe_url(request.url, redact),
        "headers": header_pairs(request.headers, redact),
        "body": ref,
    }


def multipart_parts(content_type: str | None, body: bytes) -> list[tuple[dict[str, str], bytes]]:
    """The parts of a multipart/form-data body, byte-exact (RFC 7578); [] for anything else."""
    if not content_type or not content_type.startswith("multipart/form-data"):
        return []
    params = (item.strip() for item in content_type.split(";")[1:])
    marker = next((p[9:].strip('"') for p in params if p.startswith("boundary=")), None)
    if not marker:
        return []
    parts = []
    for chunk in body.split(b"--" + marker.encode())[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        headers: dict[str, str] = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
            for item in value.split(";")[1:]:
                key, _, val = item.strip().partition("=")
                headers[key.lower()] = val.strip('"')
        parts.append((headers, data.removesuffix(b"\r\n")))
    return parts


def is_http_request(value: Any) -> bool:
    return isinstance(value, dict) and {"method", "url", "headers", "body"} <= value.keys()


def error_json(error: BaseException, redact: frozenset[str] = SECRET_HEADERS) -> dict[str, Any]:
    """The exception as call JSON; its message redacted like a URL, and scrubbed of every
    credential the failed request carried (httpx and openai errors name their request)."""
    kind = type(error)
    message = redact_text(str(error), redact)
    for value in sorted(secret_values_of(error, redact), key=len, reverse=True):
        message = message.replace(value, REDACTED)
    return {"type": kind.__name__, "module": kind.__module__, "message": message}


def secret_values_of(error: BaseException, redact: frozenset[str]) -> set[str]:
    try:
        request = getattr(error, "request", None)
    except RuntimeError:  # an httpx error raised without its request
        return set()
    return secret_values(request, redact) if isinstance(request, httpx.Request) else set()


@dataclass
class Exchange:
    """One request on its way through an audited transport, until its call is recorded."""

    request: httpx.Request
    request_body: bytes
    redact: frozenset[str]
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    _t0: float = field(default_factory=time.perf_counter)
    response: httpx.Response | None = None
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0
    _hash: Any = field(default_factory=hashlib.sha256)
    recorded: bool = False

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self._t0) * 1000.0

    def take(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self.size += len(chunk)
        self._hash.update(chunk)

    @property
    def body(self) -> bytes:
        if len(self.chunks) != 1:
            self.chunks = [b"".join(self.chunks)]
        return self.chunks[0]

    def decoded_body(self) -> bytes:
        """The body as the caller sees it: Content-Encoding (gzip, br, ...) undone."""
        assert self.response is not None
        if "content-encoding" not in self.response.headers:
            return self.body  # nothing to undo (the common case: no Response built for it)
        return httpx.Response(200, headers=self.response.headers, content=self.body).content

    def response_json(self, *, truncated: bool) -> dict[str, Any]:
        assert self.response is not None
        content_type = self.response.headers.get("content-type")
        return {
            "status_code": self.response.status_code,
            "http_version": self.response.extensions.get("http_version", b"HTTP/1.1").decode(
                "ascii", "replace"
            ),
            "headers": header_pairs(self.response.headers, self.redact),
            "body": {
                "sha256": self._hash.hexdigest(),
                "size": self.size,
                "content_type": content_type,
            },
            "truncated": truncated,
        }


@dataclass
class SinkLog:
    """What a sink has recorded so far: how many calls, and whether the last was an error
    (so a caller can tell whether the failure it caught is already in the ledger)."""

    calls: int = 0
    last_was_error: bool = False


@dataclass(frozen=True)
class CallSink:
    """Where an audited transport records: one recorder (the ledger), one parent, one call type."""

    recorder: CallRecorder
    state_id: str | None
    operation_id: str | None
    call_type: str = "http"
    summarise: Summariser | None = None
    ends_stream: Callable[[bytes], bool] | None = None
    recorded: SinkLog = field(default_factory=lambda: SinkLog())

    def complete(self, exchange: Exchange) -> bool:
        """Whether a body closed by the caller had all its bytes (Content-Length, or the
        protocol's end marker, e.g. SSE `data: [DONE]`, which the SDK stops reading at)."""
        assert exchange.response is not None
        length = exchange.response.headers.get("content-length")
        if length is not None and length.isdigit():
            return exchange.size == int(length)
        if self.ends_stream is None:
            return False
        try:
            return self.ends_stream(exchange.decoded_body())
        except httpx.DecodingError:
            return False

    def record(
        self, exchange: Exchange, *, failure: BaseException | None = None, truncated: bool = False
    ) -> None:
        """Record the exchange as one call: success only for a complete 2xx that summarises."""
        if exchange.recorded:
            return
        exchange.recorded = True
        latency_ms = exchange.elapsed_ms()
        payloads = request_payloads(exchange.request, exchange.request_body)
        whole, parts = payloads
        attachments = [whole, *(part for _, part in parts)]
        response = None
        error: Mapping[str, Any] | None = None
        summary: Mapping[str, Any] | None = None
        if exchange.response is not None:
            response = exchange.response_json(truncated=truncated)
            attachments.append(Payload(data=exchange.body, digest=response["body"]["sha256"]))
            status_code = exchange.response.status_code
            if not 200 <= status_code < 300:
                error = {
                    "type": "HTTPStatus",
                    "status_code": status_code,
                    "message": f"{status_code} {exchange.response.reason_phrase}".strip(),
                }
            elif self.summarise is not None and not truncated and failure is None:
                summary, error = self.summarise(exchange)
        if failure is not None:
            error = error_json(failure, exchange.redact)
        self.recorder.record_call(
            self.state_id,
            operation_id=self.operation_id,
            call_type=self.call_type,
            request=request_json(
                exchange.request, exchange.request_body, exchange.redact, payloads
            ),
            response=response,
            error=error,
            status="error" if error is not None else "success",
            latency_ms=latency_ms,
            started_at=exchange.started_at,
            summary=summary,
            attachments=attachments,
        )
        self.recorded.calls += 1
        self.recorded.last_was_error = error is not None
