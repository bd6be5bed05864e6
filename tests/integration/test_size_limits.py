"""One size limit for inline text, the same on every backend; big data goes as payloads.

An inline field (a config, an error, a summary, a reason) holds at most MAX_INLINE_BYTES of
UTF-8: one byte more is refused with InvalidArgument naming the field and the limit, before
anything is written. A write of any allowed size lands, on PostgreSQL too, in bounded time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from auditledger.adapters import Ledger
from auditledger.domain.errors import InvalidArgument
from auditledger.domain.node_state import NodeState
from auditledger.domain.values import MAX_INLINE_BYTES

# A JSON string of n characters is n + 2 bytes of canonical JSON: its quotes.
AT_LIMIT = "a" * (MAX_INLINE_BYTES - 2)
OVER_LIMIT = "a" * (MAX_INLINE_BYTES - 1)


def log_end(ledger: Ledger) -> int:
    return ledger.app.recorder.max_notification_id() or 0


def commands(ledger: Ledger, text: str) -> dict[str, Callable[[], object]]:
    """Each command carrying one inline field of the given JSON-string text, by field."""
    run_id = ledger.begin_run(config={})
    state = ledger.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0)
    operation = ledger.begin_operation(run_id=run_id, node_id="n", operation_type="source_load")
    batch = ledger.create_batch(run_id=run_id, aggregation_node_id="agg")
    raw = f'"{text}"'  # reason is plain text: the same bytes as the JSON fields' text
    return {
        "config": lambda: ledger.begin_run(config=text),
        "error (state)": lambda: ledger.fail_state(state, error=text),
        "error (operation)": lambda: ledger.fail_operation(operation, error=text),
        "error (batch)": lambda: ledger.fail_batch(batch, error=text),
        "error (call)": lambda: ledger.record_call(state, call_type="llm", request={}, error=text),
        "summary": lambda: ledger.record_call(
            state, call_type="llm", request={}, summary={"s": text[:-6]}
        ),
        "reason (state)": lambda: ledger.mark_pending(state, reason=raw),
        "reason (operation)": lambda: ledger.mark_operation_pending(operation, reason=raw),
    }


FIELDS = [
    "config",
    "error (state)",
    "error (operation)",
    "error (batch)",
    "error (call)",
    "summary",
    "reason (state)",
    "reason (operation)",
]


@pytest.mark.parametrize("field", FIELDS)
def test_an_inline_field_one_byte_over_the_limit_is_refused_naming_it_and_nothing_is_written(
    store_url: str, field: str
) -> None:
    with Ledger.open(store_url) as ledger:
        command = commands(ledger, OVER_LIMIT)[field]
        before = log_end(ledger)
        with pytest.raises(InvalidArgument) as refused:
            command()
        assert field.split(" ")[0] in str(refused.value)
        assert str(MAX_INLINE_BYTES) in str(refused.value)
        assert log_end(ledger) == before


@pytest.mark.parametrize("field", FIELDS)
def test_an_inline_field_at_the_limit_lands(store_url: str, field: str) -> None:
    with Ledger.open(store_url) as ledger:
        command = commands(ledger, AT_LIMIT)[field]
        before = log_end(ledger)
        command()
        assert log_end(ledger) > before


def test_the_limit_counts_utf8_bytes_not_characters(ledger: Ledger) -> None:
    run_id = ledger.begin_run(config={})
    state = ledger.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0)
    with pytest.raises(InvalidArgument, match="error"):
        ledger.fail_state(state, error="é" * (MAX_INLINE_BYTES // 2))  # 1 MiB + 2 bytes


def landed_within(seconds: float, write: Callable[[], object]) -> object:
    """The write's result, or a failure when it has not returned in time (a hung write)."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(write())
        except BaseException as error:
            outcome.append(error)

    writer = threading.Thread(target=run, daemon=True)
    writer.start()
    writer.join(seconds)
    assert not writer.is_alive(), f"the write did not return within {seconds} s"
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


@pytest.mark.postgres
def test_a_call_with_a_20_mb_request_lands_on_postgresql(postgres_url: str) -> None:
    request = {"text": "r" * 20_000_000}
    with Ledger.open(postgres_url) as ledger:
        run_id = ledger.begin_run(config={})
        state = ledger.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0)
        landed_within(60, lambda: ledger.record_call(state, call_type="llm", request=request))
        ((_, request_hash),) = ledger.load(NodeState, state).call_keys.values()
        assert len(ledger.payload(request_hash)) > 20_000_000


@pytest.mark.postgres
def test_a_unit_of_work_with_many_errors_at_the_limit_lands_on_postgresql(
    postgres_url: str,
) -> None:
    with Ledger.open(postgres_url) as ledger:
        run_id = ledger.begin_run(config={})
        states = [
            ledger.open_state(run_id=run_id, token_id=f"t{n}", node_id="n", step_index=0)
            for n in range(24)
        ]
        before = log_end(ledger)

        def unit() -> None:
            with ledger.unit_of_work():
                for state in states:
                    ledger.fail_state(state, error=AT_LIMIT)

        landed_within(60, unit)
        assert log_end(ledger) == before + len(states)
