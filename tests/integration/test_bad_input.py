"""Bad input is refused with a typed LedgerError naming the id and the rule, and writes nothing.

"Nothing" means no event (the notification log does not move) and no payload row for the
refused command's payloads.
"""

# ruff: noqa: B023  (every lambda here is called within the loop iteration that made it)

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest
import rfc8785

from auditledger.adapters import Ledger
from auditledger.adapters.storage.canonical import Payload
from auditledger.domain.errors import (
    DuplicateAttempt,
    InvalidArgument,
    InvalidLink,
    InvalidTransition,
    LedgerError,
    NotCanonical,
    ParentClosed,
    PayloadCorrupt,
    RunClosed,
    RunNotSettled,
    UnknownBatch,
    UnknownOperation,
    UnknownRun,
    UnknownState,
)
from auditledger.domain.node_state import NodeState

TEN_MB = 10 * 1024 * 1024


def digest_of(value: Any) -> str:
    return hashlib.sha256(rfc8785.dumps(value)).hexdigest()


def assert_refused(
    ledger: Ledger,
    error: type[LedgerError],
    command: Callable[[], object],
    *,
    naming: str | None = None,
    payloads: tuple[Any, ...] = (),
) -> LedgerError:
    """The command raises `error` (naming the id), and neither events nor payloads appeared."""
    before = ledger.app.recorder.max_notification_id()
    with pytest.raises(error) as raised:
        command()
    if naming is not None:
        assert naming in str(raised.value)
    assert ledger.app.recorder.max_notification_id() == before
    for value in payloads:
        assert ledger.payloads.status(digest_of(value)) == "missing", value
    return raised.value


@pytest.fixture
def world(ledger: Ledger) -> dict[str, str]:
    run_id = ledger.begin_run(config={"pipeline": "bad input"})
    state_id = ledger.open_state(run_id=run_id, token_id="t", node_id="agg", step_index=0)
    operation_id = ledger.begin_operation(run_id=run_id, node_id="src", operation_type="load")
    batch_id = ledger.create_batch(run_id, "agg")
    return {"run": run_id, "state": state_id, "operation": operation_id, "batch": batch_id}


def bad_ids(world: dict[str, str], own_kind: str) -> list[Any]:
    other_kinds = [world[kind] for kind in world if kind != own_kind]
    real = world[own_kind]
    return [f"{real}_row0", "", "not-a-uuid", 42, None, 3.5, b"bytes", uuid4(), *other_kinds]


def test_malformed_or_unknown_state_ids_are_unknown_states(
    ledger: Ledger, world: dict[str, str]
) -> None:
    for bad in bad_ids(world, "state"):
        request, output = {"q": repr(bad)}, {"out": repr(bad)}
        for command, payloads in [
            (lambda: ledger.record_call(bad, call_type="llm", request=request), (request,)),
            (lambda: ledger.complete_state(bad, output=output), (output,)),
            (lambda: ledger.mark_pending(bad), ()),
            (lambda: ledger.fail_state(bad, error={"type": "X"}), ()),
            (lambda: ledger.link_batch(world["batch"], bad), ()),
        ]:
            if bad is None and payloads == (request,):
                continue  # record_call(None) names no parent at all: see the parent test
            assert_refused(ledger, UnknownState, command, naming=repr(str(bad)), payloads=payloads)


def test_malformed_or_unknown_operation_ids_are_unknown_operations(
    ledger: Ledger, world: dict[str, str]
) -> None:
    for bad in bad_ids(world, "operation"):
        request, output = {"q": repr(bad)}, {"out": repr(bad)}
        for command, payloads in [
            (
                lambda: ledger.record_call(operation_id=bad, call_type="sql", request=request),
                (request,),
            ),
            (lambda: ledger.complete_operation(bad, output=output), (output,)),
            (lambda: ledger.mark_operation_pending(bad), ()),
            (lambda: ledger.fail_operation(bad, error="boom"), ()),
        ]:
            if bad is None and payloads == (request,):
                continue
            assert_refused(
                ledger, UnknownOperation, command, naming=repr(str(bad)), payloads=payloads
            )


def test_malformed_or_unknown_batch_ids_are_unknown_batches(
    ledger: Ledger, world: dict[str, str]
) -> None:
    for bad in bad_ids(world, "batch"):
        for command in [
            lambda: ledger.add_batch_member(bad, "t"),
            lambda: ledger.link_batch(bad, world["state"]),
            lambda: ledger.complete_batch(bad),
            lambda: ledger.fail_batch(bad, error="boom"),
        ]:
            assert_refused(ledger, UnknownBatch, command, naming=repr(str(bad)))


