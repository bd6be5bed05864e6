"""`auditledger fake-provider`: a fake OpenAI-compatible provider on 127.0.0.1 to develop against.

It prints its base URL (for the openai SDK's `base_url`) as the first line of stdout, serves
until Ctrl-C or SIGTERM, then closes every connection and exits 0. A port it cannot bind
is one line on stderr, exit 2.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Annotated

import typer

from auditledger.adapters.cli.common import err_console, fail
from auditledger.adapters.demo.fake_provider import BATCH_FAULTS, FakeOpenAI
from auditledger.adapters.demo.provider_server import FAIL_STATUSES, ProviderServer, Switches

DEFAULT_PORT = 8089
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def register(app: typer.Typer) -> None:
    app.command("fake-provider")(fake_provider)


def fake_provider(
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="0 picks a free port")
    ] = DEFAULT_PORT,
    latency_ms: Annotated[
        float, typer.Option("--latency-ms", min=0, help="sleep this long before each answer")
    ] = 0.0,
    fail_rate: Annotated[
        float,
        typer.Option("--fail-rate", min=0, max=1, help="fraction of requests answered in error"),
    ] = 0.0,
    fail_status: Annotated[
        int, typer.Option("--fail-status", help=f"the error status: one of {sorted(FAIL_STATUSES)}")
    ] = 500,
    seed: Annotated[int, typer.Option("--seed", help="which requests fail, repeatably")] = 0,
    batch_fault: Annotated[
        str | None,
        typer.Option(
            "--batch-fault", help=f"every batch: one of {', '.join(sorted(BATCH_FAULTS))}"
        ),
    ] = None,
    batch_polls: Annotated[
        int, typer.Option("--batch-polls", min=1, help="retrieves before a batch finishes")
    ] = 1,
) -> None:
    """Serve a fake OpenAI-compatible provider (chat, streaming, files, batches) and /json/."""
    try:
        switches = Switches(latency_ms, fail_rate, fail_status, seed, batch_fault)
        server = ProviderServer(FakeOpenAI(batch_polls=batch_polls), switches, port)
    except ValueError as error:
        raise fail(str(error)) from None
    except OSError as error:
        raise fail(f"cannot listen on 127.0.0.1:{port}: {error.strerror or error}") from None
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    server.start()
    try:
        typer.echo(server.base_url)
        err_console.print(
            f"fake provider: openai base_url {server.base_url}, plain JSON at "
            f"{server.origin}/json/...; Ctrl-C stops it",
            highlight=False,
            soft_wrap=True,
        )
        while not stop.wait(0.2):
            pass
    finally:
        server.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    err_console.print("fake provider stopped", highlight=False)
