"""sqlite3's exceptions as the library's (eventsourcing.persistence), the way its SQLite
transactions translate them, for the statements our recorder runs outside one."""

from __future__ import annotations

import sqlite3

from eventsourcing.persistence import (
    DatabaseError,
    DataError,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    PersistenceError,
    ProgrammingError,
)

_TRANSLATIONS: tuple[tuple[type[sqlite3.Error], type[PersistenceError]], ...] = (
    (sqlite3.InterfaceError, InterfaceError),
    (sqlite3.DataError, DataError),
    (sqlite3.OperationalError, OperationalError),
    (sqlite3.IntegrityError, IntegrityError),
    (sqlite3.InternalError, InternalError),
    (sqlite3.ProgrammingError, ProgrammingError),
    (sqlite3.NotSupportedError, NotSupportedError),
    (sqlite3.DatabaseError, DatabaseError),
)


def translated(error: sqlite3.Error) -> PersistenceError:
    """The library's exception for a sqlite3 one (as its transactions translate them)."""
    for raw, ours in _TRANSLATIONS:
        if isinstance(error, raw):
            return ours(error)
    return PersistenceError(error)
