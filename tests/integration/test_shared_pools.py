"""Per-state clients share one connection pool per Ledger (and per set of transport options):
closing one keeps the pool, closing the ledger closes it, a user's transport stays the user's."""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import certifi
import httpx
import pytest

from auditledger.adapters import Ledger
from auditledger.adapters.demo.fake_provider import FakeOpenAI
from auditledger.adapters.demo.provider_server import ProviderServer, serving
from auditledger.domain.errors import InvalidArgument

PROMPT = [{"role": "user", "content": "hello"}]


@pytest.fixture
def server() -> Iterator[ProviderServer]:
    with serving(FakeOpenAI()) as served:
        yield served


@pytest.fixture
def sqlite_ledger(tmp_path: object) -> Iterator[Ledger]:
    with Ledger.open(f"sqlite:///{tmp_path}/ledger") as opened:
        yield opened


def new_state(ledger: Ledger, run_id: str | None = None) -> str:
    run_id = run_id or ledger.begin_run(config={})
    return ledger.open_state(
        run_id=run_id, token_id=f"t-{ledger.log_position()}", node_id="n", step_index=0
    )


def chat(client: object) -> str:
    answer = client.chat.completions.create(model="m", messages=PROMPT)  # type: ignore[attr-defined]
    return str(answer.choices[0].message.content)


