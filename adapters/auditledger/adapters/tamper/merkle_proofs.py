"""Inclusion and consistency proofs from the stored Merkle tree (see merkle.py, merkle_store.py).

Each proof reads O(log n) stored subtrees (a few tiles) plus the event itself, and is checked
before it is handed out: the event must still hash to the leaf sealed for it and the audit
path must lead to the root, else TreeDamaged names what no longer holds. What a proof proves
is the root: compare it with a root you kept (or a consistency proof from one you kept).
"""

from __future__ import annotations

import base64
import json
from bisect import bisect_right
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from pydantic import BaseModel
from sqlalchemy import Connection

from auditledger.adapters.tamper.chain_format import originator_text
from auditledger.adapters.tamper.merkle import (
    Span,
    Subtree,
    consistency_spans,
    cover,
    fold,
    inclusion_spans,
    leaf_bytes,
    leaf_hash,
    root,
)
from auditledger.adapters.tamper.merkle_errors import NothingToProve, NotSealed, TreeDamaged
from auditledger.adapters.tamper.merkle_store import (
    HASH,
    ROW_STARTS,
    TILE_HEIGHT,
    TileKey,
    TreeHead,
    read_head,
)
from auditledger.adapters.tamper.merkle_verify import verify_consistency, verify_inclusion
from auditledger.adapters.tamper.raw_log import RawLog, as_bytes
from auditledger.domain.call_key import call_key_id
from auditledger.domain.errors import UnknownState

CALL_TOPICS = ("auditledger:NodeState.CallRecorded:v1", "auditledger:Operation.CallRecorded:v1")
TILE_CACHE = 20_000
"""Tiles a Prover keeps decoded (~1 KB each); the upper levels are shared by every proof."""
RUNS_KEPT = 10_000
SQLITE_MMAP = 1 << 30
MISSING: Any = object()


class InclusionProof(BaseModel):
    """RFC 9162 2.1.3: the event at `position` is leaf `leaf_index` of the tree of `tree_size`."""

    position: int
    leaf_index: int
    tree_size: int
    leaf: str
    """base64 of the leaf bytes (merkle.leaf_bytes: the event's position, topic, id, version,
    stored state)."""
    leaf_hash: str
    audit_path: list[str]
    root_hash: str


class ConsistencyProof(BaseModel):
    """RFC 9162 2.1.4: the tree of old_size is a prefix of the tree of new_size."""

    old_size: int
    new_size: int
    old_root: str
    new_root: str
    proof: list[str]


