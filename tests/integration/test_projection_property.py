"""For random legal histories: crash-interrupted catch-up == rebuild == a pure fold of the log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, text

from auditledger.adapters import Ledger
from auditledger.adapters.landscape.service import LogReader
from auditledger.projections.runner import Projector
from tests.support.landscape_model import (
    dump,
    histories,
    log_events,
    position,
    record,
    reference_fold,
)


class Crash(Exception):
    """A simulated crash just before a chunk's commit."""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    """A callable returning the URL of a new, empty store for each Hypothesis example."""
    if request.param == "sqlite":
        counter = iter(range(10**6))
        yield lambda: f"sqlite:///{tmp_path}/store{next(counter)}"
        return
    url = str(request.getfixturevalue("postgres_url"))
    engine = create_engine("postgresql+psycopg://" + url.split("://", 1)[1])

    def reset() -> str:
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        return url

    yield reset
    engine.dispose()


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=histories(), data=st.data())
def test_catch_up_with_crashes_equals_rebuild_equals_the_fold_of_the_log(
    fresh_store: object, steps: list[tuple[str, int, int]], data: st.DataObject
) -> None:
    with Ledger.open(fresh_store()) as ledger:  # type: ignore[operator]
        record(ledger, steps)
        engine = ledger.stores.landscape_engine
        ledger.landscape_position()  # creates the landscape tables
        events = log_events(ledger)
        last = events[-1][0]
        while position(engine) < last:
            before = position(engine)
            crash = data.draw(st.booleans(), label="crash before commit")

            def fail(_position: int, crash: bool = crash) -> None:
                if crash:
                    raise Crash

            projector = Projector(engine, LogReader(ledger.app), before_commit=fail)
            chunk = data.draw(st.integers(1, 9), label="chunk size")
            if crash:
                with pytest.raises(Crash):
                    projector.catch_up(chunk, max_chunks=1)
                assert position(engine) == before
            else:
                applied = projector.catch_up(chunk, max_chunks=1)
                assert (position(engine) > before) == (applied > 0)
        expected = reference_fold(events)
        assert dump(engine) == expected
        assert ledger.catch_up() == 0

        ledger.rebuild()
        assert dump(engine) == expected
        assert position(engine) == last

        until = data.draw(st.integers(0, last), label="until position")
        ledger.rebuild(until)
        assert dump(engine) == reference_fold(log_events(ledger, stop=until or None)[:until])
        assert position(engine) == until
        assert ledger.catch_up() == last - until
        assert dump(engine) == expected