def test_malformed_or_unknown_run_ids_are_unknown_runs(
    ledger: Ledger, world: dict[str, str]
) -> None:
    for bad in bad_ids(world, "run"):
        given = {"in": repr(bad)}
        for command, payloads in [
            (lambda: ledger.complete_run(bad), ()),
            (lambda: ledger.resume_run(bad), ()),
            (
                lambda: ledger.open_state(
                    run_id=bad, token_id="u", node_id="n", step_index=0, input=given
                ),
                (given,),
            ),
            (
                lambda: ledger.begin_operation(
                    run_id=bad, node_id="n", operation_type="load", input=given
                ),
                (given,),
            ),
            (lambda: ledger.create_batch(bad, "agg"), ()),
        ]:
            assert_refused(ledger, UnknownRun, command, naming=repr(str(bad)), payloads=payloads)


def test_a_call_needs_exactly_one_parent(ledger: Ledger, world: dict[str, str]) -> None:
    request = {"q": "which parent?"}
    for state_id, operation_id in [(None, None), (world["state"], world["operation"])]:
        error = assert_refused(
            ledger,
            InvalidArgument,
            lambda: ledger.record_call(
                state_id, operation_id=operation_id, call_type="llm", request=request
            ),
            naming="exactly one parent",
            payloads=(request,),
        )
        assert isinstance(error, InvalidArgument)
        assert error.name == "parent"


NOT_JSON: list[tuple[str, Any]] = [
    ("NaN", math.nan),
    ("Infinity", math.inf),
    ("-Infinity", -math.inf),
    ("bytes", b"raw"),
    ("bytearray", bytearray(b"raw")),
    ("a set", {1, 2}),
    ("a tuple", (1, 2)),
    ("an integer key", {1: "one"}),
    ("a bool key", {True: "yes"}),
    ("2**53", 2**53),
    ("-(2**53)", -(2**53)),
    ("10**30", 10**30),
    ("a Decimal", Decimal("1.5")),
    ("an object", object()),
    ("a lone surrogate", "\ud800"),
]


def deeply_nested(depth: int) -> list[Any]:
    outer: list[Any] = []
    inner = outer
    for _ in range(depth):
        inner.append([])
        inner = inner[0]
    return outer


@pytest.mark.parametrize(("what", "value"), NOT_JSON, ids=[w for w, _ in NOT_JSON])
def test_values_that_are_not_canonical_json_are_refused_wherever_they_appear(
    ledger: Ledger, world: dict[str, str], what: str, value: Any
) -> None:
    ok = {"fine": what}
    nested = {"outer": [1, {"inner": value}]}
    state, operation = world["state"], world["operation"]
    for command, payloads in [
        (lambda: ledger.begin_run(config=nested), ()),
        (
            lambda: ledger.open_state(
                run_id=world["run"], token_id="u", node_id="n", step_index=0, input=nested
            ),
            (),
        ),
        (lambda: ledger.record_call(state, call_type="llm", request=nested), ()),
        (lambda: ledger.record_call(state, call_type="llm", request=ok, response=nested), (ok,)),
        (lambda: ledger.record_call(state, call_type="llm", request=ok, error=nested), (ok,)),
        (lambda: ledger.record_call(state, call_type="llm", request=ok, summary=nested), (ok,)),
        (lambda: ledger.record_call(operation_id=operation, call_type="x", request=nested), ()),
        (lambda: ledger.complete_state(state, output=nested), ()),
        (lambda: ledger.fail_state(state, error=nested), ()),
        (lambda: ledger.fail_batch(world["batch"], error=nested), ()),
    ]:
        assert_refused(ledger, NotCanonical, command, payloads=payloads)
    assert ledger.load(NodeState, state).status == "open"


def test_json_nested_too_deeply_or_containing_itself_is_not_canonical(
    ledger: Ledger, world: dict[str, str]
) -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    for value in (deeply_nested(10**5), deeply_nested(257), cycle):
        assert_refused(
            ledger,
            NotCanonical,
            lambda: ledger.record_call(world["state"], call_type="llm", request=value),
            naming="nested deeper than 256 levels",
        )
    request = deeply_nested(255)
    assert ledger.record_call(world["state"], call_type="llm", request=request) == 0
    assert ledger.payload(digest_of(request)) == b"[" * 256 + b"]" * 256


