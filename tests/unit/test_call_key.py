"""CallKey: one caller-supplied call_id names exactly one parent, ledger-wide."""

from __future__ import annotations

from uuid import uuid4

from auditledger.domain.call_key import CallKey, call_key_id


def test_a_call_key_is_reserved_for_one_parent_under_an_id_derived_from_the_call_id() -> None:
    parent = uuid4()
    key = CallKey.reserve("req-42", parent)
    assert (key.id, key.call_id, key.parent_id) == (call_key_id("req-42"), "req-42", parent)
    assert [type(e).__name__ for e in key.pending_events] == ["CallKeyReserved"]


def test_the_same_call_id_always_derives_the_same_key_so_a_second_reservation_collides() -> None:
    first = CallKey.reserve("same", uuid4())
    second = CallKey.reserve("same", uuid4())
    assert first.id == second.id
    assert first.collect_events()[0].originator_version == 1
    assert second.collect_events()[0].originator_version == 1


def test_different_call_ids_derive_different_keys() -> None:
    assert call_key_id("a") != call_key_id("b")
    assert call_key_id("a") != call_key_id("A")


def test_replaying_a_call_keys_events_reconstructs_an_equal_key() -> None:
    key = CallKey.reserve("k", uuid4())
    (event,) = key.collect_events()
    assert event.mutate(None) == key
