"""Every byte a call stores is under the proofs: HTTP bodies and multipart parts included.

A call's attachments are named by its CallRecorded event (`attachment_hashes`), so the hash
chain covers them; verify, the independent verifier and purge all see them. Tampered with
raw SQL, as someone with write access to the database would.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text

from auditledger.adapters import Ledger
from auditledger.adapters.tamper.purge import purge_payloads
from auditledger.adapters.tamper.raw_log import RawLog
from auditledger.adapters.tamper.verifier import verify_chain
from tests.support.chain_support import RawStore

PROMPT = b'{"prompt": "the whole prompt, an attachment"}'
COMPLETION = b'{"completion": "the whole completion, an attachment"}'
PROMPT_HASH = hashlib.sha256(PROMPT).hexdigest()
COMPLETION_HASH = hashlib.sha256(COMPLETION).hexdigest()


@pytest.fixture
def url(shared_url: str) -> str:
    return shared_url


@pytest.fixture
def recorded(url: str) -> Iterator[tuple[str, str]]:
    """One HTTP call through the audited transport, sealed: (state id, call id)."""
    with Ledger.open(url) as ledger:
        run = ledger.begin_run({})
        state = ledger.open_state(run_id=run, token_id="t", node_id="llm", step_index=0)
        transport = httpx.MockTransport(lambda _: httpx.Response(200, content=COMPLETION))
        with ledger.http_client(state, transport=transport) as client:
            client.post("https://provider.test/v1/chat", content=PROMPT)
        call_id = _call_id(ledger, state)
    with RawLog.open(url) as source:
        source.seal()
    yield state, call_id


def _call_id(ledger: Ledger, state: str) -> str:
    ledger.catch_up()
    (call,) = ledger.explain(state_id=state).runs[0].states[0].calls
    return call.call_id


def _chain(url: str):  # type: ignore[no-untyped-def]
    with RawLog.open(url) as source:
        return verify_chain(source, workers=1)


def _landscape_findings(url: str) -> list[str]:
    with Ledger.open(url) as ledger:
        ledger.catch_up()
        report = ledger.verify(diff=False)
    (payloads,) = (c for c in report.checks if c.name.startswith("every payload ref"))
    assert payloads.passed == (not payloads.examples)
    return payloads.examples


def _edit(url: str, statement: str, **params: object) -> None:
    raw = RawStore(url)
    try:
        with raw.payloads.begin() as conn:
            conn.execute(text(statement), params)
    finally:
        raw.close()


def test_a_call_event_names_its_request_and_response_bodies(
    url: str, recorded: tuple[str, str]
) -> None:
    del recorded
    raw = RawStore(url)
    try:
        call_states = [s for _, s in raw.states() if b'"call_index"' in s]
    finally:
        raw.close()
    (state,) = call_states
    assert f'"attachment_hashes":["{PROMPT_HASH}","{COMPLETION_HASH}"]'.encode() in state
    report = _chain(url)
    assert report.ok, str(report.finding)
    assert _landscape_findings(url) == []


def test_an_edited_body_is_named_corrupt_by_verify_and_the_chain_verifier(
    url: str, recorded: tuple[str, str]
) -> None:
    _, call_id = recorded
    _edit(url, "UPDATE payloads SET data = :d WHERE hash = :h", d=b"forged", h=COMPLETION_HASH)

    report = _chain(url)
    assert report.finding is not None
    assert report.finding.kind == "payload-tampered"
    assert COMPLETION_HASH in report.finding.detail
    assert f"attachment_hashes of call {call_id}" in report.finding.detail

    (finding,) = _landscape_findings(url)
    assert finding.startswith(f"call {call_id} attachment {COMPLETION_HASH}: the stored bytes")


def test_a_deleted_body_row_is_named_missing_by_verify_and_the_chain_verifier(
    url: str, recorded: tuple[str, str]
) -> None:
    _, call_id = recorded
    _edit(url, "DELETE FROM payloads WHERE hash = :h", h=PROMPT_HASH)

    report = _chain(url)
    assert report.finding is not None
    assert report.finding.kind == "payload-missing"
    assert f"attachment_hashes of call {call_id}" in report.finding.detail
    assert "has no row" in report.finding.detail

    assert _landscape_findings(url) == [
        f"call {call_id} attachment {PROMPT_HASH}: the payload is missing"
    ]


def test_purge_deletes_the_bodies_too_and_both_verifiers_count_them_purged(
    url: str, recorded: tuple[str, str]
) -> None:
    with RawLog.open(url) as source:
        purge_payloads(
            source, timedelta(0), now=datetime.now(UTC) + timedelta(seconds=1),
            retention=timedelta(0),
        )  # fmt: skip
    raw = RawStore(url)
    try:
        with raw.payloads.connect() as conn:
            rows = dict(
                conn.execute(
                    text("SELECT hash, data FROM payloads WHERE hash IN (:p, :c)"),
                    {"p": PROMPT_HASH, "c": COMPLETION_HASH},
                ).all()
            )
    finally:
        raw.close()
    assert rows == {PROMPT_HASH: None, COMPLETION_HASH: None}  # hashes kept, bytes gone

    report = _chain(url)
    assert report.ok, str(report.finding)
    assert report.payloads_purged == report.payloads_checked
    assert _landscape_findings(url) == []
