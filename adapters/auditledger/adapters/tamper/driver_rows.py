"""Many rows written in one driver executemany: the sealer's hot path, without Core's work
per row (parameter construction and bind processing for every row and column).

Values reach the driver as given, so a caller passes each one in the form the column type's
bind processor gives it (`bound`: computed once, for a value every row shares); what is
stored is then exactly what a Core insert of the same values stores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Column, Connection, Table

from auditledger.domain.errors import StoreError

Row = tuple[object, ...]
_MARKS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def bound(conn: Connection, column: Column[Any], value: object) -> object:
    """`value` as a Core statement would hand it to this connection's driver (the dialect's
    own type's processor: the generic type's may differ, e.g. none for SQLite's DateTime)."""
    process = column.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    return value if process is None else process(value)


def insert_rows(conn: Connection, table: Table, columns: Sequence[str], rows: list[Row]) -> None:
    """INSERT rows (tuples in `columns` order, driver-ready values) in one executemany."""
    if rows:
        names = ", ".join(columns)
        marks = ", ".join([_mark(conn)] * len(columns))
        conn.exec_driver_sql(f"INSERT INTO {table.name} ({names}) VALUES ({marks})", rows)


def update_rows(
    conn: Connection, table: Table, columns: Sequence[str], keys: Sequence[str], rows: list[Row]
) -> None:
    """UPDATE rows: each tuple holds the `columns` values, then the `keys` values."""
    if rows:
        mark = _mark(conn)
        sets = ", ".join(f"{name} = {mark}" for name in columns)
        where = " AND ".join(f"{name} = {mark}" for name in keys)
        conn.exec_driver_sql(f"UPDATE {table.name} SET {sets} WHERE {where}", rows)


def _mark(conn: Connection) -> str:
    style = conn.dialect.paramstyle
    if style not in _MARKS:
        raise StoreError(
            f"sealing: the {conn.dialect.name} driver's paramstyle {style!r} is not one "
            "the sealer writes with (qmark, format, pyformat)"
        )
    return _MARKS[style]
