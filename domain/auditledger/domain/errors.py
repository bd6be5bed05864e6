"""The one error hierarchy of the ledger.

Every rule the ledger enforces has a typed error here. Each carries the ids it is about and
names the rule in its message, so a caller (or an inquiry) can tell exactly which fact was
refused and why. When one of these is raised, nothing has been written.
"""

from __future__ import annotations

from datetime import timedelta


class LedgerError(Exception):
    """Base of every error the ledger raises on purpose."""


class UnknownAggregate(LedgerError):
    kind = "aggregate"

    def __init__(self, aggregate_id: object) -> None:
        self.id = str(aggregate_id)
        super().__init__(
            f"unknown {self.kind} {self.id!r}: no {self.kind} with this id was ever recorded"
        )


class UnknownRun(UnknownAggregate):
    kind = "run"


class UnknownState(UnknownAggregate):
    kind = "node state"


class UnknownOperation(UnknownAggregate):
    kind = "operation"


class UnknownBatch(UnknownAggregate):
    kind = "batch"


class UnknownToken(UnknownAggregate):
    kind = "token"


class InvalidTransition(LedgerError):
    """A move the aggregate's lifecycle table does not hold; `allowed` is that table in words
    (lifecycle.Lifecycle renders it and raises this error)."""

    def __init__(
        self, aggregate_id: object, kind: str, status: str, target: str, allowed: str
    ) -> None:
        self.id = str(aggregate_id)
        self.status = status
        self.target = target
        self.allowed = allowed
        super().__init__(
            f"{kind} {self.id} is {status}: it cannot become {target} (allowed: {allowed})"
        )


class ParentClosed(LedgerError):
    def __init__(self, parent_id: object, kind: str, status: str) -> None:
        self.id = str(parent_id)
        self.status = status
        super().__init__(
            f"{kind} {self.id} is {status}: calls attach only to an open or pending parent"
        )


class RunClosed(LedgerError):
    def __init__(self, run_id: object, status: str) -> None:
        self.id = str(run_id)
        self.status = status
        super().__init__(
            f"run {self.id} is {status}: new states, operations and batches need a running run"
        )


class DuplicateAttempt(LedgerError):
    def __init__(
        self,
        state_id: object,
        token_id: str,
        node_id: str,
        attempt: int,
        *,
        run_id: object = None,
        status: str | None = None,
    ) -> None:
        self.id = str(state_id)
        self.token_id = token_id
        self.node_id = node_id
        self.attempt = attempt
        self.run_id = None if run_id is None else str(run_id)
        self.status = status
        where = "" if run_id is None else f" in run {self.run_id}"
        now = "" if status is None else f" and is {status}"
        super().__init__(
            f"node state {self.id} for token {token_id!r} at node {node_id!r} attempt "
            f"{attempt} already exists{where}{now}: (run, token, node, attempt) is unique "
            f"(in a run started before run-scoped state ids: (token, node, attempt)); "
            f"a retry is attempt {attempt + 1}"
        )


class RunNotSettled(LedgerError):
    """complete_run(status="completed") while states, operations or batches of the run are
    still open or pending (draft or executing for a batch)."""

    def __init__(self, run_id: object, count: int, unsettled_ids: tuple[str, ...]) -> None:
        self.id = str(run_id)
        self.count = count
        self.unsettled_ids = unsettled_ids
        shown = ", ".join(unsettled_ids[:5]) + (" ..." if count > len(unsettled_ids[:5]) else "")
        super().__init__(
            f"run {self.id} cannot complete: {count} of its states, operations or batches "
            f"are not settled ({shown}); a completed run has none open, pending, draft or "
            "executing. Settle them first, or end the run as failed or interrupted"
        )


class DuplicateMember(LedgerError):
    def __init__(self, batch_id: object, token_id: str, ordinal: int) -> None:
        self.id = str(batch_id)
        self.token_id = token_id
        self.ordinal = ordinal
        super().__init__(
            f"batch {self.id} already has token {token_id!r} as member {ordinal}: "
            "a token joins a batch once"
        )


class NotAMember(LedgerError):
    def __init__(self, batch_id: object, token_id: str, rule: str) -> None:
        self.id = str(batch_id)
        self.token_id = token_id
        super().__init__(f"token {token_id!r} is not a member of batch {self.id}: {rule}")


