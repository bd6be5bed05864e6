"""A failing store surfaces as StoreError (a LedgerError) from every public method.

Never a raw eventsourcing, SQLAlchemy, sqlite3 or psycopg error: a caller catches one type.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from auditledger.adapters import Ledger
from auditledger.domain.errors import StoreError


@pytest.mark.parametrize("file", ["events.sqlite3", "payloads.sqlite3"])
def test_an_sqlite_directory_holding_a_file_that_is_not_a_database_is_a_store_error(
    tmp_path: Path, file: str
) -> None:
    (tmp_path / "ledger").mkdir()
    (tmp_path / "ledger" / file).write_bytes(b"this is not an SQLite database" * 200)
    with pytest.raises(StoreError, match="not a database"):
        Ledger.open(f"sqlite:///{tmp_path}/ledger")


@pytest.mark.slow
@pytest.mark.postgres
def test_a_postgresql_database_dropped_under_an_open_ledger_is_a_store_error(
    postgres_url: str,
) -> None:
    server, name = postgres_url.rsplit("/", 1)
    with Ledger.open(postgres_url) as ledger:
        run_id = ledger.begin_run(config={"before": "the drop"})
        state_id = ledger.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0)
        ref = ledger.store_bytes(b"kept before the drop")
        with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')

        # each refusal takes the library's connection retries (about a minute): keep it to two
        for command in (
            lambda: ledger.record_call(state_id, call_type="llm", request={"after": "drop"}),
            lambda: ledger.payload(ref),
        ):
            with pytest.raises(StoreError):
                command()
