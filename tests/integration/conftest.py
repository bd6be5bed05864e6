"""Fixtures the OpenAI-facing tests share: the fake provider, served, and a memory ledger.

A module needing batches that take more than one poll overrides `batch_polls`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from auditledger.adapters import Ledger
from auditledger.adapters.demo.fake_provider import FakeOpenAI
from auditledger.adapters.demo.provider_server import serving


@pytest.fixture
def batch_polls() -> int:
    return 1


@pytest.fixture
def fake(batch_polls: int) -> FakeOpenAI:
    return FakeOpenAI(batch_polls=batch_polls)


@pytest.fixture
def base_url(fake: FakeOpenAI) -> Iterator[str]:
    with serving(fake) as server:
        yield server.base_url


@pytest.fixture
def memory_ledger() -> Iterator[Ledger]:
    with Ledger.open("memory://") as opened:
        yield opened
