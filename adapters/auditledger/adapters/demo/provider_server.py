"""The fake provider served over real HTTP on 127.0.0.1 (`auditledger fake-provider`, tests).

Invariants kept here:
- it listens on 127.0.0.1 and nowhere else;
- HTTP/1.1 keep-alive never stalls: every response has a Content-Length, or is chunked
  (an event stream, one chunk per event), and Nagle is off, so a client's next request on
  the same connection goes out at once;
- each connection has its own thread: `latency_ms` holds that connection only;
- `fail_rate` draws from one `Random(seed)` in arrival order, so a seed gives the same
  sequence of failures every run;
- FakeOpenAI's faults become network behaviour: "timeout" holds the connection without
  answering (until HOLD_SECONDS pass or the server closes), "drop" closes it unanswered;
- `close()` ends every open connection, so no thread outlives the server.
"""

from __future__ import annotations

import json
import random
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from auditledger.adapters.demo.fake_provider import BATCH_FAULTS, FakeOpenAI

HOST = "127.0.0.1"
HOLD_SECONDS = 2.0
FAIL_STATUSES = frozenset({429, 500, 503})
STREAM_TYPE = "text/event-stream"
UNSENT_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})


@dataclass(frozen=True)
class Switches:
    """How the server misbehaves: per-request latency, a seeded failure rate, batch faults."""

    latency_ms: float = 0.0
    fail_rate: float = 0.0
    fail_status: int = 500
    seed: int = 0
    batch_fault: str | None = None

    def __post_init__(self) -> None:
        if self.latency_ms < 0:
            raise ValueError(f"latency_ms must be >= 0, not {self.latency_ms}")
        if not 0.0 <= self.fail_rate <= 1.0:
            raise ValueError(f"fail_rate must be within [0, 1], not {self.fail_rate}")
        if self.fail_status not in FAIL_STATUSES:
            raise ValueError(f"fail_status must be one of {sorted(FAIL_STATUSES)}")
        if self.batch_fault is not None and self.batch_fault not in BATCH_FAULTS:
            raise ValueError(f"batch_fault must be one of {sorted(BATCH_FAULTS)}")


class ProviderServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # asyncio clients open dozens of connections at once
    block_on_close = False

    def __init__(self, fake: FakeOpenAI, switches: Switches | None = None, port: int = 0) -> None:
        super().__init__((HOST, port), _Handler)
        self.fake = fake
        self.switches = switches or Switches()
        self.stopping = threading.Event()
        self.connections = 0
        self._draws = random.Random(self.switches.seed)
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def origin(self) -> str:
        return f"http://{HOST}:{self.server_port}"

    @property
    def base_url(self) -> str:
        """The base_url for the openai SDK."""
        return f"{self.origin}/v1"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self.stopping.set()
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=5)
        self.server_close()
        with self._lock:
            for connection in self._open:
                _hang_up(connection)

    def opened(self, connection: socket.socket) -> None:
        with self._lock:
            self.connections += 1
            self._open.add(connection)

    def closed(self, connection: socket.socket) -> None:
        with self._lock:
            self._open.discard(connection)

    def answer(self, request: httpx.Request) -> httpx.Response:
        """The response to one request; FakeOpenAI's faults raise as its transport would."""
        if self.switches.latency_ms:
            self.stopping.wait(self.switches.latency_ms / 1000.0)
        with self._lock:
            failing = self._draws.random() < self.switches.fail_rate
        if failing:
            return provider_error(self.switches.fail_status, "fake provider: --fail-rate")
        if request.url.path.startswith("/json/"):
            return json_echo(request)
        if self.switches.batch_fault and (request.method, request.url.path) == (
            "POST",
            "/v1/batches",
        ):
            self.fake.inject(self.switches.batch_fault)
        return self.fake.handle(request)


@contextmanager
def serving(fake: FakeOpenAI, switches: Switches | None = None) -> Iterator[ProviderServer]:
    """Serve `fake` on a free port of 127.0.0.1 until the block ends."""
    server = ProviderServer(fake, switches)
    server.start()
    try:
        yield server
    finally:
        server.close()


def provider_error(status: int, message: str) -> httpx.Response:
    body = {"error": {"message": message, "type": "fake_error", "code": str(status)}}
    return httpx.Response(status, json=body, headers={"retry-after-ms": "1"})


def json_echo(request: httpx.Request) -> httpx.Response:
    """A plain JSON endpoint for non-LLM calls: the method, the path and the JSON body sent."""
    body = request.content
    try:
        sent = json.loads(body) if body else None
    except ValueError:
        return provider_error(400, "fake provider: /json/ takes a JSON body")
    return httpx.Response(
        200, json={"method": request.method, "path": request.url.path, "json": sent}
    )


def _hang_up(connection: socket.socket) -> None:
    with suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: ProviderServer

    def setup(self) -> None:
        super().setup()
        self.server.opened(self.connection)

    def finish(self) -> None:
        self.server.closed(self.connection)
        with suppress(OSError):
            super().finish()

    def _serve(self) -> None:
        request = httpx.Request(
            self.command,
            self.server.origin + self.path,
            headers=list(self.headers.items()),
            content=self._body(),
        )
        try:
            response = self.server.answer(request)
        except httpx.TimeoutException:
            self.server.stopping.wait(HOLD_SECONDS)
            self.close_connection = True
            return
        except httpx.TransportError:
            self.close_connection = True
            return
        self._send(response)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(chunks)
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, response: httpx.Response) -> None:
        data = response.read()
        streamed = response.headers.get("content-type", "").startswith(STREAM_TYPE)
        self.send_response(response.status_code)
        for name, value in response.headers.multi_items():
            if name not in UNSENT_HEADERS:
                self.send_header(name, value)
        if not streamed:
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        *events, rest = data.split(b"\n\n")
        for chunk in [event + b"\n\n" for event in events] + ([rest] if rest else []):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, format: str, *args: object) -> None:
        return None
