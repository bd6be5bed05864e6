"""What auditing costs an HTTP call: plain httpx vs ledger.http_client vs ledger.openai.

    .venv/bin/python bench/audited_calls.py [--calls 300] [--store sqlite|memory|postgresql://...]

Every client talks to an in-process httpx.MockTransport (no network), so the figures are the
audit's own cost per call: building the request JSON, hashing, storing the bodies as
payloads and appending CallRecorded (one state, dense indices). Bodies: ~1 KiB request,
~4 KiB response. Median of 3 runs, milliseconds per call.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid

import httpx

from auditledger.adapters import Ledger
from auditledger.adapters.demo.fake_provider import FakeOpenAI

RESPONSE = {"items": [{"n": n, "text": "x" * 30} for n in range(100)]}
REQUEST = {"query": "y" * 1000}


def answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json=RESPONSE)


def open_state(ledger: Ledger) -> str:
    run_id = ledger.begin_run(config={})
    return ledger.open_state(
        run_id=run_id, token_id=uuid.uuid4().hex, node_id="bench", step_index=0
    )


def per_call_ms(make_client, calls: int) -> float:  # type: ignore[no-untyped-def]
    runs = []
    for _ in range(3):
        client = make_client()
        started = time.perf_counter()
        for n in range(calls):
            client.post(f"https://bench.local/q/{n}", json=REQUEST)
        runs.append((time.perf_counter() - started) * 1000 / calls)
        client.close()
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--store", default="sqlite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        shorthands = {"memory": "memory://", "sqlite": f"sqlite:///{directory}/ledger"}
        url = shorthands.get(args.store, args.store)
        with Ledger.open(url) as ledger:
            transport = httpx.MockTransport(answer)
            plain = per_call_ms(lambda: httpx.Client(transport=transport), args.calls)
            audited = per_call_ms(
                lambda: ledger.http_client(open_state(ledger), transport=transport), args.calls
            )
            fake = FakeOpenAI()
            llm_transport = httpx.MockTransport(fake.handle)

            def llm_calls() -> float:
                runs = []
                for _ in range(3):
                    client = ledger.openai(
                        open_state(ledger), api_key="k", base_url="https://f/v1",
                        transport=llm_transport,
                    )  # fmt: skip
                    started = time.perf_counter()
                    for _ in range(args.calls):
                        client.chat.completions.create(
                            model="m", messages=[{"role": "user", "content": "hello"}]
                        )
                    runs.append((time.perf_counter() - started) * 1000 / args.calls)
                return statistics.median(runs)

            llm = llm_calls()
    print(f"store={args.store} calls={args.calls} (median of 3, ms per call)")
    print(f"  plain httpx            {plain:7.3f}")
    print(f"  ledger.http_client     {audited:7.3f}  (+{audited - plain:.3f} audit)")
    print(f"  ledger.openai (chat)   {llm:7.3f}  (SDK + fake provider + audit)")


if __name__ == "__main__":
    main()
