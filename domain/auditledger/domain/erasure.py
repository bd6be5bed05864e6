"""Erasure: payload bytes of one subject deleted on purpose, and a retention overridden.

An erasure deletes bytes only: the events naming them, their hashes and the chain stay, so
every proof (chain, checkpoints, Merkle inclusion) still checks. The record says what
subject (a run, a token, or a token within a run), why, which digests went and how many
bytes, which digests were kept because another subject still names them, and whether the
store's minimum retention was overridden. A purge that overrides the retention is recorded
as a RetentionOverride. Both ids are uuid4: every erasure is a new fact.
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from .errors import InvalidArgument, RetentionNotReached
from .values import require_count, require_digest, require_inline, require_name

PURGE = "purge"


def require_retention(
    what: str, youngest_age: timedelta, retention: timedelta, *, overridden: bool
) -> None:
    """Refuse deleting records younger than the retention, unless overridden."""
    if youngest_age < retention and not overridden:
        raise RetentionNotReached(what, youngest_age, retention)


def _reason(reason: object) -> str:
    return require_inline("reason", reason.strip() if isinstance(reason, str) else reason)


def _seconds(age: timedelta) -> int:
    return max(0, int(age.total_seconds()))


class Erasure(Aggregate):
    TOPIC = "auditledger:Erasure:v1"
    id: UUID

    class Created(Aggregate.Created):
        """Unused: the library's default creation event, named so its topic is explicit."""

        TOPIC = "auditledger:Erasure.Created:v1"

    class ErasureRecorded(Aggregate.Created):
        TOPIC = "auditledger:Erasure.ErasureRecorded:v1"
        run_id: UUID | None
        token_id: str | None
        reason: str
        erased_digests: tuple[str, ...]
        kept_digests: tuple[str, ...]
        bytes_erased: int
        retention_days: int
        youngest_age_seconds: int
        retention_overridden: bool

    @classmethod
    def record(
        cls,
        *,
        erasure_id: UUID,
        run_id: UUID | None,
        token_id: str | None,
        reason: str,
        erased_digests: tuple[str, ...],
        kept_digests: tuple[str, ...],
        bytes_erased: int,
        retention: timedelta,
        youngest_age: timedelta,
        override_retention: bool,
    ) -> Erasure:
        if run_id is None and token_id is None:
            raise InvalidArgument("subject", None, "name a run, a token, or both")
        if token_id is not None:
            require_name("token_id", token_id)
        reason = _reason(reason)
        for digest in (*erased_digests, *kept_digests):
            require_digest("erased_digests", digest)
        require_count("bytes_erased", bytes_erased)
        require_retention(
            subject_name(run_id, token_id), youngest_age, retention, overridden=override_retention
        )
        return cls(  # type: ignore[call-arg]  # id= via the class annotation
            id=erasure_id,
            run_id=run_id,
            token_id=token_id,
            reason=reason,
            erased_digests=tuple(sorted(erased_digests)),
            kept_digests=tuple(sorted(kept_digests)),
            bytes_erased=bytes_erased,
            retention_days=retention.days,
            youngest_age_seconds=_seconds(youngest_age),
            retention_overridden=youngest_age < retention,
        )

    @event(ErasureRecorded)
    def __init__(
        self,
        *,
        run_id: UUID | None,
        token_id: str | None,
        reason: str,
        erased_digests: tuple[str, ...],
        kept_digests: tuple[str, ...],
        bytes_erased: int,
        retention_days: int,
        youngest_age_seconds: int,
        retention_overridden: bool,
    ) -> None:
        self.run_id = run_id
        self.token_id = token_id
        self.reason = reason
        self.erased_digests = tuple(erased_digests)
        self.kept_digests = tuple(kept_digests)
        self.bytes_erased = bytes_erased
        self.retention_days = retention_days
        self.youngest_age_seconds = youngest_age_seconds
        self.retention_overridden = retention_overridden


def subject_name(run_id: UUID | None, token_id: str | None) -> str:
    """'run R', 'token T', or 'token T of run R': how messages name an erasure's subject."""
    if token_id is None:
        return f"run {run_id}"
    return f"token {token_id!r}" + ("" if run_id is None else f" of run {run_id}")


class RetentionOverride(Aggregate):
    TOPIC = "auditledger:RetentionOverride:v1"
    id: UUID

    class Created(Aggregate.Created):
        """Unused: the library's default creation event, named so its topic is explicit."""

        TOPIC = "auditledger:RetentionOverride.Created:v1"

    class RetentionOverridden(Aggregate.Created):
        TOPIC = "auditledger:RetentionOverride.RetentionOverridden:v1"
        operation: str
        run_id: UUID | None
        reason: str
        retention_days: int
        youngest_age_seconds: int
        older_than_seconds: int
        payload_count: int

    @classmethod
    def record_purge(
        cls,
        *,
        override_id: UUID,
        run_id: UUID | None,
        reason: str,
        retention: timedelta,
        youngest_age: timedelta,
        older_than: timedelta,
        payload_count: int,
    ) -> RetentionOverride:
        reason = _reason(reason)
        require_count("payload_count", payload_count)
        if youngest_age >= retention:
            raise InvalidArgument(
                "override_retention", True, "nothing younger than the retention: no override"
            )
        return cls(  # type: ignore[call-arg]  # id= via the class annotation
            id=override_id,
            operation=PURGE,
            run_id=run_id,
            reason=reason,
            retention_days=retention.days,
            youngest_age_seconds=_seconds(youngest_age),
            older_than_seconds=_seconds(older_than),
            payload_count=payload_count,
        )

    @event(RetentionOverridden)
    def __init__(
        self,
        *,
        operation: str,
        run_id: UUID | None,
        reason: str,
        retention_days: int,
        youngest_age_seconds: int,
        older_than_seconds: int,
        payload_count: int,
    ) -> None:
        self.operation = operation
        self.run_id = run_id
        self.reason = reason
        self.retention_days = retention_days
        self.youngest_age_seconds = youngest_age_seconds
        self.older_than_seconds = older_than_seconds
        self.payload_count = payload_count
