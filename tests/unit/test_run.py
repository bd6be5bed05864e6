"""Run: running -> completed | failed | interrupted; only failed or interrupted resume."""

from __future__ import annotations

from uuid import uuid4

import pytest

from auditledger.domain.errors import InvalidArgument, InvalidTransition, RunClosed
from auditledger.domain.run import Run

DIGEST = "c" * 64
ENDINGS = ["completed", "failed", "interrupted"]


def started() -> Run:
    run = Run.start(run_id=uuid4(), config_json='{"a":1}', config_hash=DIGEST)
    run.collect_events()
    return run


def replayed(run: Run, events: list) -> Run:  # type: ignore[type-arg]
    copy = None
    for event in events:
        copy = event.mutate(copy)
    assert copy is not None
    return copy


def test_a_started_run_is_running_with_its_config_fixed() -> None:
    run_id = uuid4()
    run = Run.start(run_id=run_id, config_json='{"a":1}', config_hash=DIGEST)
    assert (run.id, run.status, run.config_json, run.config_hash) == (
        run_id,
        "running",
        '{"a":1}',
        DIGEST,
    )
    assert [type(e).__name__ for e in run.pending_events] == ["RunStarted"]


@pytest.mark.parametrize("config_hash", ["", "C" * 64, "c" * 63, None, 7])
def test_a_run_refuses_a_config_hash_that_is_not_a_sha256(config_hash: object) -> None:
    with pytest.raises(InvalidArgument, match="config_hash"):
        Run.start(run_id=uuid4(), config_json="{}", config_hash=config_hash)  # type: ignore[arg-type]


def test_a_run_refuses_config_that_is_not_text() -> None:
    with pytest.raises(InvalidArgument, match="config_json"):
        Run.start(run_id=uuid4(), config_json={"a": 1}, config_hash=DIGEST)  # type: ignore[arg-type]


@pytest.mark.parametrize("ending", ENDINGS)
def test_a_running_run_can_end_in_each_of_its_endings(ending: str) -> None:
    run = started()
    run.complete(ending)
    assert run.status == ending
    assert [type(e).__name__ for e in run.collect_events()] == ["RunCompleted"]


@pytest.mark.parametrize("status", ["running", "done", "", None, "COMPLETED"])
def test_a_run_refuses_an_ending_that_is_not_one_of_the_three(status: object) -> None:
    run = started()
    with pytest.raises(InvalidArgument, match="status"):
        run.complete(status)  # type: ignore[arg-type]
    assert run.pending_events == []
    assert run.status == "running"


@pytest.mark.parametrize("ending", ENDINGS)
def test_a_completed_run_is_immutable(ending: str) -> None:
    run = started()
    run.complete("completed")
    run.collect_events()
    with pytest.raises(InvalidTransition) as raised:
        run.complete(ending)
    assert str(run.id) in str(raised.value)
    assert "cannot become" in str(raised.value)
    with pytest.raises(InvalidTransition, match="running"):
        run.resume()
    assert run.pending_events == []
    assert run.status == "completed"


@pytest.mark.parametrize("ending", ["failed", "interrupted"])
def test_a_failed_or_interrupted_run_may_resume_and_end_again(ending: str) -> None:
    run = started()
    run.complete(ending)
    run.resume()
    assert run.status == "running"
    run.complete("completed")
    assert [type(e).__name__ for e in run.collect_events()] == [
        "RunCompleted",
        "RunResumed",
        "RunCompleted",
    ]


@pytest.mark.parametrize("ending", ["failed", "interrupted"])
def test_an_ended_run_cannot_end_again_without_resuming(ending: str) -> None:
    run = started()
    run.complete(ending)
    run.collect_events()
    with pytest.raises(InvalidTransition, match=str(run.id)):
        run.complete("completed")
    assert run.pending_events == []


def test_a_running_run_cannot_resume() -> None:
    run = started()
    with pytest.raises(InvalidTransition, match=str(run.id)):
        run.resume()
    assert run.pending_events == []


@pytest.mark.parametrize("ending", ENDINGS)
def test_only_a_running_run_accepts_new_work(ending: str) -> None:
    run = started()
    run.require_running()
    run.complete(ending)
    with pytest.raises(RunClosed) as raised:
        run.require_running()
    assert str(run.id) in str(raised.value)
    assert "need a running run" in str(raised.value)


def test_replaying_a_runs_events_reconstructs_an_equal_run() -> None:
    run = Run.start(run_id=uuid4(), config_json="{}", config_hash=DIGEST)
    run.complete("interrupted")
    run.resume()
    run.complete("failed")
    events = run.collect_events()
    assert replayed(run, events) == run