class RetryMembersFixed(LedgerError):
    def __init__(self, batch_id: object, retry_of_batch_id: object, token_id: str) -> None:
        self.id = str(batch_id)
        self.retry_of_batch_id = str(retry_of_batch_id)
        self.token_id = token_id
        super().__init__(
            f"batch {self.id} retries batch {self.retry_of_batch_id}: its members are the "
            f"ones given to retry_batch, so token {token_id!r} cannot join it"
        )


class DuplicateRetry(LedgerError):
    def __init__(self, batch_id: object, retry_id: object) -> None:
        self.id = str(batch_id)
        self.retry_id = str(retry_id)
        super().__init__(
            f"failed batch {self.id} is already retried as batch {self.retry_id} with other "
            f"members: a failed batch is retried once; if {self.retry_id} fails, retry it "
            "(the next attempt)"
        )


class InvalidLink(LedgerError):
    def __init__(self, batch_id: object, state_id: object, reason: str) -> None:
        self.id = str(batch_id)
        self.state_id = str(state_id)
        super().__init__(
            f"batch {self.id} cannot be linked to node state {self.state_id}: {reason}"
        )


class CallIdConflict(LedgerError):
    def __init__(self, call_id: str, parent_id: object, reason: str) -> None:
        self.id = call_id
        self.parent_id = str(parent_id)
        super().__init__(f"call id {call_id!r} on parent {self.parent_id}: {reason}")


class NotCanonical(LedgerError):
    def __init__(self, what: str, reason: str) -> None:
        self.what = what
        self.reason = reason
        super().__init__(f"{what} is not canonical JSON: {reason}")


class InvalidArgument(LedgerError):
    def __init__(self, name: str, value: object, rule: str) -> None:
        self.name = name
        self.value = value
        super().__init__(f"{name}={shown(value)} is invalid: {rule}")


SHOWN_CHARS = 200
"""How much of a value a message repeats; a longer one is cut, naming its length."""


def shown(value: object) -> str:
    """repr(value), cut to SHOWN_CHARS with an ellipsis and the length when longer."""
    text = repr(value)
    if len(text) <= SHOWN_CHARS:
        return text
    size = len(value) if isinstance(value, str) else len(text)
    return f"{text[:SHOWN_CHARS]}... ({size:,} characters)"


class ProjectionStuck(LedgerError):
    """An event the landscape cannot apply: catch-up stops before it, the log keeps it."""

    def __init__(self, position: int, topic: str, reason: str) -> None:
        self.position = position
        self.topic = topic
        self.reason = reason
        super().__init__(
            f"the landscape cannot apply the event at position {position} ({topic}): "
            f"{reason}; catch-up stops before it. The event stays in the log; to go on "
            f"without it: `auditledger catch-up --skip {position} --reason TEXT` "
            "(recorded, and listed by every verify)"
        )


class PayloadMissing(LedgerError):
    def __init__(self, ref: str, purged: bool = False) -> None:
        self.id = ref
        self.purged = purged
        state = "was purged (its hash stays in the ledger)" if purged else "is not in the store"
        super().__init__(f"payload {ref} {state}")


class PayloadErased(PayloadMissing):
    """The bytes were erased on purpose (`erase`): when, why and by which erasure."""

    def __init__(self, ref: str, erased_at: str, reason: str, erasure_id: str) -> None:
        LedgerError.__init__(
            self,
            f"payload {ref} was erased at {erased_at} (erasure {erasure_id}: {reason}); "
            "its hash stays in the ledger and every proof still checks",
        )
        self.id = ref
        self.purged = True
        self.erased_at = erased_at
        self.reason = reason
        self.erasure_id = erasure_id


class RetentionNotReached(LedgerError):
    """Bytes younger than the store's minimum retention are kept unless overridden."""

    def __init__(self, what: str, youngest_age: timedelta, retention: timedelta) -> None:
        self.id = what
        self.youngest_age = youngest_age
        self.retention = retention
        super().__init__(
            f"{what}: its youngest record is {_days(youngest_age)} old, younger than the "
            f"store's minimum retention of {_days(retention)}; nothing was deleted. Wait, or "
            "override with --override-retention --reason TEXT (override_retention=True, "
            "reason=...), which is recorded"
        )


