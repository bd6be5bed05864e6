"""store_errors: any database failure is one StoreError line naming what and where, no password."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, text

from auditledger.adapters.storage.errors import store_errors
from auditledger.domain.errors import StoreError

URL = "postgresql://auditor:s3cret@db.example/ledger"


def test_a_sqlalchemy_error_is_one_line_naming_the_step_and_the_url_without_its_password(
    tmp_path: Path,
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/x.sqlite3")
    with (
        pytest.raises(StoreError) as caught,
        store_errors("reading payloads", URL),
        engine.connect() as conn,
    ):
        conn.execute(text("SELECT * FROM no_such_table"))
    message = str(caught.value)
    assert message == (
        "reading payloads at postgresql://auditor:***@db.example/ledger: "
        "no such table: no_such_table"
    )
    assert "s3cret" not in message and "\n" not in message


@pytest.mark.parametrize(
    "error", [sqlite3.OperationalError("database is locked"), psycopg.OperationalError("gone")]
)
def test_a_raw_driver_error_is_translated_too(error: Exception) -> None:
    with (
        pytest.raises(StoreError, match=f"^landscape at .*: {error}$"),
        store_errors("landscape", URL),
    ):
        raise error


def test_a_url_sqlalchemy_cannot_use_is_named_as_a_url() -> None:
    with (
        pytest.raises(StoreError, match=r"^landscape URL 'nope://x': "),
        store_errors("landscape", "nope://x"),
    ):
        create_engine("nope://x")


def test_errors_that_are_not_the_databases_pass_through_unchanged() -> None:
    with pytest.raises(KeyError), store_errors("landscape", URL):
        raise KeyError("ours")


def test_the_translator_does_not_load_psycopg_itself() -> None:
    import subprocess
    import sys

    probe = "import sys, auditledger.adapters.storage.errors; print('psycopg' in sys.modules)"
    shown = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert shown.stdout.strip() == "False", shown.stderr
