"""Each row rule says the same thing twice: as a CHECK's SQL and as the read check in Python."""

from __future__ import annotations

import itertools
import sqlite3

import pytest

from auditledger.projections.invariants import RULES, RowRule, broken

STATUSES = ["open", "pending", "completed", "failed", "running", "interrupted", "draft",
            "executing", "success", "error", "bogus"]  # fmt: skip
ROWS = [
    {"status": s, "completed_at": c, "error_json": e, "response_ref": r}
    for s, c, e, r in itertools.product(STATUSES, (None, "t"), (None, "{}"), (None, "ab"))
]
ALL_RULES = [rule for rules in RULES.values() for rule in rules]


@pytest.mark.parametrize("rule", ALL_RULES, ids=lambda r: r.name)
def test_the_sql_of_a_rule_and_its_python_check_agree_on_every_row(rule: RowRule) -> None:
    db = sqlite3.connect(":memory:")
    query = (
        f"SELECT CASE WHEN {rule.sql} THEN 1 ELSE 0 END FROM (SELECT :status AS status, "
        ":completed_at AS completed_at, :error_json AS error_json, :response_ref AS response_ref)"
    )
    for row in ROWS:
        assert bool(db.execute(query, row).fetchone()[0]) == rule.holds(row), (rule.name, row)


def test_a_completed_state_without_completed_at_breaks_the_completed_at_rule() -> None:
    row = {"status": "completed", "completed_at": None}
    rule = broken("node_states", row)
    assert rule is not None and rule.name == "ck_node_states_completed_at"
    assert broken("node_states", {"status": "pending", "completed_at": None}) is None
    assert broken("batch_members", {}) is None
