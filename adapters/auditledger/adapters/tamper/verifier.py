"""The independent verifier: recompute the chain from the raw tables and find the first break.

It walks the event log and the chain side by side, in log order, from the start (or from a
trusted checkpoint), and stops at the first broken position, saying what is wrong there:
- modified: the event's bytes no longer give the chain hash sealed for it;
- deleted: a sealed event is gone (its chain entry stays, or the next entry names it);
- inserted: an event sits where none was sealed, or pushed the sealed one further down;
- reordered: the event sealed here is found at another position;
- chain-modified: the event is intact but its chain entry was altered;
- truncated / rewritten: the log ends before, or differs at, a checkpoint kept elsewhere;
- payload-tampered / payload-missing: bytes an event names do not hash to the digest, or
  are gone without a purge or an erasure. Purged and erased payloads (bytes deleted on
  purpose, hash kept) are counted apart, never failed.
Events after the last chain entry are the unsealed tail: counted and recomputed (so a
checkpoint over them still checks), never failed for being unsealed.

A long sealed log is cut into segments, each a whole number of read batches, walked at once
in forked worker processes: each segment starts from the chain hash stored at the position
before its first event, and the segment before must end on exactly that hash. When every
segment is clean and they join up, their counts add up to the single walk's. Otherwise the
single walk resumes at the start of the first segment that is not clean (everything before
it verified and joined), so a finding is always the one the single walk gives, word for word.
"""

from __future__ import annotations

import multiprocessing
import os
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from auditledger.adapters.tamper.chain_format import (
    GENESIS,
    ChainReport,
    Checkpoint,
    Finding,
    digests_in,
    link,
    naming,
    payload_digests,
)
from auditledger.adapters.tamper.raw_log import ChainEntry, RawEvent, RawLog, no_cyclic_gc
from auditledger.domain.payload_status import SOUND, PayloadCheck, PayloadStatus, Removal, check

SignatureCheck = Callable[[Checkpoint], bool]

PARALLEL_THRESHOLD = 40_000
"""Sealed events below which one process walks the log (forking costs more than it saves)."""


class _Broken(Exception):
    def __init__(self, finding: Finding) -> None:
        self.finding = finding


