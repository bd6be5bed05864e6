"""Helpers for the tamper-evidence tests: record a history, then tamper with raw SQL."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from auditledger.adapters import Ledger


@dataclass(frozen=True)
class Token:
    calls: tuple[int, ...]
    outcome: str  # completed | failed | open
    in_batch: bool


def record_history(url: str, tokens: list[Token], seed: int, prefix: str = "token") -> None:
    """A legal history through the Ledger: one run, states, calls, maybe a batch."""
    with Ledger.open(url) as ledger:
        run = ledger.begin_run({"seed": seed})
        members = []
        for index, token in enumerate(tokens):
            state = ledger.open_state(
                run_id=run,
                token_id=f"{prefix}-{index}",
                node_id="node",
                step_index=0,
                input={"row": index, "seed": seed},
            )
            for value in token.calls:
                ledger.record_call(
                    state,
                    call_type="llm",
                    request={"prompt": value},
                    response={"answer": value * 2},
                )
            if token.outcome == "completed":
                ledger.complete_state(state, {"out": index})
            elif token.outcome == "failed":
                ledger.fail_state(state, {"why": "boom"})
            if token.in_batch:
                members.append(f"{prefix}-{index}")
        if members:
            batch = ledger.create_batch(run, "aggregate")
            for member in members:
                ledger.add_batch_member(batch, member)


class RawStore:
    """The raw tables behind a store URL, for tampering the way someone with SQL access would."""

    def __init__(self, url: str) -> None:
        if url.startswith("sqlite:///"):
            directory = Path(url[len("sqlite:///") :])
            self.events: Engine = create_engine(f"sqlite:///{directory / 'events.sqlite3'}")
            legacy = directory / "payloads.sqlite3"  # a directory from before one file
            payload_file = legacy if legacy.exists() else directory / "events.sqlite3"
            self.payloads: Engine = create_engine(f"sqlite:///{payload_file}")
            self.table, self.pos = "stored_events", "rowid"
        else:
            pg = "postgresql+psycopg://" + url.split("://", 1)[1]
            self.events = self.payloads = create_engine(pg, poolclass=NullPool)
            self.table, self.pos = "auditledger_events", "notification_id"
        self.postgres = not url.startswith("sqlite")

    def close(self) -> None:
        self.events.dispose()
        self.payloads.dispose()

    def positions(self) -> list[int]:
        with self.events.connect() as conn:
            rows = conn.execute(text(f"SELECT {self.pos} FROM {self.table} ORDER BY 1")).all()
        return [row[0] for row in rows]

    def states(self) -> list[tuple[int, bytes]]:
        with self.events.connect() as conn:
            rows = conn.execute(
                text(f"SELECT {self.pos}, state FROM {self.table} ORDER BY 1")
            ).all()
        return [(row[0], bytes(row[1])) for row in rows]

    def flip_event_byte(self, position: int, index: int) -> None:
        state = dict(self.states())[position]
        index %= len(state)
        changed = state[:index] + bytes([state[index] ^ 0x01]) + state[index + 1 :]
        with self.events.begin() as conn:
            conn.execute(
                text(f"UPDATE {self.table} SET state = :s WHERE {self.pos} = :p"),
                {"s": changed, "p": position},
            )

    def payload_digests(self) -> list[str]:
        with self.payloads.connect() as conn:
            rows = conn.execute(text("SELECT hash FROM payloads ORDER BY hash")).all()
        return [row[0] for row in rows]

    def flip_payload_byte(self, digest: str, index: int) -> None:
        with self.payloads.begin() as conn:
            data = bytes(
                conn.execute(
                    text("SELECT data FROM payloads WHERE hash = :h"), {"h": digest}
                ).one()[0]
            )
            index %= len(data)
            changed = data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]
            assert hashlib.sha256(changed).hexdigest() != digest
            conn.execute(
                text("UPDATE payloads SET data = :d WHERE hash = :h"), {"d": changed, "h": digest}
            )

    def delete_event(self, position: int) -> None:
        with self.events.begin() as conn:
            conn.execute(text(f"DELETE FROM {self.table} WHERE {self.pos} = :p"), {"p": position})

    def delete_after(self, position: int) -> None:
        with self.events.begin() as conn:
            conn.execute(text(f"DELETE FROM {self.table} WHERE {self.pos} > :p"), {"p": position})
            conn.execute(text("DELETE FROM chain WHERE position > :p"), {"p": position})

    def _move(self, conn, source: int, target: int) -> None:  # type: ignore[no-untyped-def]
        conn.execute(
            text(f"UPDATE {self.table} SET {self.pos} = :t WHERE {self.pos} = :s"),
            {"t": target, "s": source},
        )

    def swap(self, first: int, second: int) -> None:
        with self.events.begin() as conn:
            self._move(conn, first, -1)
            self._move(conn, second, first)
            self._move(conn, -1, second)

    def insert_at(self, position: int) -> None:
        """Push every event from `position` one place down and put a forged event there."""
        with self.events.begin() as conn:
            for moved in sorted((p for p in self.positions() if p >= position), reverse=True):
                self._move(conn, moved, moved + 1)
            forged = uuid.uuid4()
            conn.execute(
                text(
                    f"INSERT INTO {self.table} "
                    f"(originator_id, originator_version, topic, state, {self.pos}) "
                    "VALUES (:o, 1, :t, :s, :p)"
                ),
                {
                    "o": forged if self.postgres else forged.hex,
                    "t": "auditledger:Run.RunStarted:v1",
                    "s": b'{"config_json":"{}"}',
                    "p": position,
                },
            )