class CountingTransport(httpx.HTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.closes = 0

    def close(self) -> None:
        self.closes += 1
        super().close()


def test_per_state_clients_share_one_pool_and_its_keep_alive_connection(
    sqlite_ledger: Ledger, server: ProviderServer
) -> None:
    first = sqlite_ledger.openai(new_state(sqlite_ledger), api_key="k", base_url=server.base_url)
    second = sqlite_ledger.openai(new_state(sqlite_ledger), api_key="k", base_url=server.base_url)
    chat(first)
    chat(second)
    assert sqlite_ledger.openai_transport(first) is sqlite_ledger.openai_transport(second)
    assert server.connections == 1
    assert sqlite_ledger.clients.pools.count == 1


def test_closing_a_per_state_client_keeps_the_shared_pool_open(
    sqlite_ledger: Ledger, server: ProviderServer
) -> None:
    states = [new_state(sqlite_ledger) for _ in range(3)]
    clients = [sqlite_ledger.openai(s, api_key="k", base_url=server.base_url) for s in states]
    for client in clients:
        chat(client)
        client.close()
    http = sqlite_ledger.http_client(new_state(sqlite_ledger))
    assert http.post(f"{server.origin}/json/x", json={}).status_code == 200
    http.close()
    assert server.connections == 1, "a per-state close closed the shared pool's connection"
    for state in states:
        assert len(sqlite_ledger.recorded_calls(state)) == 1


def test_closing_the_ledger_closes_the_shared_pool(
    tmp_path: object, server: ProviderServer
) -> None:
    ledger = Ledger.open(f"sqlite:///{tmp_path}/ledger")
    client = ledger.openai(new_state(ledger), api_key="k", base_url=server.base_url)
    chat(client)
    pool = ledger.openai_transport(client)
    assert isinstance(pool, httpx.HTTPTransport)
    ledger.close()
    assert ledger.clients.pools.count == 0
    with httpx.Client(transport=pool) as after:
        after.post(f"{server.origin}/json/after", json={})
    assert server.connections == 2, "the pool's keep-alive connection outlived ledger.close()"


def test_a_transport_the_user_passes_is_never_closed_by_the_ledger(
    tmp_path: object, server: ProviderServer
) -> None:
    ledger = Ledger.open(f"sqlite:///{tmp_path}/ledger")
    mine = CountingTransport()
    client = ledger.openai(new_state(ledger), api_key="k", base_url=server.base_url, transport=mine)
    http = ledger.http_client(new_state(ledger), transport=mine)
    chat(client)
    client.close()
    http.close()
    ledger.close()
    assert mine.closes == 0
    assert ledger.openai_transport(client) is mine
    mine.close()


def test_equal_transport_options_share_a_pool_and_different_ones_do_not(
    sqlite_ledger: Ledger,
) -> None:
    limits = httpx.Limits(max_connections=7)
    a = sqlite_ledger.openai(new_state(sqlite_ledger), api_key="k", verify=False, limits=limits)
    b = sqlite_ledger.openai(
        new_state(sqlite_ledger), api_key="k", verify=False, limits=httpx.Limits(max_connections=7)
    )
    c = sqlite_ledger.openai(new_state(sqlite_ledger), api_key="k")
    assert sqlite_ledger.openai_transport(a) is sqlite_ledger.openai_transport(b)
    assert sqlite_ledger.openai_transport(a) is not sqlite_ledger.openai_transport(c)
    assert sqlite_ledger.clients.pools.count == 2


@pytest.mark.parametrize("kind", ["openai", "async_openai", "http_client", "async_http_client"])
def test_every_client_takes_the_transport_options(sqlite_ledger: Ledger, kind: str) -> None:
    options = {"verify": False, "http2": False, "retries": 1, "trust_env": False}
    options["limits"] = httpx.Limits(max_connections=5)
    extra = {"api_key": "k"} if "openai" in kind else {}
    client = getattr(sqlite_ledger, kind)(new_state(sqlite_ledger), **options, **extra)
    assert client is not None


@pytest.mark.parametrize("kind", ["openai", "async_openai", "http_client", "async_http_client"])
def test_an_unknown_option_is_refused_with_the_accepted_ones_named(
    sqlite_ledger: Ledger, kind: str
) -> None:
    with pytest.raises(InvalidArgument) as refused:
        getattr(sqlite_ledger, kind)(new_state(sqlite_ledger), verfy=False)
    assert "verfy" in str(refused.value)
    assert "'verify'" in str(refused.value) and "'limits'" in str(refused.value)


def test_transport_options_beside_a_users_transport_are_refused(sqlite_ledger: Ledger) -> None:
    with pytest.raises(InvalidArgument, match="verify"):
        sqlite_ledger.openai(
            new_state(sqlite_ledger),
            api_key="k",
            transport=httpx.MockTransport(lambda r: r),
            verify=False,
        )


def test_async_per_state_clients_share_the_loops_pool_and_survive_each_others_close(
    sqlite_ledger: Ledger, server: ProviderServer
) -> None:
    states = [new_state(sqlite_ledger) for _ in range(3)]

    async def pipeline() -> None:
        for state in states:
            client = sqlite_ledger.async_openai(state, api_key="k", base_url=server.base_url)
            await client.chat.completions.create(model="m", messages=PROMPT)
            await client.close()

    asyncio.run(pipeline())
    assert server.connections == 1
    asyncio.run(pipeline_in_a_second_loop(sqlite_ledger, server))
    assert server.connections == 2, "a second event loop must not reuse the first one's sockets"
    for state in states:
        assert len(sqlite_ledger.recorded_calls(state)) == 1


async def pipeline_in_a_second_loop(ledger: Ledger, server: ProviderServer) -> None:
    client = ledger.async_http_client(new_state(ledger))
    assert (await client.post(f"{server.origin}/json/x", json={})).status_code == 200
    await client.aclose()


def test_a_users_async_transport_is_not_closed_with_the_client(sqlite_ledger: Ledger) -> None:
    closed: list[bool] = []

    class Mine(httpx.MockTransport):
        async def aclose(self) -> None:
            closed.append(True)

    mine = Mine(lambda request: httpx.Response(200, json={}))

    async def use() -> None:
        async with sqlite_ledger.async_http_client(new_state(sqlite_ledger), transport=mine) as c:
            await c.get("https://example.invalid/x")

    asyncio.run(use())
    assert closed == []


def test_ledger_close_lets_go_of_async_pools_whose_loop_has_ended(
    tmp_path: object, server: ProviderServer
) -> None:
    ledger = Ledger.open(f"sqlite:///{tmp_path}/ledger")
    asyncio.run(pipeline_in_a_second_loop(ledger, server))
    assert ledger.clients.pools.count == 1
    ledger.close()
    assert ledger.clients.pools.count == 0


def test_ledger_close_closes_async_pools_on_their_loop_when_it_can(
    tmp_path: object, server: ProviderServer
) -> None:
    ledger = Ledger.open(f"sqlite:///{tmp_path}/ledger")
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(pipeline_in_a_second_loop(ledger, server))
        pool = loop.run_until_complete(_the_loops_pool(ledger))
        ledger.close()
        assert ledger.clients.pools.count == 0

        async def reuse() -> None:
            async with httpx.AsyncClient(transport=pool) as after:
                await after.post(f"{server.origin}/json/after", json={})

        loop.run_until_complete(reuse())
    finally:
        loop.close()
    assert server.connections == 2, "the async pool's connection outlived ledger.close()"


async def _the_loops_pool(ledger: Ledger) -> httpx.AsyncHTTPTransport:
    return ledger.clients.pools.async_pool({})


def test_an_async_client_has_its_ssl_context_built_off_the_event_loop(
    sqlite_ledger: Ledger,
    server: ProviderServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # A CA file of its own: the process's SSL contexts are kept per CA file, so this one has
    # not been built by an earlier test of the process and must be built here, once.
    ca_file = tmp_path / "ca.pem"
    shutil.copy(certifi.where(), ca_file)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    built_in: list[str] = []
    create = httpx.create_ssl_context

    def recording(**options: object) -> object:
        built_in.append(threading.current_thread().name)
        return create(**options)  # type: ignore[arg-type]

    monkeypatch.setattr(httpx, "create_ssl_context", recording)
    asyncio.run(pipeline_in_a_second_loop(sqlite_ledger, server))
    assert len(built_in) == 1
    assert built_in != [threading.main_thread().name], "the CA bundle was loaded on the loop"
    assert sqlite_ledger.clients.pools.ready({})
