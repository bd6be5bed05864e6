"""An event whose stored bytes no longer decode is reported as one clear line, never a traceback."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from auditledger.adapters import Ledger
from auditledger.domain.errors import UndecodableEvent
from tests.support.cli_runner import run_cli


def _record_and_break(directory: Path) -> None:
    with Ledger.open(f"sqlite:///{directory}") as ledger:
        run_id = ledger.begin_run(config={"p": 1})
        state_id = ledger.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0)
        ledger.record_call(state_id, call_type="llm", request={"q": 1}, response={"a": 2})
    with sqlite3.connect(directory / "events.sqlite3") as conn:
        conn.execute(
            "UPDATE stored_events SET state = CAST('{not json' AS BLOB) "
            "WHERE topic = 'auditledger:NodeState.CallRecorded:v1'"
        )


def test_catch_up_over_an_undecodable_event_names_its_position(tmp_path: Path) -> None:
    _record_and_break(tmp_path / "ledger")
    with Ledger.open(f"sqlite:///{tmp_path / 'ledger'}") as ledger:
        try:
            ledger.catch_up()
        except UndecodableEvent as error:
            assert error.position == 3
            assert "CallRecorded" in str(error)
        else:
            raise AssertionError("catch_up projected an event that does not decode")


def test_verify_on_an_undecodable_event_is_a_finding_naming_its_position(tmp_path: Path) -> None:
    _record_and_break(tmp_path / "ledger")
    done = run_cli("verify", "--catch-up", "--store", f"sqlite:///{tmp_path / 'ledger'}")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "position 3" in done.stderr
    assert "verify --chain" in done.stderr
    assert "the events after the position can be projected" in done.stdout
    assert "FAIL" in done.stdout
