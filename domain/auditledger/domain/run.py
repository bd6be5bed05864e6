"""Run: one execution of a pipeline, with its configuration fixed as canonical JSON.

running -> completed | failed | interrupted; failed and interrupted runs may resume;
a completed run is immutable.
"""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import Aggregate, event

from .errors import InvalidArgument, RunClosed
from .lifecycle import RUN, RunStatus
from .values import require_choice, require_digest, require_inline

RUNNING = RunStatus.RUNNING
RUN_COMPLETED = RunStatus.COMPLETED
RUN_FAILED = RunStatus.FAILED
RUN_INTERRUPTED = RunStatus.INTERRUPTED
RUN_ENDINGS = RUN.moves[RUNNING]
RESUMABLE = frozenset(status for status, targets in RUN.moves.items() if RUNNING in targets)


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

    class RunCompleted(Aggregate.Event):
        TOPIC = "auditledger:Run.RunCompleted:v1"
        status: str

    class RunResumed(Aggregate.Event):
        TOPIC = "auditledger:Run.RunResumed:v1"

    @classmethod
    def start(cls, *, run_id: UUID, config_json: str, config_hash: str) -> Run:
        if not isinstance(config_json, str):
            raise InvalidArgument("config_json", config_json, "canonical JSON text")
        require_inline("config", config_json)
        require_digest("config_hash", config_hash)
        return cls(  # type: ignore[call-arg]  # id= via the class annotation
            id=run_id, config_json=config_json, config_hash=config_hash
        )

    @event(RunStarted)
    def __init__(self, *, config_json: str, config_hash: str) -> None:
        self.config_json = config_json
        self.config_hash = config_hash
        self.status = RUNNING

    def require_running(self) -> None:
        if self.status != RUNNING:
            raise RunClosed(self.id, self.status)

    def complete(self, status: str) -> None:
        require_choice("status", status, RUN_ENDINGS)
        RUN.check(self.id, self.status, status)
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
