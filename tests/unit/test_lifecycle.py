"""Lifecycles as data: one transition table per aggregate; statuses are StrEnums whose values
are the words stored in events and the landscape; refusals are rendered from the table."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import DatetimeAsISO, DecimalAsStr, JSONTranscoder, UUIDAsHex

from auditledger.adapters.storage.transcoder import LedgerTranscoder
from auditledger.domain import batch, lifecycle, run
from auditledger.domain.errors import InvalidTransition
from auditledger.domain.lifecycle import BATCH, NODE_STATE, RUN, BatchStatus, RunStatus, Status
from auditledger.domain.node_state import NodeState
from auditledger.domain.run import Run


def test_the_old_constants_are_the_enum_members_with_the_stored_words() -> None:
    assert (lifecycle.OPEN, lifecycle.PENDING) == (Status.OPEN, Status.PENDING)
    assert (batch.DRAFT, batch.EXECUTING, batch.BATCH_FAILED) == (
        BatchStatus.DRAFT,
        BatchStatus.EXECUTING,
        BatchStatus.FAILED,
    )
    assert {"completed", "failed", "interrupted"} == run.RUN_ENDINGS
    assert {"failed", "interrupted"} == run.RESUMABLE
    assert {"completed", "failed"} == lifecycle.TERMINAL
    assert [str(s) for s in RunStatus] == ["running", "completed", "failed", "interrupted"]


@pytest.mark.parametrize(
    ("table", "words"),
    [
        (
            NODE_STATE,
            "open -> pending/completed/failed, pending -> completed/failed; "
            "completed, failed are final",
        ),
        (
            BATCH,
            "draft -> executing/failed, executing -> completed/failed; completed, failed are final",
        ),
        (
            RUN,
            "running -> completed/failed/interrupted, failed -> running, "
            "interrupted -> running; completed is final",
        ),
    ],
)
def test_each_table_is_told_in_words_and_a_refusal_quotes_it(
    table: lifecycle.Lifecycle, words: str
) -> None:
    assert table.describe() == words
    final = next(iter(table.final))
    with pytest.raises(InvalidTransition) as raised:
        table.check("x-1", final, next(iter(table.moves)))
    assert str(raised.value).endswith(f"(allowed: {words})")
    assert f"{table.kind} x-1 is {final}: it cannot become" in str(raised.value)


def test_every_move_a_table_holds_is_allowed_and_no_other() -> None:
    for table in (NODE_STATE, BATCH, RUN):
        for status in table.moves:
            for target in table.moves:
                assert table.allows(status, target) == (target in table.moves[status])


def _library() -> JSONTranscoder:
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    return transcoder


def test_a_run_completed_with_an_enum_member_stores_the_plain_word_and_replays_to_it() -> None:
    subject = Run.start(run_id=uuid4(), config_json="{}", config_hash="c" * 64)
    subject.complete(RunStatus.INTERRUPTED)
    events = subject.collect_events()
    ended = events[-1]
    assert type(ended.status) is str and ended.status == "interrupted"  # type: ignore[attr-defined]
    ours = LedgerTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        ours.register(transcoding)
    state = dict(vars(ended))
    assert ours._flat(state) is not None  # the orjson path, not the library's fallback
    assert ours.encode(state) == _library().encode(state)
    assert b'"status":"interrupted"' in ours.encode(state)
    copy = None
    for event in events:
        copy = event.mutate(copy)
    assert copy is not None and copy.status is RunStatus.INTERRUPTED


def test_a_parent_triggers_its_own_event_classes_with_their_topics() -> None:
    state = NodeState.open(
        run_id=UUID(int=1), token_id="t", node_id="n", step_index=0, attempt=0, input_hash=None
    )
    state.mark_pending("waiting")
    state.complete(None)
    kinds = [type(e) for e in state.collect_events()]
    assert kinds[1:] == [NodeState.StatePending, NodeState.StateCompleted]
    assert NodeState.StatePending.TOPIC == "auditledger:NodeState.StatePending:v1"
    assert state.status is Status.COMPLETED
