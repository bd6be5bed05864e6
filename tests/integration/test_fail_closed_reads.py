"""Reads that fail closed: the landscape's CHECKs refuse a broken row, and explain and export
refuse to serve one that got past them (edited below the ledger, or an older landscape)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, MetaData, create_engine, text
from sqlalchemy.exc import IntegrityError

from auditledger.adapters import Ledger
from auditledger.domain.errors import LandscapeCorrupt
from auditledger.projections.invariants import RULES
from auditledger.projections.tables import LANDSCAPE_TABLES, projection_positions


def completed_state(ledger: Ledger) -> tuple[str, str]:
    run_id = ledger.begin_run(config={})
    state = ledger.open_state(run_id=run_id, token_id="tok", node_id="n", step_index=0)
    ledger.record_call(state, call_type="llm", request={"q": 1}, error={"type": "Timeout"})
    ledger.complete_state(state, output={"ok": True})
    batch = ledger.create_batch(run_id, "agg")
    ledger.add_batch_member(batch, "tok")
    ledger.fail_batch(batch, error={"why": "test"})
    ledger.catch_up()
    return run_id, state


@contextmanager
def below_the_checks(engine: Engine, table: str, constraint: str) -> Iterator[Connection]:
    """A connection whose writes the CHECK `constraint` does not stop (raw SQL, as a person
    editing the database by hand could)."""
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA ignore_check_constraints=ON")
            try:
                yield conn
            finally:
                conn.exec_driver_sql("PRAGMA ignore_check_constraints=OFF")
        else:
            conn.execute(text(f"ALTER TABLE {table} DROP CONSTRAINT {constraint}"))
            yield conn


def test_the_database_refuses_a_completed_state_without_completed_at(ledger: Ledger) -> None:
    _, state = completed_state(ledger)
    nulled = text("UPDATE node_states SET completed_at = NULL WHERE state_id = :s")
    engine = ledger.stores.landscape_engine
    with pytest.raises(IntegrityError, match="ck_node_states_completed_at"), engine.begin() as conn:
        conn.execute(nulled, {"s": state})


def test_explain_and_export_refuse_a_completed_state_whose_completed_at_was_nulled(
    ledger: Ledger,
) -> None:
    run_id, state = completed_state(ledger)
    engine = ledger.stores.landscape_engine
    with below_the_checks(engine, "node_states", "ck_node_states_completed_at") as conn:
        conn.execute(
            text("UPDATE node_states SET completed_at = NULL WHERE state_id = :s"), {"s": state}
        )
    for read in (
        lambda: ledger.explain(state_id=state),
        lambda: ledger.explain(token_id="tok"),
        lambda: ledger.explain(run_id=run_id),
        lambda: list(ledger.export_rows(run_id)),
    ):
        with pytest.raises(LandscapeCorrupt) as refused:
            read()
        assert (refused.value.table, refused.value.key) == ("node_states", f"state_id={state}")
        assert "ck_node_states_completed_at" in refused.value.rule
        assert "completed_at is set when status is completed or failed" in str(refused.value)


TAMPERED = [
    ("runs", "ck_runs_status", "UPDATE runs SET status = 'done'", "run_id"),
    ("runs", "ck_runs_completed_at", "UPDATE runs SET completed_at = NULL", "run_id"),
    ("calls", "ck_calls_status", "UPDATE calls SET status = 'ok'", "call_id"),
    ("calls", "ck_calls_error_recorded", "UPDATE calls SET error_json = NULL", "call_id"),
    ("batches", "ck_batches_completed_at", "UPDATE batches SET completed_at = NULL", "batch_id"),
    ("node_states", "ck_node_states_status", "UPDATE node_states SET status = 'x'", "state_id"),
]


@pytest.mark.parametrize(("table", "rule", "sql", "key"), TAMPERED)
def test_every_row_rule_is_a_check_and_a_read_refusal(
    store_url: str, table: str, rule: str, sql: str, key: str
) -> None:
    with Ledger.open(store_url) as ledger:
        run_id, _ = completed_state(ledger)
        ledger.complete_run(run_id)
        ledger.catch_up()
        engine = ledger.stores.landscape_engine
        with pytest.raises(IntegrityError, match=rule), engine.begin() as conn:
            conn.execute(text(sql))
        with below_the_checks(engine, table, rule) as conn:
            conn.execute(text(sql))
        with pytest.raises(LandscapeCorrupt, match=rule) as refused:
            ledger.explain(run_id=run_id)
        assert refused.value.table == table and refused.value.key.startswith(f"{key}=")


def test_every_rule_of_invariants_is_declared_on_its_table() -> None:
    declared = {
        (t.name, c.name) for t in LANDSCAPE_TABLES for c in t.constraints if c.name is not None
    }
    wanted = {(table, rule.name) for table, rules in RULES.items() for rule in rules}
    assert wanted <= declared


def test_a_landscape_made_before_the_checks_keeps_working_and_is_still_read_closed(
    tmp_path: Path,
) -> None:
    old = MetaData()
    for table in (*LANDSCAPE_TABLES, projection_positions):
        copy = table.to_metadata(old)
        for constraint in [c for c in copy.constraints if (c.name or "").startswith("ck_")]:
            if constraint.name != "ck_calls_exactly_one_parent":
                copy.constraints.discard(constraint)
    landscape = f"sqlite:///{tmp_path}/old-landscape.sqlite3"
    made = create_engine(landscape)
    old.create_all(made)
    made.dispose()
    with Ledger.open(f"sqlite:///{tmp_path}/ledger", landscape=landscape) as ledger:
        run_id, state = completed_state(ledger)
        assert ledger.explain(state_id=state).runs[0].states[0].status == "completed"
        with ledger.stores.landscape_engine.begin() as conn:  # no CHECK stops this here
            conn.execute(text("UPDATE node_states SET completed_at = NULL"))
        with pytest.raises(LandscapeCorrupt, match="ck_node_states_completed_at"):
            ledger.explain(run_id=run_id)
