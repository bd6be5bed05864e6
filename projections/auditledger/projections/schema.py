"""Where a landscape lives: the live tables, or a shadow copy of them in another schema.

A shadow has the same tables, columns, keys and constraints as tables.py, under another
schema (PostgreSQL) or attached database (SQLite). `ensure` creates a missing landscape,
adds the nullable columns added since (tables.ADDED_COLUMNS) to an older one, and refuses one
whose tables or other columns differ from this version's: nothing is written to a schema the
code does not know.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    MetaData,
    Table,
    UniqueConstraint,
    func,
    inspect,
    select,
)
from sqlalchemy.schema import AddConstraint, CreateColumn

from auditledger.domain.errors import StoreError

from .tables import (
    ADDED_COLUMNS,
    LANDSCAPE_TABLES,
    LEGACY_CONSTRAINTS,
    projection_positions,
    projection_skips,
)

T = TypeVar("T")

TABLES = (*LANDSCAPE_TABLES, projection_positions)


@dataclass(frozen=True)
class Landscape:
    """The six landscape tables and the position table of one landscape (live or shadow).

    `landscape[table]` is this landscape's copy of a tables.py table (or of a table name)."""

    tables: dict[str, Table]
    schema: str | None = None

    @classmethod
    def live(cls) -> Landscape:
        return cls({t.name: t for t in TABLES})

    @classmethod
    def shadow(cls, schema: str) -> Landscape:
        copy = MetaData()
        return cls({t.name: t.to_metadata(copy, schema=schema) for t in TABLES}, schema)

    def __getitem__(self, table: Table | str) -> Table:
        return self.tables[table if isinstance(table, str) else table.name]

    @property
    def ordered(self) -> list[Table]:
        """Landscape tables in dependency order (create in this order, delete in reverse)."""
        return [self.tables[t.name] for t in LANDSCAPE_TABLES]

    @property
    def positions(self) -> Table:
        return self.tables[projection_positions.name]

    @property
    def skips(self) -> Table:
        """The live skips, for every landscape: a shadow rebuild skips what the live one does."""
        return projection_skips

    def create(self, conn: Connection) -> None:
        for table in self.tables.values():
            table.create(conn, checkfirst=True)


def ensure(engine: Engine, url: str) -> None:
    """Create the landscape tables if none exist; refuse a landscape of another shape.

    Serialised across processes (SQLite: the write lock; PostgreSQL: an advisory lock), as
    two concurrent CREATE TABLE IF NOT EXISTS can collide on PostgreSQL's catalog.
    """
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif conn.dialect.name == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock(SCHEMA_LOCK)))
        _ensure(conn, url)
        conn.commit()


SCHEMA_LOCK = 0x6175646974  # "audit": pg_advisory_lock key, one process creates a schema at a time


def _ensure(conn: Connection, url: str) -> None:
    existing = set(inspect(conn).get_table_names())
    ours = [t for t in TABLES if t.name in existing]
    for table in ours:
        columns = {c["name"] for c in inspect(conn).get_columns(table.name)}
        wanted = {c.name for c in table.columns}
        added = [n for n in ADDED_COLUMNS.get(table.name, ()) if n not in columns]
        if added and wanted - set(added) <= columns:
            _add_columns(conn, table, added)
            columns |= set(added)
        if not wanted <= columns:
            raise StoreError(
                f"landscape at {url}: table {table.name} lacks columns "
                f"{', '.join(sorted(wanted - columns))}; this is not a landscape schema "
                "this version knows (rebuild into a fresh landscape URL)"
            )
    if ours and len(ours) != len(TABLES):
        missing = sorted(t.name for t in TABLES if t.name not in existing)
        raise StoreError(
            f"landscape at {url}: tables {', '.join(missing)} are missing beside "
            f"{', '.join(sorted(t.name for t in ours))}; this is not a landscape schema "
            "this version knows"
        )
    Landscape.live().create(conn)
    projection_skips.create(conn, checkfirst=True)  # new in a landscape made before it
    if ours and conn.dialect.name == "postgresql":
        _replace_legacy_constraints(conn)
    elif ours and conn.dialect.name == "sqlite":
        _remake_legacy_tables(conn)


def _add_columns(conn: Connection, table: Table, names: list[str]) -> None:
    for name in names:
        column = CreateColumn(table.c[name]).compile(dialect=conn.dialect)
        conn.exec_driver_sql(f'ALTER TABLE "{table.name}" ADD COLUMN {column}')


def _replace_legacy_constraints(conn: Connection) -> None:
    """PostgreSQL: an older landscape's dropped constraints go, this version's come in."""
    for name, legacy in LEGACY_CONSTRAINTS.items():
        existing = {c["name"] for c in inspect(conn).get_unique_constraints(name)}
        if legacy not in existing:
            continue
        conn.exec_driver_sql(f'ALTER TABLE "{name}" DROP CONSTRAINT "{legacy}"')
        table = Landscape.live()[name]
        for constraint in table.constraints:
            if isinstance(constraint, UniqueConstraint) and constraint.name not in existing:
                conn.execute(AddConstraint(constraint))


def _remake_legacy_tables(conn: Connection) -> None:
    """SQLite cannot drop a constraint: an older table holding one is made anew with this
    version's definition, its rows kept, in the schema transaction (foreign keys deferred to
    its commit, which checks them all)."""
    for name, legacy in LEGACY_CONSTRAINTS.items():
        existing = {c["name"] for c in inspect(conn).get_unique_constraints(name)}
        if legacy not in existing:
            continue
        table = Landscape.live()[name]
        columns = ", ".join(f'"{c.name}"' for c in table.columns)
        conn.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
        conn.exec_driver_sql(f'CREATE TEMP TABLE "old_{name}" AS SELECT {columns} FROM "{name}"')
        conn.exec_driver_sql(f'DROP TABLE "{name}"')
        table.create(conn)
        conn.exec_driver_sql(
            f'INSERT INTO "{name}" ({columns}) SELECT {columns} FROM temp."old_{name}"'
        )
        conn.exec_driver_sql(f'DROP TABLE temp."old_{name}"')


IN_LIST = 500
"""Values per IN (...) list: well under SQLite's bound-parameter limit."""


def chunked(values: Sequence[T], size: int = IN_LIST) -> Iterator[Sequence[T]]:
    """`values` in runs of `size`, for one IN (...) query per run."""
    for start in range(0, len(values), size):
        yield values[start : start + size]
