"""The landscape's MetaData: its tables and the projection position.

Table and column names are a public contract: auditors write SQL against them. Foreign keys
are real (SQLite runs with PRAGMA foreign_keys=ON), so the projection itself proves that no
call points at a state that does not exist. The row invariants of invariants.py are CHECK
constraints, so the database refuses a row that breaks one.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from .invariants import rules_of

metadata = MetaData()

ID = String(36)
DIGEST = String(64)
WHEN = DateTime(timezone=True)


def checks(table: str) -> list[CheckConstraint]:
    """The table's row invariants (invariants.py) as CHECK constraints."""
    return [CheckConstraint(rule.sql, name=rule.name) for rule in rules_of(table)]


runs = Table(
    "runs",
    metadata,
    Column("run_id", ID, primary_key=True),
    Column("status", String(16), nullable=False),
    Column("config_hash", DIGEST, nullable=False),
    Column("config_json", Text, nullable=False),
    Column("started_at", WHEN, nullable=False),
    Column("completed_at", WHEN),
    *checks("runs"),
)

node_states = Table(
    "node_states",
    metadata,
    Column("state_id", ID, primary_key=True),
    Column("run_id", ID, ForeignKey("runs.run_id"), nullable=False),
    Column("token_id", String(512), nullable=False),
    Column("node_id", String(512), nullable=False),
    Column("step_index", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("input_hash", DIGEST),
    Column("output_hash", DIGEST),
    Column("error_json", Text),
    Column("started_at", WHEN, nullable=False),
    Column("completed_at", WHEN),
    Column("duration_ms", Float),
    Column("context_hash", DIGEST),
    Column("context_json", Text),
    UniqueConstraint(
        "run_id", "token_id", "node_id", "attempt", name="uq_node_states_run_token_node_attempt"
    ),
    *checks("node_states"),
    Index("ix_node_states_run_step", "run_id", "step_index"),
)

operations = Table(
    "operations",
    metadata,
    Column("operation_id", ID, primary_key=True),
    Column("run_id", ID, ForeignKey("runs.run_id"), nullable=False),
    Column("node_id", String(512), nullable=False),
    Column("operation_type", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("input_hash", DIGEST),
    Column("output_hash", DIGEST),
    Column("error_json", Text),
    Column("started_at", WHEN, nullable=False),
    Column("completed_at", WHEN),
    Column("duration_ms", Float),
    Index("ix_operations_run", "run_id"),
    *checks("operations"),
)

calls = Table(
    "calls",
    metadata,
    Column("call_id", String(200), primary_key=True),
    Column("state_id", ID, ForeignKey("node_states.state_id")),
    Column("operation_id", ID, ForeignKey("operations.operation_id")),
    Column("call_index", Integer, nullable=False),
    Column("call_type", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("request_hash", DIGEST, nullable=False),
    Column("request_ref", String(200), nullable=False),
    Column("response_hash", DIGEST),
    Column("response_ref", String(200)),
    Column("error_json", Text),
    Column("latency_ms", Float),
    Column("created_at", WHEN, nullable=False),
    Column("started_at", WHEN),
    Column("summary_json", Text),
    CheckConstraint(
        "(state_id IS NULL AND operation_id IS NOT NULL) "
        "OR (state_id IS NOT NULL AND operation_id IS NULL)",
        name="ck_calls_exactly_one_parent",
    ),
    UniqueConstraint("state_id", "call_index", name="uq_calls_state_index"),
    UniqueConstraint("operation_id", "call_index", name="uq_calls_operation_index"),
    *checks("calls"),
)

batches = Table(
    "batches",
    metadata,
    Column("batch_id", ID, primary_key=True),
    Column("run_id", ID, ForeignKey("runs.run_id"), nullable=False),
    Column("aggregation_node_id", String(512), nullable=False),
    Column("aggregation_state_id", ID, ForeignKey("node_states.state_id")),
    Column("attempt", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("error_json", Text),
    Column("created_at", WHEN, nullable=False),
    Column("completed_at", WHEN),
    Column("retry_of_batch_id", ID, ForeignKey("batches.batch_id")),
    Column("trigger_reason", String(512)),
    Index("ix_batches_run", "run_id"),
    Index("ix_batches_state", "aggregation_state_id"),
    Index("ix_batches_retry_of", "retry_of_batch_id"),
    *checks("batches"),
)

batch_members = Table(
    "batch_members",
    metadata,
    Column("batch_id", ID, ForeignKey("batches.batch_id"), nullable=False),
    Column("token_id", String(512), nullable=False),
    Column("ordinal", Integer, nullable=False),
    PrimaryKeyConstraint("batch_id", "token_id", name="pk_batch_members"),
    UniqueConstraint("batch_id", "ordinal", name="uq_batch_members_ordinal"),
    Index("ix_batch_members_token", "token_id"),
)

projection_positions = Table(
    "projection_positions",
    metadata,
    Column("projection", String(64), primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("updated_at", WHEN, nullable=False),
)

projection_skips = Table(
    "projection_skips",
    metadata,
    Column("position", BigInteger, primary_key=True),
    Column("topic", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("skipped_at", WHEN, nullable=False),
)
"""Log positions catch-up and rebuild pass over without applying, each with why and when.

Not a landscape table: a rebuild keeps it (and keeps skipping the same positions); the
events stay in the log, and verify lists every row here."""

ADDED_COLUMNS: dict[str, tuple[str, ...]] = {
    "node_states": ("context_hash", "context_json"),
    "batches": ("trigger_reason",),
}
"""Nullable columns added after landscapes were first made: `schema.ensure` adds them to a
landscape that lacks them (old rows read NULL, as their events carry no such fact)."""

LEGACY_CONSTRAINTS: dict[str, str] = {"node_states": "uq_node_states_token_node_attempt"}
"""Constraints an older landscape has that this version dropped: node states were unique on
(token, node, attempt) before run-scoped state ids. `ensure` drops it: PostgreSQL in place,
SQLite by making the table anew with its rows."""

LANDSCAPE_TABLES = (runs, node_states, operations, calls, batches, batch_members)
"""In dependency order: create in this order, delete in reverse."""
