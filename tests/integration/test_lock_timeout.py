"""The lock timeout is honoured and configurable: `?lock_timeout=SECONDS` in the store URL.

A write or read that waits longer than it for a lock another connection holds fails with
StoreError (LockTimeout on PostgreSQL) once, not once per retry of the library's loop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from auditledger.adapters import Ledger
from auditledger.adapters.storage.settings import StoreSettings
from auditledger.domain.errors import LockTimeout, StoreError
from auditledger.domain.node_state import NodeState


@contextmanager
def events_table_locked(url: str, table: str) -> Iterator[None]:
    with psycopg.connect(url.split("?")[0]) as other:
        other.execute(f'LOCK TABLE "{table}" IN ACCESS EXCLUSIVE MODE')
        yield
        other.rollback()


def outcome_within(seconds: float, command: Callable[[], object]) -> object:
    """What the command returned or raised; a failure when it is still waiting."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(command())
        except BaseException as error:
            outcome.append(error)

    waiter = threading.Thread(target=run, daemon=True)
    waiter.start()
    waiter.join(seconds)
    assert not waiter.is_alive(), f"still waiting for the lock after {seconds} s"
    return outcome[0]


@pytest.mark.postgres
def test_a_write_behind_a_held_lock_fails_after_the_configured_timeout(postgres_url: str) -> None:
    with Ledger.open(f"{postgres_url}?lock_timeout=1") as ledger:
        run_id = ledger.begin_run(config={})
        state = ledger.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0)
        with events_table_locked(postgres_url, ledger.app.recorder.events_table_name):
            started = time.monotonic()
            refused = outcome_within(
                20, lambda: ledger.record_call(state, call_type="llm", request={})
            )
            waited = time.monotonic() - started
        assert isinstance(refused, LockTimeout), refused
        assert isinstance(refused, StoreError)
        assert "1 s" in str(refused)
        assert 1 <= waited < 4
        assert ledger.record_call(state, call_type="llm", request={}) == 0


@pytest.mark.postgres
def test_a_read_behind_a_held_lock_fails_after_the_configured_timeout(postgres_url: str) -> None:
    with Ledger.open(postgres_url) as writer:
        run_id = writer.begin_run(config={})
        state = writer.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0)
        table = writer.app.recorder.events_table_name
    with (
        Ledger.open(f"{postgres_url}?lock_timeout=1") as reader,
        events_table_locked(postgres_url, table),
    ):
        started = time.monotonic()
        refused = outcome_within(20, lambda: reader.load(NodeState, state))
        waited = time.monotonic() - started
        assert isinstance(refused, StoreError), refused
        assert waited < 4


def test_the_lock_timeout_is_an_option_of_the_store_url(tmp_path: Path) -> None:
    settings = StoreSettings.parse(f"sqlite:///{tmp_path}/ledger?lock_timeout=7")
    assert settings.directory == tmp_path / "ledger"
    assert settings.event_store_env()["SQLITE_LOCK_TIMEOUT"] == "7"
    pg = StoreSettings.parse("postgresql://postgres@127.0.0.1:5432/db?lock_timeout=2")
    assert (pg.dbname, pg.event_store_env()["POSTGRES_LOCK_TIMEOUT"]) == ("db", "2")
    assert StoreSettings.parse("postgresql://postgres@127.0.0.1/db").lock_timeout == 60


@pytest.mark.parametrize("query", ["lock_timeout=0", "lock_timeout=soon", "timeout=5"])
def test_a_bad_store_url_option_is_refused_naming_it(query: str) -> None:
    with pytest.raises(StoreError, match=query.split("=")[0]):
        StoreSettings.parse(f"postgresql://postgres@127.0.0.1/db?{query}")