def test_the_largest_safe_integers_are_canonical(ledger: Ledger, world: dict[str, str]) -> None:
    request = {"max": 2**53 - 1, "min": -(2**53 - 1)}
    assert ledger.record_call(world["state"], call_type="llm", request=request) == 0
    assert ledger.payload(digest_of(request)) == b'{"max":9007199254740991,"min":-9007199254740991}'


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("status", "weird"),
        ("status", "SUCCESS"),
        ("call_type", ""),
        ("latency_ms", math.nan),
        ("latency_ms", -1),
        ("latency_ms", "fast"),
        ("started_at", "yesterday"),
        ("call_id", 7),
        ("call_id", ""),
    ],
)
def test_malformed_call_arguments_are_invalid_and_record_nothing(
    ledger: Ledger, world: dict[str, str], argument: str, value: Any
) -> None:
    request = {"q": f"{argument}={value!r}"}
    fields: dict[str, Any] = {"call_type": "llm", "request": request, argument: value}
    error = assert_refused(
        ledger,
        InvalidArgument,
        lambda: ledger.record_call(world["state"], **fields),
        payloads=(request,),
    )
    assert isinstance(error, InvalidArgument)
    assert error.name == argument


def test_an_error_call_without_an_error_or_a_response_is_invalid(
    ledger: Ledger, world: dict[str, str]
) -> None:
    request = {"q": "error without error"}
    assert_refused(
        ledger,
        InvalidArgument,
        lambda: ledger.record_call(
            world["state"], call_type="llm", request=request, status="error"
        ),
        payloads=(request,),
    )


@pytest.mark.parametrize("status", ["weird", "running", "", None])
def test_a_run_ending_outside_the_three_endings_is_invalid(
    ledger: Ledger, world: dict[str, str], status: Any
) -> None:
    assert_refused(
        ledger,
        InvalidArgument,
        lambda: ledger.complete_run(world["run"], status=status),
        naming="completed, failed, interrupted",
    )


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("token_id", ""),
        ("token_id", 5),
        ("node_id", None),
        ("step_index", "0"),
        ("step_index", -1),
        ("attempt", True),
        ("attempt", -1),
    ],
)
def test_malformed_state_fields_are_invalid_and_store_no_input(
    ledger: Ledger, world: dict[str, str], argument: str, value: Any
) -> None:
    given = {"input for": f"{argument}={value!r}"}
    fields: dict[str, Any] = {"token_id": "u", "node_id": "n", "step_index": 0, "input": given}
    fields[argument] = value
    assert_refused(
        ledger,
        InvalidArgument,
        lambda: ledger.open_state(run_id=world["run"], **fields),
        naming=argument,
        payloads=(given,),
    )


def test_wrong_transitions_are_refused_and_write_nothing(
    ledger: Ledger, world: dict[str, str]
) -> None:
    state, batch = world["state"], world["batch"]
    ledger.add_batch_member(batch, "t")
    ledger.link_batch(batch, state)
    ledger.complete_state(state, output={"done": True})
    late = {"q": "after completion"}
    assert_refused(ledger, InvalidTransition, lambda: ledger.complete_state(state), naming=state)
    assert_refused(ledger, InvalidTransition, lambda: ledger.mark_pending(state), naming=state)
    assert_refused(
        ledger,
        ParentClosed,
        lambda: ledger.record_call(state, call_type="llm", request=late),
        naming=state,
        payloads=(late,),
    )
    assert_refused(ledger, InvalidTransition, lambda: ledger.add_batch_member(batch, "u"))
    ledger.complete_batch(batch)
    assert_refused(ledger, InvalidTransition, lambda: ledger.complete_batch(batch), naming=batch)
    assert_refused(ledger, InvalidTransition, lambda: ledger.fail_batch(batch, "x"), naming=batch)

    assert_refused(
        ledger, RunNotSettled, lambda: ledger.complete_run(world["run"]), naming=world["run"]
    )
    ledger.complete_operation(world["operation"])  # a run completes only when settled
    ledger.complete_run(world["run"])
    given = {"input": "after the run completed"}
    assert_refused(ledger, InvalidTransition, lambda: ledger.resume_run(world["run"]))
    assert_refused(
        ledger,
        RunClosed,
        lambda: ledger.open_state(
            run_id=world["run"], token_id="u", node_id="n", step_index=0, input=given
        ),
        naming=world["run"],
        payloads=(given,),
    )
    assert_refused(ledger, RunClosed, lambda: ledger.create_batch(world["run"], "agg"))


