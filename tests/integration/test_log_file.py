"""An SQLite log deleted or replaced under an open ledger is never written into, nor
silently recreated empty beside a landscape that describes history."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from auditledger.adapters import Ledger
from auditledger.domain.errors import LogMissing, LogReplaced, StoreError


def remove_log(directory: Path) -> None:
    for file in directory.glob("events.sqlite3*"):
        file.unlink()


def test_a_write_after_the_log_was_deleted_under_an_open_ledger_is_refused(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "ledger"
    with Ledger.open(f"sqlite:///{directory}") as ledger:
        run_id = ledger.begin_run(config={})
        remove_log(directory)
        with pytest.raises(LogReplaced) as refused:
            ledger.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0)
        assert isinstance(refused.value, StoreError)
        assert str(directory / "events.sqlite3") in str(refused.value)
    assert not (directory / "events.sqlite3").exists()


def test_a_write_after_the_log_was_replaced_by_a_copy_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "ledger"
    with Ledger.open(f"sqlite:///{directory}") as ledger:
        run_id = ledger.begin_run(config={})
        log = directory / "events.sqlite3"
        shutil.copy(log, tmp_path / "copy")
        log.unlink()
        shutil.move(tmp_path / "copy", log)
        with pytest.raises(LogReplaced):
            ledger.complete_run(run_id)


def test_a_log_in_place_keeps_taking_writes(tmp_path: Path) -> None:
    with Ledger.open(f"sqlite:///{tmp_path}/ledger") as ledger:
        run_id = ledger.begin_run(config={})
        ledger.complete_run(run_id)
        ledger.catch_up()  # complete_run already caught up to the RunStarted
        assert ledger.landscape_position() == 2


def test_reopening_a_directory_whose_landscape_has_history_but_no_log_is_refused(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "ledger"
    with Ledger.open(f"sqlite:///{directory}") as ledger:
        ledger.begin_run(config={})
        assert ledger.catch_up() == 1
    remove_log(directory)
    with pytest.raises(LogMissing) as refused:
        Ledger.open(f"sqlite:///{directory}")
    assert str(directory) in str(refused.value)
    assert "events.sqlite3" in str(refused.value)
    assert not (directory / "events.sqlite3").exists()


def test_a_directory_whose_landscape_never_applied_an_event_opens_without_a_log(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "ledger"
    with Ledger.open(f"sqlite:///{directory}") as ledger:
        assert ledger.catch_up() == 0
    remove_log(directory)
    with Ledger.open(f"sqlite:///{directory}") as reopened:
        reopened.begin_run(config={})
