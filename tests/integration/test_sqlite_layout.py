"""A SQLite store keeps its payloads in the events' file: one write, one transaction.

A directory made before that layout (payloads in payloads.sqlite3) keeps working as it was.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from eventsourcing.persistence import IntegrityError

from auditledger.adapters import Ledger
from auditledger.adapters.storage.canonical import Payload
from auditledger.adapters.writing.writer import EventWriter
from auditledger.domain.call_parent import CallFacts
from auditledger.domain.node_state import NodeState


def _tables(file: Path) -> set[str]:
    with sqlite3.connect(file) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    return names


def _payload_hashes(file: Path) -> set[str]:
    with sqlite3.connect(file) as conn:
        hashes = {row[0] for row in conn.execute("SELECT hash FROM payloads")}
    conn.close()
    return hashes


def _call(ledger: Ledger, state_id: str, request: Payload) -> NodeState:
    state = ledger.load(NodeState, state_id)
    state.record_call(CallFacts(call_type="llm", status="success", request_hash=request.digest))
    return state


def _state_and_writer(ledger: Ledger) -> tuple[str, EventWriter]:
    run_id = ledger.begin_run(config={})
    state_id = ledger.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0)
    return state_id, EventWriter(ledger.app, ledger.payloads)


def test_a_new_directory_keeps_payloads_beside_the_events(tmp_path: Path) -> None:
    directory = tmp_path / "ledger"
    with Ledger.open(f"sqlite:///{directory}") as ledger:
        run_id = ledger.begin_run(config={"layout": "one file"})
        state_id = ledger.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0)
        ledger.record_call(state_id, call_type="llm", request={"q": 1}, response={"a": 2})
        request_hash = Payload.of_json({"q": 1}, "request").digest
        assert ledger.payload(request_hash) == b'{"q":1}'

    assert not (directory / "payloads.sqlite3").exists()
    assert {"stored_events", "payloads"} <= _tables(directory / "events.sqlite3")
    assert request_hash in _payload_hashes(directory / "events.sqlite3")


def test_payloads_of_a_refused_write_are_not_kept(tmp_path: Path) -> None:
    with Ledger.open(f"sqlite:///{tmp_path / 'ledger'}") as ledger:
        state_id, writer = _state_and_writer(ledger)
        theirs, mine = Payload.of_json({"q": "theirs"}, "r"), Payload.of_json({"q": "mine"}, "r")
        first = writer.collect([_call(ledger, state_id, theirs)])
        second = writer.collect([_call(ledger, state_id, mine)])  # the same call_index
        writer.write(first, [theirs])

        with pytest.raises(IntegrityError):
            writer.write(second, [mine])

        assert ledger.payloads.status(theirs.digest) == "present"
        assert ledger.payloads.status(mine.digest) == "missing"  # rolled back with the events


def test_a_directory_from_before_keeps_its_payload_file(tmp_path: Path) -> None:
    directory = tmp_path / "ledger"
    directory.mkdir()
    sqlite3.connect(directory / "payloads.sqlite3").close()  # the earlier layout's file

    with Ledger.open(f"sqlite:///{directory}") as ledger:
        run_id = ledger.begin_run(config={"layout": "two files"})
        state_id = ledger.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0)
        ledger.record_call(state_id, call_type="llm", request={"q": 1})
        request_hash = Payload.of_json({"q": 1}, "request").digest
        assert ledger.payload(request_hash) == b'{"q":1}'
        ledger.catch_up()
        assert ledger.verify().passed

    assert "payloads" not in _tables(directory / "events.sqlite3")
    assert request_hash in _payload_hashes(directory / "payloads.sqlite3")


def test_a_payload_file_appearing_later_does_not_move_the_payloads(tmp_path: Path) -> None:
    # e.g. a writer of an earlier build opening this directory creates payloads.sqlite3
    directory = tmp_path / "ledger"
    with Ledger.open(f"sqlite:///{directory}") as ledger:
        state_id, _ = _state_and_writer(ledger)
        ledger.record_call(state_id, call_type="llm", request={"q": 1})
    sqlite3.connect(directory / "payloads.sqlite3").close()

    with Ledger.open(f"sqlite:///{directory}") as ledger:
        assert ledger.payload(Payload.of_json({"q": 1}, "request").digest) == b'{"q":1}'
        ledger.record_call(state_id, call_type="llm", request={"q": 2})

    assert Payload.of_json({"q": 2}, "r").digest in _payload_hashes(directory / "events.sqlite3")


def test_the_recorder_returns_the_notification_ids_its_events_took(tmp_path: Path) -> None:
    with Ledger.open(f"sqlite:///{tmp_path / 'ledger'}") as ledger:
        state_id, writer = _state_and_writer(ledger)
        payloads = [Payload.of_json({"q": i}, "r") for i in range(3)]
        state = ledger.load(NodeState, state_id)
        for payload in payloads:
            state.record_call(
                CallFacts(call_type="llm", status="success", request_hash=payload.digest)
            )
        stored = writer.collect([state])

        ids = ledger.app.recorder.insert_events(stored, payloads=payloads)
        assert ids is not None

        notes = ledger.app.recorder.select_notifications(start=1, limit=100)
        by_id = {n.id: (n.originator_id, n.originator_version) for n in notes}
        assert [by_id[i] for i in ids] == [(e.originator_id, e.originator_version) for e in stored]
        assert ids == list(range(ids[0], ids[0] + 3))
