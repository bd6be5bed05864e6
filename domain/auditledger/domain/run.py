"""Run: one execution of a pipeline, with its configuration fixed as canonical JSON.

running -> completed | failed | interrupted; failed and interrupted runs may resume;
a completed run is immutable. A run completes only when it is settled: the caller reads
what is unsettled (`Unsettled`) and hands it to `complete`, which refuses "completed" while
anything is (`RunNotSettled`); "failed" and "interrupted" need no such facts.

`state_ids` says how the run's node-state ids are derived (node_state.state_id_for): a run
started before run-scoped ids has no such field in its RunStarted event and reads as
LEGACY_STATE_IDS, so a resumed old run still finds its states.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from .errors import InvalidArgument, RunClosed, RunNotSettled
from .lifecycle import RUN, RunStatus
from .values import require_choice, require_digest, require_inline

RUNNING = RunStatus.RUNNING
RUN_COMPLETED = RunStatus.COMPLETED
RUN_FAILED = RunStatus.FAILED
RUN_INTERRUPTED = RunStatus.INTERRUPTED
RUN_ENDINGS = RUN.moves[RUNNING]
RESUMABLE = frozenset(status for status, targets in RUN.moves.items() if RUNNING in targets)

LEGACY_STATE_IDS = 1
"""State ids uuid5(token, node, attempt): unique ledger-wide (runs started before scheme 2)."""
RUN_STATE_IDS = 2
"""State ids uuid5(run, token, node, attempt): a second run may reuse token ids."""


@dataclass(frozen=True)
class Unsettled:
    """How many states, operations and batches of a run are not settled, and up to five ids."""

    count: int = 0
    ids: tuple[str, ...] = ()


class Run(Aggregate):
    TOPIC = "auditledger:Run:v1"
    id: UUID

    class Created(Aggregate.Created):
        """Unused: the library's default creation event, named so its topic is explicit."""

        TOPIC = "auditledger:Run.Created:v1"

    class RunStarted(Aggregate.Created):
        TOPIC = "auditledger:Run.RunStarted:v1"
        config_json: str
        config_hash: str
        state_ids: int = LEGACY_STATE_IDS

    class RunCompleted(Aggregate.Event):
        TOPIC = "auditledger:Run.RunCompleted:v1"
        status: str

    class RunResumed(Aggregate.Event):
        TOPIC = "auditledger:Run.RunResumed:v1"

    @classmethod
    def start(
        cls,
        *,
        run_id: UUID,
        config_json: str,
        config_hash: str,
        state_ids: int = RUN_STATE_IDS,
    ) -> Run:
        if not isinstance(config_json, str):
            raise InvalidArgument("config_json", config_json, "canonical JSON text")
        require_inline("config", config_json)
        require_digest("config_hash", config_hash)
        if state_ids not in (LEGACY_STATE_IDS, RUN_STATE_IDS) or isinstance(state_ids, bool):
            raise InvalidArgument("state_ids", state_ids, "1 (token, node, attempt) or 2 (+ run)")
        return cls(  # type: ignore[call-arg]  # id= via the class annotation
            id=run_id, config_json=config_json, config_hash=config_hash, state_ids=state_ids
        )

    @event(RunStarted)
    def __init__(
        self, *, config_json: str, config_hash: str, state_ids: int = LEGACY_STATE_IDS
    ) -> None:
        self.config_json = config_json
        self.config_hash = config_hash
        self.state_ids = state_ids
        self.status = RUNNING

    @property
    def scoped_state_ids(self) -> bool:
        """True when this run's state ids include the run (a second run may reuse tokens)."""
        return self.state_ids == RUN_STATE_IDS

    def require_running(self) -> None:
        if self.status != RUNNING:
            raise RunClosed(self.id, self.status)

    def needs_settlement(self, status: str) -> bool:
        """Whether complete(status) needs the Unsettled facts: only a running run completing."""
        return status == RUN_COMPLETED and self.status == RUNNING

    def complete(self, status: str, unsettled: Unsettled | None = None) -> None:
        require_choice("status", status, RUN_ENDINGS)
        RUN.check(self.id, self.status, status)
        if status == RUN_COMPLETED and unsettled is not None and unsettled.count:
            raise RunNotSettled(self.id, unsettled.count, unsettled.ids)
        self._completed(status=RunStatus(status).value)  # the event holds the plain word

    @event(RunCompleted)
    def _completed(self, status: str) -> None:
        self.status = RunStatus(status)

    def resume(self) -> None:
        RUN.check(self.id, self.status, RUNNING)
        self._resumed()

    @event(RunResumed)
    def _resumed(self) -> None:
        self.status = RUNNING