def test_a_batch_links_only_to_a_live_state_of_its_run_and_node(
    ledger: Ledger, world: dict[str, str]
) -> None:
    other_run = ledger.begin_run(config={"other": True})
    elsewhere = ledger.open_state(
        run_id=other_run, token_id="t", node_id="agg", step_index=0, attempt=1
    )
    wrong_node = ledger.open_state(run_id=world["run"], token_id="t", node_id="llm", step_index=0)
    finished = ledger.open_state(run_id=world["run"], token_id="v", node_id="agg", step_index=0)
    ledger.fail_state(finished, error={"type": "Boom"})
    for state_id, rule in [
        (elsewhere, "belongs to run"),
        (wrong_node, "is at node 'llm'"),
        (finished, "already failed"),
    ]:
        assert_refused(
            ledger, InvalidLink, lambda: ledger.link_batch(world["batch"], state_id), naming=rule
        )


def test_duplicates_are_refused_before_their_payloads_are_written(
    ledger: Ledger, world: dict[str, str]
) -> None:
    config, given = {"second": "config"}, {"second": "input"}
    assert_refused(
        ledger,
        InvalidArgument,
        lambda: ledger.begin_run(config=config, run_id=world["run"]),
        naming=world["run"],
        payloads=(config,),
    )
    assert_refused(
        ledger,
        DuplicateAttempt,
        lambda: ledger.open_state(
            run_id=world["run"], token_id="t", node_id="agg", step_index=0, input=given
        ),
        naming=world["state"],
        payloads=(given,),
    )
    assert_refused(
        ledger,
        InvalidArgument,
        lambda: ledger.begin_operation(
            run_id=world["run"],
            node_id="src",
            operation_type="load",
            input=given,
            operation_id=world["operation"],
        ),
        naming=world["operation"],
        payloads=(given,),
    )
    assert_refused(
        ledger,
        InvalidArgument,
        lambda: ledger.create_batch(world["run"], "agg", batch_id=world["batch"]),
        naming=world["batch"],
    )


def test_a_duplicate_token_in_a_batch_is_refused(ledger: Ledger, world: dict[str, str]) -> None:
    assert ledger.add_batch_member(world["batch"], "t") == 0
    assert_refused(
        ledger,
        LedgerError,
        lambda: ledger.add_batch_member(world["batch"], "t"),
        naming="joins a batch once",
    )


def test_ten_megabyte_payloads_are_recorded_and_come_back_hash_checked(
    ledger: Ledger, world: dict[str, str]
) -> None:
    request = {"prompt": "x" * TEN_MB}
    response = {"text": "é" * (TEN_MB // 2)}
    raw = bytes(range(256)) * (TEN_MB // 256)
    index = ledger.record_call(world["state"], call_type="llm", request=request, response=response)
    raw_ref = ledger.store_bytes(raw)

    events = ledger.app.events.get(UUID(world["state"]))
    (call,) = [e for e in events if isinstance(e, NodeState.CallRecorded)]
    assert (index, call.request_hash, call.response_hash) == (
        0,
        digest_of(request),
        digest_of(response),
    )
    assert ledger.payload(call.request_ref) == rfc8785.dumps(request)
    assert ledger.payload(call.response_ref) == rfc8785.dumps(response)
    assert ledger.payload(raw_ref) == raw
    assert raw_ref == hashlib.sha256(raw).hexdigest()


def test_payload_bytes_that_no_longer_match_their_hash_are_refused_on_read(
    ledger: Ledger, world: dict[str, str]
) -> None:
    ref = ledger.store_bytes(b"the original bytes")
    tampered = {"hash": ref, "data": b"tampered bytes"}
    engine = getattr(ledger.payloads, "engine", None)
    if engine is None:
        ledger.payloads.purge([ref])  # the memory store takes new bytes for a purged hash
        ledger.payloads.put_many([Payload(data=tampered["data"], digest=ref)])
    else:
        from sqlalchemy import update

        from auditledger.adapters.storage.tables import payloads

        with engine.begin() as conn:
            conn.execute(update(payloads).where(payloads.c.hash == ref).values(data=b"tampered"))
    with pytest.raises(PayloadCorrupt) as raised:
        ledger.payload(ref)
    assert ref in str(raised.value)


def test_attachments_must_be_payloads_whose_digest_matches_their_bytes(
    ledger: Ledger, world: dict[str, str]
) -> None:
    request = {"q": "with attachments"}
    body = b"the raw body"
    lying = Payload(data=body, digest=hashlib.sha256(b"other bytes").hexdigest())
    for attachments in ([body], body, [lying], ["text"]):
        assert_refused(
            ledger,
            InvalidArgument,
            lambda: ledger.record_call(
                world["state"], call_type="http", request=request, attachments=attachments
            ),
            naming="attachments",
            payloads=(request,),
        )
    assert ledger.payloads.status(lying.digest) == "missing"
    good = Payload.of_bytes(body)
    ledger.record_call(world["state"], call_type="http", request=request, attachments=[good])
    assert ledger.payload(good.digest) == body
