"""Tamper evidence: any single tampering is found at its position; untouched logs always pass.

Histories are recorded through the Ledger, sealed, checkpointed, then altered with raw SQL
the way someone with write access to the database would; the verifier reads only the tables.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from auditledger.adapters.tamper.raw_log import RawLog
from auditledger.adapters.tamper.signing import checkpoint_of
from auditledger.adapters.tamper.verifier import verify_chain
from tests.support.chain_support import RawStore, Token, record_history

TAMPERINGS = ["modified", "payload-tampered", "deleted", "inserted", "reordered", "truncated"]

tokens = st.lists(
    st.builds(
        Token,
        calls=st.lists(st.integers(0, 4), max_size=3).map(tuple),
        outcome=st.sampled_from(["completed", "failed", "open"]),
        in_batch=st.booleans(),
    ),
    min_size=1,
    max_size=4,
)


def examples(count: int) -> settings:
    return settings(
        max_examples=count,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """A function giving an empty store for each Hypothesis example."""
    if request.param == "sqlite":
        counter = itertools.count()
        yield lambda: f"sqlite:///{tmp_path}/store-{next(counter)}"
        return
    url = str(request.getfixturevalue("postgres_url"))
    server, base = url.rsplit("/", 1)
    counter = itertools.count()
    created: list[str] = []

    def fresh() -> str:
        name = f"{base}_{next(counter)}"
        with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return f"{server}/{name}"

    yield fresh
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        for name in created:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _verify(url: str, checkpoints=(), batch: int = 10_000):  # type: ignore[no-untyped-def]
    """The single walk's report, after checking segments in worker processes give the same."""
    with RawLog.open(url) as source:
        single = verify_chain(source, checkpoints, batch=batch, workers=1)
        for workers in (2, 3):
            segmented = verify_chain(
                source, checkpoints, batch=batch, workers=workers, parallel_threshold=2
            )
            assert segmented == single, f"{workers} workers: {segmented} != {single}"
        return single


@examples(30)
@given(history=tokens, seed=st.integers(0, 1000), data=st.data())
def test_a_single_tampering_is_reported_at_its_position_with_what_is_wrong(
    fresh_store: Callable[[], str], history: list[Token], seed: int, data: st.DataObject
) -> None:
    url = fresh_store()
    record_history(url, history, seed)
    with RawLog.open(url) as source:
        head = source.seal()
    checkpoint = checkpoint_of(head)
    kind = data.draw(st.sampled_from(TAMPERINGS), label="tampering")
    event(kind)
    raw = RawStore(url)
    try:
        positions = raw.positions()
        if kind == "modified":
            position = data.draw(st.sampled_from(positions), label="event")
            raw.flip_event_byte(position, data.draw(st.integers(0, 10_000), label="byte"))
        elif kind == "payload-tampered":
            digest = data.draw(st.sampled_from(raw.payload_digests()), label="payload")
            position = min(p for p, state in raw.states() if digest.encode() in state)
            raw.flip_payload_byte(digest, data.draw(st.integers(0, 10_000), label="byte"))
        elif kind == "deleted":
            position = data.draw(st.sampled_from(positions), label="event")
            raw.delete_event(position)
        elif kind == "inserted":
            position = data.draw(st.sampled_from(positions), label="event")
            raw.insert_at(position)
        elif kind == "reordered":
            first, second = sorted(
                data.draw(st.lists(st.sampled_from(positions), min_size=2, max_size=2, unique=True))
            )
            position = first
            raw.swap(first, second)
        else:
            kept = data.draw(st.integers(0, head.position - 1), label="kept")
            position = kept + 1
            raw.delete_after(kept)
    finally:
        raw.close()
    with_checkpoint = kind == "truncated" or data.draw(st.booleans(), label="checkpoint")
    batch = data.draw(st.sampled_from([1, 2, 5, 10_000]), label="read batch")
    report = _verify(url, [checkpoint] if with_checkpoint else [], batch)
    assert report.finding is not None, f"{kind} at {position} went unnoticed"
    assert (report.finding.position, report.finding.kind) == (position, kind), str(report.finding)


@examples(25)
@given(
    history=tokens, later=tokens, seed=st.integers(0, 1000), batch=st.sampled_from([1, 3, 10_000])
)
def test_an_untouched_log_always_verifies_and_an_unsealed_tail_is_only_counted(
    fresh_store: Callable[[], str], history: list[Token], later: list[Token], seed: int, batch: int
) -> None:
    url = fresh_store()
    record_history(url, history, seed)
    with RawLog.open(url) as source:
        head = source.seal()
    record_history(url, later, seed + 1, prefix="later")
    total = len(RawStore(url).positions())

    report = _verify(url, [checkpoint_of(head)], batch)

    assert report.finding is None, str(report.finding)
    assert report.events_checked == total
    assert report.sealed_position == head.position
    assert report.unsealed == total - head.position
    assert report.checkpoints_checked == 1
