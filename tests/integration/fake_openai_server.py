"""The fake OpenAI provider behind a real HTTP server on 127.0.0.1, for the real openai SDK.

Faults become real network behaviour: "timeout" holds the connection without answering
(bounded: it gives up after HOLD_SECONDS, or at once when the server stops), "drop" closes
the connection without a response. The server runs in a daemon thread and stops when the
`serving` context exits.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from auditledger.adapters.demo.fake_provider import FakeOpenAI

HOLD_SECONDS = 2.0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        request = httpx.Request(
            self.command,
            f"http://127.0.0.1:{self.server.server_port}{self.path}",
            headers=list(self.headers.items()),
            content=body,
        )
        try:
            response = self.server.fake.handle(request)
        except httpx.TimeoutException:
            self.server.stopping.wait(HOLD_SECONDS)
            self.close_connection = True
            return
        except httpx.TransportError:
            self.close_connection = True
            return
        data = response.read()
        self.send_response(response.status_code)
        for name, value in response.headers.multi_items():
            if name not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _serve

    def log_message(self, format: str, *args: object) -> None:
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, fake: FakeOpenAI) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake
        self.stopping = threading.Event()


@contextmanager
def serving(fake: FakeOpenAI) -> Iterator[str]:
    """Serve `fake`; yields the base_url for the openai SDK (http://127.0.0.1:PORT/v1)."""
    server = _Server(fake)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1"
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
