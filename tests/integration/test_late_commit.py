"""PostgreSQL: a writer that holds its transaction open while others try to commit.

The notification log must stay in commit order: the projection reading it never passes an
event that commits later under a lower id. Here writer A inserts its events through the
recorder's own insert path and keeps its transaction open; writers B try to record meanwhile
(they wait: the insert path locks the events table until commit). A projection catch-up in
the middle sees nothing new; after A commits, it sees every event of A and B exactly once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from sqlalchemy import func, select

from auditledger.adapters import Ledger
from auditledger.domain.node_state import NodeState
from auditledger.projections.tables import calls, node_states

WRITERS = 3

pytestmark = pytest.mark.postgres


def waiting_on_events_table(ledger: Ledger) -> int:
    with ledger.app.recorder.datastore.transaction(commit=False) as curs:
        curs.execute(
            "SELECT count(*) AS n FROM pg_locks "
            "WHERE NOT granted AND relation = 'auditledger_events'::regclass"
        )
        row = curs.fetchone()
    assert row is not None
    return int(row["n"])


def eventually(condition: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the writers neither waited nor finished"
        time.sleep(0.02)


def count(ledger: Ledger, table: object) -> int:
    with ledger.stores.landscape_engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(table)) or 0)  # type: ignore[arg-type]


def test_the_projection_never_skips_an_event_that_commits_late(postgres_url: str) -> None:
    with Ledger.open(postgres_url) as ledger, Ledger.open(postgres_url) as others:
        run_id = ledger.begin_run(config={})
        states = [
            ledger.open_state(run_id=run_id, token_id=f"b{i}", node_id="n", step_index=0)
            for i in range(WRITERS)
        ]
        ledger.catch_up()
        slow = NodeState.open(
            run_id=ledger.load(NodeState, states[0]).run_id,
            token_id="slow",
            node_id="n",
            step_index=0,
            attempt=0,
            input_hash=None,
        )
        recorder = ledger.app.recorder
        stored = ledger.writes.writer.collect([slow])
        errors: list[BaseException] = []

        def write(i: int) -> None:
            try:
                others.record_call(states[i], call_type="llm", request={"b": i})
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=write, args=(i,)) for i in range(WRITERS)]
        with recorder.datastore.transaction(commit=True) as curs:
            recorder._insert_stored_events(curs, stored)
            for thread in threads:
                thread.start()
            eventually(
                lambda: (
                    waiting_on_events_table(ledger) == WRITERS
                    or not any(t.is_alive() for t in threads)
                )
            )
            early = ledger.catch_up()
        for thread in threads:
            thread.join()
        assert errors == []

        late = ledger.catch_up()
        assert early + late == len(stored) + WRITERS
        assert ledger.catch_up() == 0
        assert count(ledger, node_states) == WRITERS + 1
        assert ledger.load(NodeState, str(slow.id)).token_id == "slow"
        assert count(ledger, calls) == WRITERS
        notes = recorder.select_notifications(start=1, limit=1000)
        ids = [n.id for n in notes]
        assert ids == sorted(set(ids))
        assert ledger.landscape_position() == ids[-1]
        assert ledger.verify().passed