@dataclass
class _Walk:
    source: RawLog
    checkpoints: list[Checkpoint]
    prev_hash: bytes
    prev_position: int
    events_checked: int = 0
    sealed_position: int = 0
    unsealed: int = 0
    payloads_checked: int = 0
    payloads_purged: int = 0
    payloads_erased: int = 0
    checkpoints_checked: int = 0

    def report(self, finding: Finding | None) -> ChainReport:
        return ChainReport(
            events_checked=self.events_checked,
            head_position=self.prev_position,
            head_hash=self.prev_hash.hex(),
            sealed_position=self.sealed_position,
            unsealed=self.unsealed,
            payloads_checked=self.payloads_checked,
            payloads_purged=self.payloads_purged,
            checkpoints_checked=self.checkpoints_checked,
            finding=finding,
            payloads_erased=self.payloads_erased,
        )

    # the walk

    def run(self, batch: int, until: int | None) -> None:
        entries = _Peekable(self.source.chain_entries(self.prev_position, batch))
        for events, wanted, rows in self._read_batches(batch, until):
            statuses = _payload_checks(wanted, rows)
            start = self._fast(events, wanted, statuses, entries)
            seen: set[str] = set()
            rest = events[start:]
            named = [payload_digests(event.state) for event in rest]
            for event, digests in zip(rest, named, strict=True):
                entry = entries.peek()
                if entry is not None and entry.position < event.position:
                    raise _Broken(self._gone(entry))
                if entry is None:
                    self._extend(event, None)
                    self.unsealed += 1
                elif entry.position == event.position:
                    self._extend(event, entry)
                    entries.pop()
                else:
                    raise _Broken(self._unsealed_event(event, entry))
                if digests:
                    self._check_payloads(event, digests, statuses, rows, seen)
                self._check_checkpoints(event.position)
        entry = entries.peek()
        if entry is not None and (until is None or entry.position <= until):
            raise _Broken(self._gone(entry))
        self._check_truncation()

    def _fast(
        self,
        events: list[RawEvent],
        wanted: list[str],
        statuses: dict[str, PayloadCheck],
        entries: _Peekable,
    ) -> int:
        """The common case in one tight loop: every event sealed, in place, payloads sound.

        Returns how many events of the batch it accepted; the careful walk takes the rest.
        """
        last = events[-1].position
        if self.checkpoints and self.checkpoints[0].position <= last:
            return 0
        if any(found.status not in SOUND for found in statuses.values()):
            return 0
        sealed = entries.take_through(last)
        if len(sealed) != len(events):
            entries.put_back(sealed)
            return 0
        prev, prev_position = self.prev_hash, self.prev_position
        accepted = 0
        for event, entry in zip(events, sealed, strict=True):
            if entry.position != event.position or entry.prev_position != prev_position:
                break
            computed = link(
                prev, event.position, event.topic, event.originator, event.version, event.state
            )
            if computed.hex() != entry.chain_hash:
                break
            prev, prev_position = computed, event.position
            accepted += 1
        entries.put_back(sealed[accepted:])
        if accepted:
            self.prev_hash, self.prev_position = prev, prev_position
            self.sealed_position = prev_position
            self.events_checked += accepted
            accepted_digests = (
                set(wanted)
                if accepted == len(events)
                else set(digests_in(event.state for event in events[:accepted]))
            )
            self.payloads_checked += len(accepted_digests)
            self.payloads_purged += sum(
                statuses[d].status is PayloadStatus.PURGED for d in accepted_digests
            )
            self.payloads_erased += sum(
                statuses[d].status is PayloadStatus.ERASED for d in accepted_digests
            )
        return accepted

    def _extend(self, event: RawEvent, entry: ChainEntry | None) -> None:
        computed = _link(self.prev_hash, event)
        if entry is not None:
            if entry.prev_position != self.prev_position:
                raise _Broken(self._skipped(entry))
            if computed.hex() != entry.chain_hash:
                raise _Broken(self._mismatch(event, entry, computed))
            self.sealed_position = event.position
        self.prev_hash, self.prev_position = computed, event.position
        self.events_checked += 1

    # payloads

    def _read_batches(self, batch: int, until: int | None) -> Iterator[_Batch]:
        """The I/O of the walk (events, the digests they name, those payloads' rows)."""
        for events in self.source.events(self.prev_position, until, batch=batch):
            wanted = list(dict.fromkeys(digests_in(event.state for event in events)))
            yield events, wanted, self.source.payload_rows(wanted)

    def _check_payloads(
        self,
        event: RawEvent,
        digests: set[str],
        statuses: dict[str, PayloadCheck],
        rows: _Rows,
        seen: set[str],
    ) -> None:
        for digest in sorted(digests):
            if digest in seen:
                continue
            status, actual = statuses[digest]
            if status is PayloadStatus.CORRUPT:
                raise _Broken(
                    Finding(
                        event.position,
                        "payload-tampered",
                        f"payload {digest} named by this event ({naming(event.state, digest)}): "
                        f"its bytes hash to {actual}",
                    )
                )
            if status is PayloadStatus.MISSING:
                how = "lost its bytes without a purge" if digest in rows else "has no row"
                raise _Broken(
                    Finding(
                        event.position,
                        "payload-missing",
                        f"payload {digest} named by this event ({naming(event.state, digest)}) "
                        f"{how}",
                    )
                )
            self.payloads_checked += 1
            if status is PayloadStatus.PURGED:
                self.payloads_purged += 1
            if status is PayloadStatus.ERASED:
                self.payloads_erased += 1
            seen.add(digest)

    # checkpoints

    def _check_checkpoints(self, position: int) -> None:
        while self.checkpoints and self.checkpoints[0].position <= position:
            checkpoint = self.checkpoints.pop(0)
            if checkpoint.position < position:
                raise _Broken(
                    Finding(
                        checkpoint.position,
                        "deleted",
                        f"checkpoint {checkpoint.timestamp} names position "
                        f"{checkpoint.position}, which holds no event now",
                    )
                )
            if checkpoint.chain_hash != self.prev_hash.hex():
                raise _Broken(
                    Finding(
                        position,
                        "rewritten",
                        f"checkpoint {checkpoint.timestamp} recorded chain hash "
                        f"{checkpoint.chain_hash} here; the log now gives "
                        f"{self.prev_hash.hex()} (history up to here was rewritten and "
                        "re-chained)",
                    )
                )
            self.checkpoints_checked += 1

    def _check_truncation(self) -> None:
        if self.checkpoints:
            checkpoint = self.checkpoints[0]
            raise _Broken(
                Finding(
                    self.prev_position + 1,
                    "truncated",
                    f"the log ends at position {self.prev_position}, but checkpoint "
                    f"{checkpoint.timestamp} saw it reach {checkpoint.position}",
                )
            )

    # classifying a break

    def _gone(self, entry: ChainEntry) -> Finding:
        return Finding(
            entry.position, "deleted", "an event was sealed here and is no longer in the log"
        )

    def _skipped(self, entry: ChainEntry) -> Finding:
        if entry.prev_position > self.prev_position:
            return Finding(
                entry.prev_position,
                "deleted",
                f"the chain entry at {entry.position} follows position "
                f"{entry.prev_position}; that event and its chain entry are gone",
            )
        return Finding(
            entry.position,
            "chain-modified",
            f"the chain entry says it follows {entry.prev_position}, the log says "
            f"{self.prev_position}",
        )

    def _unsealed_event(self, event: RawEvent, entry: ChainEntry) -> Finding:
        if entry.prev_position == event.position:
            return Finding(
                event.position,
                "chain-modified",
                "the event is in the log but its chain entry was deleted",
            )
        return Finding(
            event.position,
            "inserted",
            f"no event was sealed at this position (the chain goes from "
            f"{entry.prev_position} to {entry.position})",
        )

    def _mismatch(self, event: RawEvent, entry: ChainEntry, computed: bytes) -> Finding:
        position = event.position
        expected = entry.chain_hash
        later = _flatten(self.source.events(position))
        following = next(later, None)
        if following is not None:
            next_entry = next(_flatten(self.source.chain_entries(position, 1)), None)
            if (
                next_entry is not None
                and next_entry.position == following.position
                and _link(computed, following).hex() == next_entry.chain_hash
            ):
                return Finding(
                    position,
                    "chain-modified",
                    "the event is intact but its chain entry was altered",
                )
        for candidate in _chain((following,) if following else (), later):
            moved = candidate._replace(position=position)
            if _link(self.prev_hash, moved).hex() != expected:
                continue
            if candidate is following and self._belongs_nowhere(event, candidate.position):
                return Finding(
                    position,
                    "inserted",
                    f"an event was inserted here; the event sealed here is now at "
                    f"{candidate.position}",
                )
            return Finding(
                position,
                "reordered",
                f"the event sealed here is now at position {candidate.position}",
            )
        return Finding(
            position,
            "modified",
            f"topic {event.topic}, originator {event.originator} v{event.version}: "
            f"its stored bytes give chain hash {computed.hex()}, sealed {expected}",
        )

    def _belongs_nowhere(self, event: RawEvent, moved_to: int) -> bool:
        entry = self.source.chain_entry_at(moved_to)
        if entry is None:
            return True
        prior = self.source.chain_entry_at(entry.prev_position)
        prev_hash = GENESIS if prior is None else bytes.fromhex(prior.chain_hash)
        return _link(prev_hash, event._replace(position=moved_to)).hex() != entry.chain_hash


