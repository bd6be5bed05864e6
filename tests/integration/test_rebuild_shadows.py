"""A killed PostgreSQL rebuild's shadow schema is dropped by the next rebuild; a live
rebuild's shadow never is."""

from __future__ import annotations

import psycopg
import pytest

from auditledger.adapters import Ledger
from auditledger.projections.rebuild import SHADOW_LOCKS, SHADOW_PREFIX, drop_stale_shadows

pytestmark = pytest.mark.postgres


def shadows(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)", (SHADOW_PREFIX,)
        ).fetchall()
    return {name for (name,) in rows}


def leave_a_killed_rebuilds_shadow(url: str, name: str) -> None:
    """What a rebuild killed mid-way leaves: its schema, and no session holding its lock."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (SHADOW_LOCKS, name))
        conn.execute(f'CREATE SCHEMA "{name}"')
        conn.execute(f'CREATE TABLE "{name}".runs (run_id text)')


def recorded(ledger: Ledger, events: int) -> None:
    run_id = ledger.begin_run(config={})
    for n in range(events - 1):
        ledger.open_state(run_id=run_id, token_id=f"t{n}", node_id="n", step_index=0)


def test_a_rebuild_drops_the_shadow_a_killed_rebuild_left(postgres_url: str) -> None:
    stale = f"{SHADOW_PREFIX}4242_deadbeef"
    leave_a_killed_rebuilds_shadow(postgres_url, stale)
    with Ledger.open(postgres_url) as ledger:
        recorded(ledger, 3)
        assert ledger.rebuild().events == 3
    assert shadows(postgres_url) == set()


def test_a_live_rebuilds_shadow_is_never_dropped(postgres_url: str) -> None:
    seen: list[tuple[set[str], list[str]]] = []
    with Ledger.open(postgres_url) as ledger:
        recorded(ledger, 5)
        engine = ledger.stores.landscape_engine

        def meanwhile(_done: int, _total: int) -> None:
            if not seen:
                with engine.connect() as other:
                    seen.append((shadows(postgres_url), drop_stale_shadows(other)))

        assert ledger.rebuild(chunk_size=1, progress=meanwhile).events == 5
        assert ledger.verify().passed
    ((live, dropped),) = seen
    assert len(live) == 1
    assert dropped == []
    assert shadows(postgres_url) == set()


def test_a_shadow_held_by_another_session_survives_a_rebuild(postgres_url: str) -> None:
    held = f"{SHADOW_PREFIX}7_cafebabe"
    with psycopg.connect(postgres_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (SHADOW_LOCKS, held))
        other.execute(f'CREATE SCHEMA "{held}"')
        with Ledger.open(postgres_url) as ledger:
            recorded(ledger, 2)
            ledger.rebuild()
        assert shadows(postgres_url) == {held}
