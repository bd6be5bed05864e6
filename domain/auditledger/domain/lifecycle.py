"""Statuses and the one transition table shared by node states and operations.

OPEN -> PENDING, OPEN/PENDING -> COMPLETED/FAILED. Nothing leaves COMPLETED or FAILED.
"""

from __future__ import annotations

from .errors import InvalidTransition

OPEN = "open"
PENDING = "pending"
COMPLETED = "completed"
FAILED = "failed"
TERMINAL = frozenset({COMPLETED, FAILED})

_NEXT: dict[str, frozenset[str]] = {
    OPEN: frozenset({PENDING, COMPLETED, FAILED}),
    PENDING: frozenset({COMPLETED, FAILED}),
    COMPLETED: frozenset(),
    FAILED: frozenset(),
}


def check_transition(kind: str, aggregate_id: object, status: str, target: str) -> None:
    if target not in _NEXT[status]:
        raise InvalidTransition(aggregate_id, kind, status, target)