def verify_chain(
    source: RawLog,
    checkpoints: Iterable[Checkpoint] = (),
    *,
    trusted: Checkpoint | None = None,
    signature_check: SignatureCheck | None = None,
    until: int | None = None,
    batch: int = 10_000,
    workers: int | None = None,
    parallel_threshold: int = PARALLEL_THRESHOLD,
) -> ChainReport:
    """Recompute the chain and report the first broken position (None when all holds).

    From the start, or from a `trusted` checkpoint; every checkpoint given must match the
    recomputed chain at its position; `until` stops the walk at that position. With at least
    `parallel_threshold` sealed events to walk, up to `workers` processes (default: the CPUs
    this process may use) walk segments of it at once; the report is the same either way.
    """
    start = trusted or Checkpoint(0, GENESIS.hex(), "")
    wanted = sorted(
        (c for c in checkpoints if c.position > start.position), key=lambda c: c.position
    )
    walk = _Walk(source, wanted, bytes.fromhex(start.chain_hash), start.position)
    walk.sealed_position = start.position
    for checkpoint in (*([trusted] if trusted else []), *wanted):
        if signature_check is not None and not signature_check(checkpoint):
            return walk.report(
                Finding(
                    checkpoint.position,
                    "bad-signature",
                    f"checkpoint {checkpoint.timestamp}: the signature does not verify "
                    "with the key given",
                )
            )
    try:
        with no_cyclic_gc():
            segments = _plan(source, walk, until, batch, workers, parallel_threshold)
            if segments is not None:
                walk, done = walk_segments(source, walk, segments, until, batch)
                if done:
                    return walk.report(None)
            walk.run(batch, until)
    except _Broken as broken:
        return walk.report(broken.finding)
    return walk.report(None)


