"""erase: a subject's payload bytes go, every hash, event, chain link and checkpoint stays;
verify and the chain verifier count them as erased; the minimum retention is kept."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from auditledger.adapters import Ledger
from auditledger.adapters.storage.canonical import Payload
from auditledger.adapters.tamper.raw_log import RawLog
from auditledger.adapters.tamper.signing import checkpoint_of
from auditledger.adapters.tamper.verifier import verify_chain
from auditledger.domain.erasure import Erasure
from auditledger.domain.errors import (
    InvalidArgument,
    PayloadErased,
    RetentionNotReached,
    UnknownRun,
    UnknownToken,
)
from auditledger.domain.payload_status import PayloadStatus
from auditledger.projections.verify import ERASED_PAYLOADS

SHARED = {"prompt": "the same input in both runs"}
SECRET = b"SECRET-BODY-7f3a91"


def record_run(ledger: Ledger, token: str, secret: bytes, attempt: int = 0) -> dict[str, str]:
    """A run with one state (shared input), a call with an attachment, an output."""
    run_id = ledger.begin_run({"model": "m", "run": len(secret)})
    state = ledger.open_state(
        run_id=run_id, token_id=token, node_id="classify", step_index=0, input=SHARED,
        attempt=attempt,
    )  # fmt: skip
    body = Payload.of_bytes(secret)
    ledger.record_call(
        state, call_type="llm", request={"q": token}, response={"a": secret.decode()},
        attachments=[body],
    )  # fmt: skip
    ledger.complete_state(state, output={"label": secret.decode()})
    call = ledger.recorded_calls(state)[0]
    return {
        "run": run_id,
        "state": state,
        "body": body.digest,
        "request": call.request_hash,
        "input": Payload.of_json(SHARED, "input").digest,
    }


def test_erasing_a_run_deletes_its_bytes_keeps_shared_ones_and_every_check_passes(
    store_url: str,
) -> None:
    with Ledger.open(store_url, retention_days=0) as ledger:
        first = record_run(ledger, "t1", SECRET)
        second = record_run(ledger, "t2", b"OTHER-BODY-5521")
        checkpoint = None
        if not store_url.startswith("memory"):
            with RawLog.open(store_url) as source:
                checkpoint = checkpoint_of(source.seal())
        result = ledger.erase(first["run"], reason="data subject request 42")
        assert result.payloads_erased >= 5 and result.bytes_erased > 0
        assert result.kept == 1 and not result.retention_overridden
        with pytest.raises(PayloadErased, match="data subject request 42") as erased:
            ledger.payload(first["body"])
        assert erased.value.erasure_id == result.erasure_id
        assert ledger.payloads.status(first["request"]) is PayloadStatus.ERASED
        assert ledger.payload(first["input"]) == ledger.payload(second["input"])  # shared: kept
        assert ledger.payload(second["body"]) == b"OTHER-BODY-5521"
        record = ledger.load(Erasure, result.erasure_id)
        assert first["body"] in record.erased_digests
        assert record.kept_digests == (first["input"],)
        assert record.reason == "data subject request 42"
        ledger.catch_up()
        report = ledger.verify()
        assert report.passed, [c for c in report.checks if not c.passed]
        assert next(c for c in report.checks if c.name == ERASED_PAYLOADS).checked == 3
    if checkpoint is None:
        return
    with RawLog.open(store_url) as source:
        source.seal()
        chain = verify_chain(source, [checkpoint], workers=1)
    assert chain.ok, chain.finding
    assert chain.payloads_erased == result.payloads_erased
    assert chain.payloads_purged == 0


def test_the_erased_bytes_are_gone_from_the_sqlite_files(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/audit"
    with Ledger.open(url, retention_days=0) as ledger:
        first = record_run(ledger, "t1", SECRET)
        record_run(ledger, "t2", b"OTHER-BODY-5521")
        ledger.erase(first["run"], reason="gdpr")
    files = b"".join(p.read_bytes() for p in (tmp_path / "audit").iterdir() if p.is_file())
    assert b"OTHER-BODY-5521" in files
    assert SECRET not in files
    assert SECRET not in _payload_bytes(url)


def _payload_bytes(url: str) -> bytes:
    with RawLog.open(url) as source, source.payloads_engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT data FROM payloads WHERE data IS NOT NULL").all()
    return b"".join(bytes(row[0]) for row in rows)


@pytest.mark.postgres
def test_the_erased_bytes_are_null_in_postgresql(postgres_url: str) -> None:
    with Ledger.open(postgres_url, retention_days=0) as ledger:
        first = record_run(ledger, "t1", SECRET)
        ledger.erase(first["run"], reason="gdpr")
    with psycopg.connect(postgres_url.replace("+psycopg", "")) as conn:
        row = conn.execute(
            "SELECT data, purged_at IS NOT NULL FROM payloads WHERE hash = %s", (first["body"],)
        ).fetchone()
        reason = conn.execute(
            "SELECT reason FROM payload_erasures WHERE hash = %s", (first["body"],)
        ).fetchone()
    assert row == (None, True) and reason == ("gdpr",)


def test_erasing_a_token_within_a_run_leaves_the_same_token_in_another_run(
    store_url: str,
) -> None:
    with Ledger.open(store_url, retention_days=0) as ledger:
        first = record_run(ledger, "t1", SECRET)
        second = record_run(ledger, "t1", b"OTHER-BODY-5521", attempt=1)
        result = ledger.erase(first["run"], "t1", reason="token request")
        assert ledger.payloads.status(first["body"]) is PayloadStatus.ERASED
        assert ledger.payload(second["body"]) == b"OTHER-BODY-5521"
        config = ledger.load(Erasure, result.erasure_id)
        assert config.token_id == "t1" and str(config.run_id) == first["run"]
        everywhere = ledger.erase(token_id="t1", reason="all of it")
        assert ledger.payloads.status(second["body"]) is PayloadStatus.ERASED
        assert ledger.payloads.status(first["input"]) is PayloadStatus.ERASED
        assert everywhere.payloads_erased > 0


def test_records_younger_than_the_retention_are_refused_and_nothing_changes(
    store_url: str,
) -> None:
    with Ledger.open(store_url) as ledger:
        first = record_run(ledger, "t1", SECRET)
        before = ledger.log_position()
        with pytest.raises(RetentionNotReached, match=r"183\.00 days") as refused:
            ledger.erase(first["run"], reason="too early")
        assert refused.value.youngest_age.days == 0
        assert ledger.log_position() == before
        assert ledger.payload(first["body"]) == SECRET


def test_an_override_erases_young_records_and_is_recorded(store_url: str) -> None:
    with Ledger.open(store_url) as ledger:
        first = record_run(ledger, "t1", SECRET)
        result = ledger.erase(first["run"], reason="court order 7", override_retention=True)
        assert result.retention_overridden
        record = ledger.load(Erasure, result.erasure_id)
        assert record.retention_overridden and record.retention_days == 183
        assert ledger.payloads.status(first["body"]) is PayloadStatus.ERASED


def test_the_retention_comes_from_the_store_url(store_url: str) -> None:
    if store_url.startswith("postgresql"):
        url = f"{store_url}?retention_days=0"
    else:
        url = f"{store_url}{'' if '?' in store_url else '?'}retention_days=0"
    with Ledger.open(url) as ledger:
        assert ledger.retention.days == 0
        first = record_run(ledger, "t1", SECRET)
        assert not ledger.erase(first["run"], reason="ok").retention_overridden


def test_an_erasure_names_a_recorded_subject_and_a_reason(store_url: str) -> None:
    with Ledger.open(store_url, retention_days=0) as ledger:
        first = record_run(ledger, "t1", SECRET)
        before = ledger.log_position()
        with pytest.raises(UnknownRun):
            ledger.erase("8c5e3a3e-0000-4000-8000-000000000000", reason="r")
        with pytest.raises(UnknownToken):
            ledger.erase(token_id="nobody", reason="r")
        with pytest.raises(InvalidArgument, match="reason"):
            ledger.erase(first["run"], reason="  ")
        with pytest.raises(InvalidArgument, match="subject"):
            ledger.erase(reason="r")
        assert ledger.log_position() == before
        assert ledger.payload(first["body"]) == SECRET
