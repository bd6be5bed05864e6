"""The sealer writes its rows through the driver (tamper/driver_rows.py): what it stores must
be, byte for byte, what a Core insert of the same values stores, on SQLite and PostgreSQL, so
that stores sealed before and after read the same."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from auditledger.adapters.storage.engines import build_engine
from auditledger.adapters.tamper.driver_rows import bound, insert_rows, update_rows
from auditledger.adapters.tamper.raw_log import CHAIN_COLUMNS
from auditledger.adapters.tamper.tables import chain, merkle_tiles, metadata

WHEN = datetime(2026, 12, 6, 21, 5, 7, 123456, tzinfo=UTC)
HASHES = bytes(range(256)) * 2


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    url = (
        f"sqlite:///{tmp_path}/events.sqlite3"
        if request.param == "sqlite"
        else str(request.getfixturevalue("postgres_url"))
    )
    built = build_engine(url)
    metadata.create_all(built)
    yield built
    built.dispose()


def stored(engine: Engine, statement: str) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(statement))]


def test_a_chain_row_written_through_the_driver_is_stored_as_a_core_insert_stores_it(
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        conn.execute(
            chain.insert(),
            [{"position": 1, "prev_position": 0, "chain_hash": "a" * 64, "sealed_at": WHEN}],
        )
        rows: list[tuple[object, ...]] = [
            (2, 1, "b" * 64, bound(conn, chain.c.sealed_at, WHEN)),
            (3, 2, "c" * 64, bound(conn, chain.c.sealed_at, WHEN)),
        ]
        insert_rows(conn, chain, CHAIN_COLUMNS, rows)
    found = stored(engine, "SELECT CAST(sealed_at AS TEXT) FROM chain ORDER BY position")
    assert found[0] == found[1] == found[2]
    with engine.connect() as conn:
        read = conn.execute(chain.select().order_by(chain.c.position)).all()
    assert {row.sealed_at.replace(tzinfo=UTC) for row in read} == {WHEN}
    assert [row.prev_position for row in read] == [0, 1, 2]


def test_a_tile_inserted_and_updated_through_the_driver_holds_the_bytes_given(
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        conn.execute(
            merkle_tiles.insert(), [{"level": 0, "tile_index": 0, "width": 1, "hashes": HASHES}]
        )
        insert_rows(
            conn, merkle_tiles, ("level", "tile_index", "width", "hashes"), [(0, 1, 1, HASHES)]
        )
        update_rows(
            conn, merkle_tiles, ("width", "hashes"), ("level", "tile_index"), [(2, HASHES, 0, 1)]
        )
    found = stored(engine, "SELECT tile_index, width, hashes FROM merkle_tiles ORDER BY tile_index")
    assert [(row[0], row[1], bytes(row[2])) for row in found] == [(0, 1, HASHES), (1, 2, HASHES)]
