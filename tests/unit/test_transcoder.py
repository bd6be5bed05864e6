"""The Ledger's transcoder writes the library's JSON byte for byte, and reads it back.

Events already in a log were written by eventsourcing's JSONTranscoder; the hash chain and
the write-retry check compare stored bytes, so the faster encoder must not change a byte.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.persistence import DatetimeAsISO, DecimalAsStr, JSONTranscoder, UUIDAsHex
from hypothesis import given
from hypothesis import strategies as st

from auditledger.adapters.storage.transcoder import LedgerTranscoder


def _library() -> JSONTranscoder:
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    return transcoder


def _ours() -> LedgerTranscoder:
    transcoder = LedgerTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    return transcoder


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(),
    st.uuids(),
    st.datetimes(timezones=st.just(UTC)),
    st.decimals(allow_nan=False, allow_infinity=False),
)
states = st.dictionaries(
    st.text(),
    st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
        ),
        max_leaves=12,
    ),
    max_size=12,
)


flat_states = st.dictionaries(
    st.text(),
    st.one_of(
        scalars,
        st.floats(),  # NaN, infinities, subnormals, tiny and huge: orjson spells some apart
        st.integers(min_value=-(2**70), max_value=2**70),  # orjson stops at 64 bits
        st.datetimes(timezones=st.none() | st.timezones()),
        st.lists(st.text(), max_size=4).map(tuple),  # a call's attachment_hashes
    ),
    max_size=16,
)


@given(flat_states)
def test_the_same_bytes_as_the_library_for_any_flat_event_state(state: dict[str, Any]) -> None:
    assert _ours().encode(state) == _library().encode(state)


def test_the_events_a_state_records_take_the_fast_path_and_keep_the_library_bytes() -> None:
    from auditledger.domain.call_parent import CallFacts
    from auditledger.domain.node_state import NodeState

    state = NodeState.open(
        run_id=UUID(int=7), token_id="t", node_id="n", step_index=0, attempt=0, input_hash=None
    )
    digest = "a" * 64
    state.record_call(
        CallFacts(call_type="llm", status="success", request_hash=digest, latency_ms=12.5)
    )
    state.record_call(
        CallFacts(
            call_type="http", status="success", request_hash=digest, attachment_hashes=(digest,)
        )
    )
    state.complete(None)
    ours = _ours()
    for event in state.collect_events():
        event_state = dict(vars(event))
        assert ours._flat(event_state) is not None, type(event).__name__
        assert ours.encode(event_state) == _library().encode(event_state)


@given(states)
def test_the_same_bytes_as_the_library_for_any_event_state(state: dict[str, Any]) -> None:
    ours = _ours().encode(state)
    assert ours == _library().encode(state)
    assert _ours().decode(ours) == _library().decode(ours)


def test_an_event_state_round_trips() -> None:
    state = {
        "originator_topic": "auditledger:NodeState:v1",
        "run_id": UUID("12345678-1234-5678-1234-567812345678"),
        "timestamp": datetime(2026, 11, 23, 15, 0, tzinfo=timezone(timedelta(hours=1))),
        "latency_ms": 12.5,
        "note": 'naïve \u2028 \x00 "quoted"',
        "amount": Decimal("1.10"),
        "call_index": 3,
        "response_hash": None,
    }
    assert _ours().decode(_ours().encode(state)) == state
