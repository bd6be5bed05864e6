"""A call names its attachments in its event, so the chain covers their bytes."""

from __future__ import annotations

from uuid import UUID

import pytest
from eventsourcing.persistence import StoredEvent

from auditledger.adapters import Ledger
from auditledger.adapters.storage.canonical import Payload
from auditledger.adapters.tamper.chain_format import digests_in, naming, payload_digests
from auditledger.domain.call_parent import CallFacts
from auditledger.domain.errors import InvalidArgument
from auditledger.domain.node_state import NodeState

A, B, C = "a" * 64, "b" * 64, "c" * 64


def _state() -> NodeState:
    return NodeState.open(
        run_id=UUID(int=1), token_id="t", node_id="n", step_index=0, attempt=0, input_hash=None
    )


def test_a_listed_digest_is_named_by_the_event_and_the_field_that_lists_it_is_said() -> None:
    state = (
        f'{{"call_id":"k-1","request_hash":"{A}","request_ref":"{A}",'
        f'"attachment_hashes":["{B}","{C}"],'
        f'"summary_json":"{{\\"x_hashes\\":[\\"{"d" * 64}\\"]}}"}}'
    ).encode()
    assert payload_digests(state) == {A, B, C}
    assert sorted(digests_in([state, state])) == sorted([A, A, B, C] * 2)
    assert naming(state, C) == "attachment_hashes of call k-1"
    assert naming(state, A) == "request_hash of call k-1"
    assert payload_digests(b'{"attachment_hashes":[]}') == set()


def test_a_malformed_attachment_digest_is_refused_and_no_event_is_triggered() -> None:
    state = _state()
    state.collect_events()
    with pytest.raises(InvalidArgument, match="attachment_hashes"):
        state.record_call(
            CallFacts(call_type="http", status="success", request_hash=A, attachment_hashes=("x",))
        )
    assert state.collect_events() == []
    assert state.call_count == 0


def test_the_ledger_names_each_distinct_attachment_once_in_the_order_given() -> None:
    with Ledger.open("memory://") as ledger:
        run = ledger.begin_run()
        state_id = ledger.open_state(run_id=run, token_id="t", node_id="n", step_index=0)
        body, part = Payload.of_bytes(b"body"), Payload.of_bytes(b"part")
        ledger.record_call(
            state_id, call_type="http", request={"q": 1}, attachments=[body, part, body]
        )
        (event,) = [
            e for _, e in ledger.landscape_service.source.read(0, 10) if hasattr(e, "call_id")
        ]
        assert tuple(event.attachment_hashes) == (body.digest, part.digest)


def test_a_call_event_stored_before_the_field_existed_decodes_with_no_attachments() -> None:
    with Ledger.open("memory://") as ledger:
        state = _state()
        state.record_call(CallFacts(call_type="llm", status="success", request_hash=A))
        _, recorded = state.collect_events()
        current = ledger.app.mapper.to_stored_event(recorded)
        old_state = ledger.app.mapper.transcoder.decode(current.state)
        del old_state["attachment_hashes"]
        old = StoredEvent(
            originator_id=current.originator_id,
            originator_version=current.originator_version,
            topic=current.topic,
            state=ledger.app.mapper.transcoder.encode(old_state),
        )
        decoded = ledger.app.mapper.to_domain_event(old)
        assert decoded.attachment_hashes == ()
        assert decoded.request_hash == A
