"""Landscape timestamps are the events' instants whatever the PostgreSQL server's time zone.

The projection writes UTC; a session in another zone would read naive UTC values as its
local time and shift every timestamp by the zone's offset.
"""

from __future__ import annotations

from datetime import UTC

import psycopg
import pytest

from auditledger.adapters import Ledger
from auditledger.domain.node_state import NodeState


@pytest.mark.postgres
def test_a_server_in_another_time_zone_keeps_the_instants(postgres_url: str) -> None:
    server, name = postgres_url.rsplit("/", 1)
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE \"{name}\" SET timezone TO 'America/New_York'")

    with Ledger.open(postgres_url) as ledger:
        run_id = ledger.begin_run(config={})
        state_id = ledger.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0)
        ledger.catch_up()
        opened_at = ledger.load(NodeState, state_id).created_on

    with psycopg.connect(postgres_url) as conn:
        row = conn.execute(
            "SELECT started_at FROM node_states WHERE state_id = %s", (state_id,)
        ).fetchone()
    assert row is not None
    assert row[0].astimezone(UTC) == opened_at.astimezone(UTC)