class Prover:
    """Proofs over one store, read through one connection (open with `Prover.over(log)`)."""

    def __init__(self, log: RawLog, conn: Connection) -> None:
        self.log = log
        self.conn = conn
        self.cursor: Any = conn.connection.cursor()
        self.postgres = conn.dialect.name == "postgresql"
        self.head: TreeHead = (
            read_head(conn) if log.has_table(log.events_engine, "merkle_tiles") else TreeHead(0, 0)
        )
        self.tiles: dict[TileKey, tuple[int, bytes] | None] = {}
        self.runs = self._small_runs()
        self.roots: dict[int, bytes] = {}

    @classmethod
    @contextmanager
    def over(cls, log: RawLog) -> Iterator[Prover]:
        with log.events_engine.connect() as conn:
            if conn.dialect.name == "sqlite":  # random reads: mapped pages, not read() calls
                conn.exec_driver_sql(f"PRAGMA mmap_size = {SQLITE_MMAP}")
            prover = cls(log, conn)
            try:
                yield prover
            finally:
                prover.cursor.close()

    # what to prove

    def positions_of_state(self, state_id: str | UUID) -> list[int]:
        try:
            state = state_id if isinstance(state_id, UUID) else UUID(str(state_id))
        except ValueError:
            raise UnknownState(state_id) from None
        found = [row[0] for row in self._rows_of(state)]
        if not found:
            raise UnknownState(state_id)
        return found

    def positions_of_call(self, call_id: str) -> list[int]:
        """The CallRecorded event of a call id: through its CallKey when the caller named it,
        else by reading every CallRecorded event (a generated call id names no key)."""
        needle = b'"call_id":' + json.dumps(call_id).encode("utf-8")
        candidates: list[tuple[int, str, bytes]] = []
        for _, _, state in self._rows_of(call_key_id(call_id)):
            parent = json.loads(state).get("parent_id", {}).get("_data_")
            if parent:
                candidates = [(p, t, s) for p, t, s in self._rows_of(UUID(parent))]
        if not candidates:
            candidates = self._calls_scan(needle)
        for position, topic, state in candidates:
            if (
                topic in CALL_TOPICS
                and needle in state
                and json.loads(state).get("call_id") == call_id
            ):
                return [position]
        raise NothingToProve(f"call {call_id!r}", "no CallRecorded event carries this call id")

    # proofs

    def inclusion(self, position: int, size: int | None = None) -> InclusionProof:
        tree_size = self._size(size)
        index = self._leaf_index(position, tree_size)
        leaf = self._leaf(position)
        digest = leaf_hash(leaf)
        if digest != self._node((0, index)):
            raise TreeDamaged(
                f"the event at position {position} no longer hashes to leaf {index} as sealed"
            )
        path = self._hashes(inclusion_spans(index, tree_size))
        top = self._root(tree_size)
        if not verify_inclusion(index, tree_size, digest, path, top):
            raise TreeDamaged(f"the audit path of leaf {index} does not lead to the root")
        return InclusionProof(
            position=position,
            leaf_index=index,
            tree_size=tree_size,
            leaf=base64.b64encode(leaf).decode("ascii"),
            leaf_hash=digest.hex(),
            audit_path=[h.hex() for h in path],
            root_hash=top.hex(),
        )

    def consistency(self, old: int, new: int | None = None) -> ConsistencyProof:
        new_size = self._size(new)
        if not 0 < old <= new_size:
            raise NothingToProve(
                f"tree size {old}", f"a consistency proof needs 0 < old <= new ({new_size})"
            )
        proof = self._hashes(consistency_spans(old, new_size))
        old_root, new_root = self._root(old), self._root(new_size)
        if not verify_consistency(old, new_size, old_root, new_root, proof):
            raise TreeDamaged(f"the stored subtrees do not join size {old} to size {new_size}")
        return ConsistencyProof(
            old_size=old,
            new_size=new_size,
            old_root=old_root.hex(),
            new_root=new_root.hex(),
            proof=[h.hex() for h in proof],
        )

    def root_hash(self, size: int | None = None) -> bytes:
        """The RFC 9162 root of the tree of `size` leaves (default: every sealed event)."""
        return self._root(self._size(size))

    def size_at(self, position: int) -> int:
        """The tree size whose last leaf is the event at `position`."""
        return self._leaf_index(position, self.head.size) + 1

    # reading

    def _size(self, size: int | None) -> int:
        if size is None:
            size = self.head.size
        if size > self.head.size or self.head.size == 0:
            raise NotSealed(f"tree size {size or 1}", self.head.size)
        if size <= 0:
            raise NothingToProve(f"tree size {size}", "the tree of that size has no leaf")
        return size

    def _small_runs(self) -> list[tuple[int, int]] | None:
        """Every run, when there are few (SQLite logs have one): looked up in memory."""
        if self.head.size == 0:
            return []
        self.cursor.execute(f"SELECT position, leaf_index FROM merkle_runs LIMIT {RUNS_KEPT + 1}")
        found = sorted((int(p), int(i)) for p, i in self.cursor.fetchall())
        return found if len(found) <= RUNS_KEPT else None

    def _runs_around(self, position: int) -> tuple[Any, Any]:
        if self.runs is not None:
            at = bisect_right(self.runs, (position, 2**63))
            run = self.runs[at - 1] if at else None
            return run, (self.runs[at][1],) if at < len(self.runs) else None
        run = self._fetch(
            "SELECT position, leaf_index FROM merkle_runs WHERE position <= {p} "
            "ORDER BY position DESC LIMIT 1",
            position,
        )
        after = self._fetch(
            "SELECT leaf_index FROM merkle_runs WHERE position > {p} ORDER BY position LIMIT 1",
            position,
        )
        return run, after

    def _leaf_index(self, position: int, tree_size: int) -> int:
        run, after = self._runs_around(position)
        if run is not None:
            index = run[1] + position - run[0]
            end = after[0] if after is not None else self.head.size
            if index < end:
                if index >= tree_size:
                    raise NotSealed(f"position {position} (leaf {index})", tree_size)
                return int(index)
        if position > self.head.last_position:
            raise NotSealed(f"position {position}", self.head.size)
        raise NothingToProve(f"position {position}", "no sealed event is at this position")

    def _leaf(self, position: int) -> bytes:
        column, table = self.log.position_column, self.log.events_table
        row = self._fetch(
            f"SELECT topic, originator_id, originator_version, state FROM {table} "
            f"WHERE {column} = {{p}}",
            position,
        )
        if row is None:
            raise TreeDamaged(f"the sealed event at position {position} is gone")
        topic, originator, version, state = row
        return leaf_bytes(position, topic, originator_text(originator), version, as_bytes(state))

    def _node(self, subtree: Subtree) -> bytes:
        level, index = subtree
        row = level % TILE_HEIGHT
        shift = TILE_HEIGHT - row
        key = (level // TILE_HEIGHT, index >> shift)
        tile = self.tiles.get(key, MISSING)
        if tile is MISSING:
            if len(self.tiles) >= TILE_CACHE:
                self.tiles.clear()
            found = self._fetch(
                "SELECT width, hashes FROM merkle_tiles WHERE level = {p} AND tile_index = {q}",
                key[0],
                key[1],
            )
            tile = self.tiles[key] = None if found is None else (found[0], bytes(found[1]))
        place = index & ((1 << shift) - 1)
        if tile is None or place >= tile[0] >> row:
            raise TreeDamaged(f"subtree {subtree} is missing from the stored tree")
        start = ROW_STARTS[tile[0]][row] + HASH * place
        node: bytes = tile[1][start : start + HASH]
        return node

    def _hashes(self, spans: list[Span]) -> list[bytes]:
        """MTH of each span (merkle.span_hashes; a complete subtree read at once)."""
        found = []
        for lo, hi in spans:
            size = hi - lo
            if size & (size - 1) == 0:
                level = size.bit_length() - 1
                found.append(self._node((level, lo >> level)))
            else:
                found.append(fold([self._node(subtree) for subtree in cover((lo, hi))]))
        return found

    def _root(self, size: int) -> bytes:
        if size not in self.roots:
            self.roots[size] = root(size, self._node)
        return self.roots[size]

    def _rows_of(self, originator: UUID) -> list[tuple[int, str, bytes]]:
        column, table = self.log.position_column, self.log.events_table
        key = str(originator) if self.postgres else originator.hex
        self.cursor.execute(
            f"SELECT {column}, topic, state FROM {table} WHERE originator_id = "
            f"{self._ph('p')} ORDER BY {column}",
            {"p": key},
        )
        return [(int(p), t, as_bytes(s)) for p, t, s in self.cursor.fetchall()]

    def _calls_scan(self, needle: bytes) -> list[tuple[int, str, bytes]]:
        column, table = self.log.position_column, self.log.events_table
        self.cursor.execute(
            f"SELECT {column}, topic, state FROM {table} WHERE topic IN "
            f"({self._ph('a')}, {self._ph('b')}) ORDER BY {column}",
            {"a": CALL_TOPICS[0], "b": CALL_TOPICS[1]},
        )
        found = []
        for position, topic, state in self.cursor:
            data = as_bytes(state)
            if needle in data:
                found.append((int(position), topic, data))
        return found

    def _fetch(self, statement: str, p: object, q: object = None) -> Any:
        sql = statement.format(p=self._ph("p"), q=self._ph("q"))
        self.cursor.execute(sql, {"p": p, "q": q})
        return self.cursor.fetchone()

    def _ph(self, name: str) -> str:
        return f"%({name})s" if self.postgres else f":{name}"


def prove(
    url: str,
    *,
    position: int | None = None,
    call_id: str | None = None,
    state_id: str | UUID | None = None,
    size: int | None = None,
) -> list[InclusionProof]:
    """Inclusion proofs for one position, a call's CallRecorded event, or a state's events."""
    if sum(given is not None for given in (position, call_id, state_id)) != 1:
        raise NothingToProve("prove", "give exactly one of position, call_id, state_id")
    with RawLog.open(url) as log, Prover.over(log) as prover:
        if position is not None:
            positions = [position]
        elif call_id is not None:
            positions = prover.positions_of_call(call_id)
        else:
            assert state_id is not None
            positions = prover.positions_of_state(state_id)
        return [prover.inclusion(p, size) for p in positions]


def prove_consistency(url: str, old: int, new: int | None = None) -> ConsistencyProof:
    with RawLog.open(url) as log, Prover.over(log) as prover:
        return prover.consistency(old, new)
