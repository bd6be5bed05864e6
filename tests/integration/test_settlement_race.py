"""complete_run's settlement check holds at commit (docs/events.md "Checks across aggregates").

complete_run asks the caught-up landscape whether anything of the run is unsettled and then
writes RunCompleted. Its write carries a log guard: no StateOpened, OperationStarted,
BatchCreated or BatchRetried naming the run after the position the landscape was asked at.
These tests open a child of the run exactly between the ask and the write, on every store:
the write is refused, the command asks again and refuses with RunNotSettled, and the log
never holds a completed run with a child opened after its RunCompleted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent

from auditledger.adapters import Ledger
from auditledger.adapters.writing.write_path import OPENING_RUN_CHILD, WritePath
from auditledger.domain.errors import RunNotSettled, UnitConflict
from auditledger.domain.run import Run


def after_the_ask(ledger: Ledger, other: Callable[[], object]) -> list[object]:
    """Run `other` (in another thread, to its end) right after complete_run's next ask;
    the returned list gets what it returned (or raised)."""
    service = ledger.landscape_service
    ask = service.unsettled_at
    outcome: list[object] = []

    def other_and_keep() -> None:
        try:
            outcome.append(other())
        except Exception as error:  # shown by the test's assertion
            outcome.append(error)

    def asked_then_other(run_id: str) -> tuple[int, int, tuple[str, ...]]:
        seen = ask(run_id)
        service.unsettled_at = ask  # type: ignore[method-assign]
        thread = threading.Thread(target=other_and_keep)
        thread.start()
        thread.join(30)
        return seen

    service.unsettled_at = asked_then_other  # type: ignore[method-assign]
    return outcome


def run_completed(ledger: Ledger, run_id: str) -> bool:
    return any(isinstance(e, Run.RunCompleted) for e in ledger.app.events.get(UUID(run_id)))


def _failed_batch(ledger: Ledger, run_id: str) -> str:
    batch = ledger.create_batch(run_id, "agg")
    ledger.add_batch_member(batch, "t")
    ledger.fail_batch(batch)
    return batch


OPENERS: dict[str, Callable[[Ledger, str], Callable[[], object]]] = {
    "open_state": lambda ledger, run: (
        lambda: ledger.open_state(run_id=run, token_id="t", node_id="n", step_index=0)
    ),
    "begin_operation": lambda ledger, run: (
        lambda: ledger.begin_operation(run_id=run, node_id="src", operation_type="load")
    ),
    "create_batch": lambda ledger, run: lambda: ledger.create_batch(run, "agg"),
}


@pytest.mark.parametrize("opener", sorted(OPENERS))
def test_a_child_opened_between_the_ask_and_the_write_refuses_complete_run(
    ledger: Ledger, opener: str
) -> None:
    run_id = ledger.begin_run()
    opened = after_the_ask(ledger, OPENERS[opener](ledger, run_id))
    with pytest.raises(RunNotSettled):
        ledger.complete_run(run_id)
    assert len(opened) == 1 and isinstance(opened[0], str), opened
    assert not run_completed(ledger, run_id)
    assert ledger.load(Run, run_id).status == "running"


def test_a_batch_retried_between_the_ask_and_the_write_refuses_complete_run(
    ledger: Ledger,
) -> None:
    run_id = ledger.begin_run()
    failed = _failed_batch(ledger, run_id)
    retried = after_the_ask(ledger, lambda: ledger.retry_batch(failed))
    with pytest.raises(RunNotSettled):
        ledger.complete_run(run_id)
    assert len(retried) == 1 and isinstance(retried[0], str), retried
    assert not run_completed(ledger, run_id)


def test_a_child_of_another_run_does_not_refuse_complete_run(ledger: Ledger) -> None:
    run_id, other = ledger.begin_run(), ledger.begin_run()
    opened = after_the_ask(ledger, OPENERS["open_state"](ledger, other))
    ledger.complete_run(run_id)
    assert len(opened) == 1 and isinstance(opened[0], str), opened
    assert run_completed(ledger, run_id)


def test_without_the_log_guard_the_same_interleaving_completes_a_run_with_an_open_state(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hole the guard closes: the test above fails with the guard switched off."""
    change = WritePath.change

    def unguarded(self: WritePath, *args: Any, **kwargs: Any) -> Any:
        kwargs.pop("guards", None)
        return change(self, *args, **kwargs)

    monkeypatch.setattr(WritePath, "change", unguarded)
    run_id = ledger.begin_run()
    opened = after_the_ask(ledger, OPENERS["open_state"](ledger, run_id))
    ledger.complete_run(run_id)
    assert len(opened) == 1 and isinstance(opened[0], str), opened
    assert run_completed(ledger, run_id)
    ledger.catch_up()
    assert ledger.landscape_service.unsettled(run_id)[0] == 1


def test_each_recorder_refuses_a_write_whose_log_guard_fails(ledger: Ledger) -> None:
    run_id = ledger.begin_run()
    writes, recorder = ledger.writes, ledger.app.recorder
    asked_at = ledger.log_position()
    ledger.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0)
    ledger.open_state(run_id=ledger.begin_run(), token_id="u", node_id="n", step_index=0)
    probe = StoredEvent(uuid4(), 1, "tests:Probe:v1", b"{}")
    with pytest.raises(IntegrityError):
        recorder.insert_events([probe], guards=[writes.opened_since(UUID(run_id), asked_at)])
    assert not ledger.app.has_events(probe.originator_id)
    now = ledger.log_position()
    recorder.insert_events([probe], guards=[writes.opened_since(UUID(run_id), now)])
    assert ledger.app.has_events(probe.originator_id)


def test_the_needle_is_what_the_opening_events_hold(ledger: Ledger) -> None:
    run_id = ledger.begin_run()
    ledger.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0)
    ledger.begin_operation(run_id=run_id, node_id="src", operation_type="load")
    ledger.retry_batch(_failed_batch(ledger, run_id))
    needle = ledger.writes.opened_since(UUID(run_id), 0).needle
    opened = [
        n
        for n in ledger.app.recorder.select_notifications(start=1, limit=10**6)
        if n.topic in OPENING_RUN_CHILD
    ]
    assert {n.topic for n in opened} == set(OPENING_RUN_CHILD)
    assert all(needle in n.state for n in opened)


def test_a_unit_that_opens_a_state_and_completes_its_run_is_refused_whole(ledger: Ledger) -> None:
    """The landscape cannot see the unit's own StateOpened; the log guard does."""
    run_id = ledger.begin_run()
    before = ledger.log_position()
    with pytest.raises(UnitConflict), ledger.unit_of_work():
        ledger.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0)
        ledger.complete_run(run_id)
    assert ledger.log_position() == before
    assert ledger.load(Run, run_id).status == "running"