def _plan(
    source: RawLog,
    walk: _Walk,
    until: int | None,
    batch: int,
    workers: int | None,
    threshold: int,
) -> list[tuple[int, str]] | None:
    """Where segments after the first start (position, stored chain hash), or None: one walk."""
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    if workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return None
    bound = source.sealed_head().position
    if until is not None:
        bound = min(bound, until)
    if bound <= walk.prev_position:
        return None
    count = source.count_events(walk.prev_position, bound)
    if count < max(threshold, 2):
        return None
    batches = -(-count // batch)
    per = -(-batches // workers) * batch
    starts: list[tuple[int, str]] = []
    for k in range(1, workers):
        if k * per >= count:
            break
        position = source.nth_position(walk.prev_position, k * per)
        entry = None if position is None else source.chain_entry_at(position)
        if entry is None:
            return None
        starts.append((entry.position, entry.chain_hash))
    return starts or None


_Task = tuple[str, str, int, list[Checkpoint], int | None, int, bool]


def walk_segments(
    source: RawLog,
    walk: _Walk,
    later_starts: list[tuple[int, str]],
    until: int | None,
    batch: int,
) -> tuple[_Walk, bool]:
    """Walk the segments at once; the combined walk and True, or where to resume and False."""
    starts = [(walk.prev_position, walk.prev_hash.hex()), *later_starts]
    ends: list[int | None] = [*(position for position, _ in later_starts), until]
    checkpoints = list(walk.checkpoints)
    tasks: list[_Task] = [
        (
            source.url,
            chain_hash,
            position,
            [
                c
                for c in checkpoints
                if c.position > position and (end is None or c.position <= end)
            ],
            end,
            batch,
            source.read_only,
        )
        for (position, chain_hash), end in zip(starts, ends, strict=True)
    ]
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=len(tasks) - 1, mp_context=context) as pool:
        futures = [pool.submit(_walk_segment, task) for task in tasks[1:]]
        first = _walk_segment_of(source, tasks[0])
        reports = [first, *(future.result() for future in futures)]
    total = _Walk(source, [], walk.prev_hash, walk.prev_position)
    total.sealed_position = walk.sealed_position
    for index, report in enumerate(reports):
        position, chain_hash = starts[index]
        following = starts[index + 1] if index + 1 < len(starts) else None
        joined = following is None or (
            report.head_position == following[0]
            and report.head_hash == following[1]
            and report.sealed_position == following[0]
            and report.unsealed == 0
        )
        if report.finding is not None or not joined:
            total.checkpoints = [c for c in checkpoints if c.position > position]
            total.prev_hash, total.prev_position = bytes.fromhex(chain_hash), position
            total.sealed_position = walk.sealed_position if index == 0 else position
            return total, False
        total.events_checked += report.events_checked
        total.unsealed += report.unsealed
        total.payloads_checked += report.payloads_checked
        total.payloads_purged += report.payloads_purged
        total.payloads_erased += report.payloads_erased
        total.checkpoints_checked += report.checkpoints_checked
        total.prev_hash = bytes.fromhex(report.head_hash)
        total.prev_position = report.head_position
        total.sealed_position = report.sealed_position
    return total, True


def _walk_segment(task: _Task) -> ChainReport:
    """In a worker process: open the store afresh and walk one segment."""
    with RawLog.open(task[0], read_only=task[6]) as source, no_cyclic_gc():
        return _walk_segment_of(source, task)


def _walk_segment_of(source: RawLog, task: _Task) -> ChainReport:
    _, chain_hash, position, checkpoints, until, batch, _ = task
    walk = _Walk(source, list(checkpoints), bytes.fromhex(chain_hash), position)
    walk.sealed_position = position
    try:
        walk.run(batch, until)
    except _Broken as broken:
        return walk.report(broken.finding)
    return walk.report(None)


def _link(prev: bytes, event: RawEvent) -> bytes:
    return link(prev, event.position, event.topic, event.originator, event.version, event.state)


def _flatten(batches: Iterable[list[RawEvent]] | Iterable[list[ChainEntry]]) -> Iterator:  # type: ignore[type-arg]
    for batch in batches:
        yield from batch


_Rows = dict[str, tuple[bytes | None, Removal]]


def _payload_checks(wanted: list[str], rows: _Rows) -> dict[str, PayloadCheck]:
    """Each digest's payload classified; a digest without a row is missing."""
    return {digest: check(digest, *rows.get(digest, (None, False))) for digest in wanted}


_Batch = tuple[list[RawEvent], list[str], _Rows]


class _Peekable:
    """The chain entries in log order: one at a time or in runs, with a way to give back."""

    def __init__(self, batches: Iterator[list[ChainEntry]]) -> None:
        self._batches = batches
        self._buffer: list[ChainEntry] = []
        self._index = 0

    def _fill(self) -> bool:
        while self._index >= len(self._buffer):
            batch = next(self._batches, None)
            if batch is None:
                return False
            self._buffer, self._index = batch, 0
        return True

    def peek(self) -> ChainEntry | None:
        return self._buffer[self._index] if self._fill() else None

    def pop(self) -> None:
        if self._fill():
            self._index += 1

    def take_through(self, position: int) -> list[ChainEntry]:
        taken: list[ChainEntry] = []
        while self._fill():
            start = self._index
            end = bisect_right(self._buffer, position, lo=start, key=_position)
            taken.extend(self._buffer[start:end])
            self._index = end
            if end < len(self._buffer):
                break
        return taken

    def put_back(self, items: list[ChainEntry]) -> None:
        if items:
            self._buffer = items + self._buffer[self._index :]
            self._index = 0


def _position(entry: ChainEntry) -> int:
    return entry.position


def _chain(*parts: Iterable[RawEvent]) -> Iterator[RawEvent]:
    for part in parts:
        yield from part