def _days(age: timedelta) -> str:
    return f"{age.total_seconds() / 86400:.2f} days"


class PayloadCorrupt(LedgerError):
    def __init__(self, ref: str, actual: str) -> None:
        self.id = ref
        self.actual = actual
        super().__init__(f"payload {ref}: stored bytes hash to {actual}, not to the recorded hash")


class StoreError(LedgerError):
    """A store URL that cannot be used, or a store that cannot be reached."""


class LockTimeout(StoreError):
    def __init__(self, what: str, seconds: float) -> None:
        self.what = what
        self.seconds = seconds
        super().__init__(
            f"{what}: another connection held its lock past the lock timeout ({seconds:g} s); "
            "nothing was written. Retry later, or set the wait with lock_timeout=SECONDS in "
            "the store URL"
        )


class LogReplaced(StoreError):
    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(
            f"the event log {path} is no longer the file this ledger opened (deleted or "
            "replaced under it): nothing was written; a write goes only to the log that was "
            "opened. Close the ledger and restore the log"
        )


class LogMissing(StoreError):
    def __init__(self, directory: str, evidence: str) -> None:
        self.directory = directory
        self.evidence = evidence
        super().__init__(
            f"store {directory}: the event log events.sqlite3 is missing but {evidence}: a "
            "ledger with history is never reopened on an empty log. Restore events.sqlite3, "
            "or move the landscape aside to start a new ledger"
        )


class ConcurrencyExhausted(LedgerError):
    def __init__(self, aggregate_id: object, tries: int) -> None:
        self.id = str(aggregate_id)
        super().__init__(
            f"{self.id}: still conflicting after {tries} tries of optimistic concurrency"
        )


class InvalidCheckpoint(LedgerError):
    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        super().__init__(f"checkpoint {source}: {reason}")


class ReplayMismatch(LedgerError):
    def __init__(self, parent_id: object, call_index: int, differences: list[str]) -> None:
        self.id = str(parent_id)
        self.call_index = call_index
        self.differences = differences
        super().__init__(
            f"replay of {self.id} call {call_index}: the request differs from the recorded one "
            f"({', '.join(differences)}); replay serves a response only for the same request"
        )


class ReplayExhausted(LedgerError):
    def __init__(self, parent_id: object, recorded: int) -> None:
        self.id = str(parent_id)
        self.recorded = recorded
        super().__init__(
            f"replay of {self.id}: all {recorded} recorded HTTP exchanges were served; "
            "replay never goes to the network"
        )


class UnitConflict(LedgerError):
    """A unit of work could not commit: another writer changed what it touched. Retryable.

    Nothing of the unit was written; the values it returned (call indices, ordinals) are void.
    Run the whole unit again.
    """

    retryable = True

    def __init__(self, aggregate_ids: object, reason: str) -> None:
        ids = [str(i) for i in aggregate_ids] if isinstance(aggregate_ids, (list, tuple)) else []
        self.ids = ids
        shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        super().__init__(
            f"unit of work over {shown or 'no aggregates'} was not committed: {reason}; "
            "nothing of it was written, run the unit again"
        )


class UnitNesting(LedgerError):
    def __init__(self) -> None:
        super().__init__(
            "a unit of work is already open in this thread: units do not nest, "
            "record inside the open one"
        )


class UndecodableEvent(StoreError):
    def __init__(self, position: int, topic: str, reason: str) -> None:
        self.position = position
        self.topic = topic
        super().__init__(
            f"the event at position {position} ({topic}) cannot be decoded: {reason}; "
            "the log may have been altered: run `auditledger verify --chain`"
        )


class LandscapeCorrupt(LedgerError):
    """A landscape row that breaks a landscape invariant: reads refuse to serve it."""

    def __init__(self, table: str, key: str, rule: str) -> None:
        self.table = table
        self.key = key
        self.rule = rule
        super().__init__(
            f"landscape row {table} {key} breaks a landscape invariant ({rule}): it is not "
            "served. The row was changed below the ledger; the log still holds the truth: "
            "`auditledger verify` shows the difference, `auditledger rebuild` restores it"
        )
