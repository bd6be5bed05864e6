"""Tamper evidence, case by case: what the chain proves, what a checkpoint adds, purge."""

from __future__ import annotations

import hashlib
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text

from auditledger.adapters import Ledger
from auditledger.adapters.tamper import verifier as chain_verify
from auditledger.adapters.tamper.chain_format import GENESIS, Checkpoint, link
from auditledger.adapters.tamper.purge import parse_age, purge_payloads
from auditledger.adapters.tamper.raw_log import RawLog
from auditledger.adapters.tamper.signing import Key, checkpoint_of
from auditledger.adapters.tamper.verifier import verify_chain
from auditledger.domain.errors import InvalidArgument, StoreError
from auditledger.domain.node_state import NodeState
from auditledger.domain.run import Run
from tests.support.chain_support import RawStore, Token, record_history

HISTORY = [Token((1, 2), "completed", True), Token((3,), "failed", True), Token((), "open", False)]


@pytest.fixture
def url(tmp_path: Path) -> str:
    store = f"sqlite:///{tmp_path}/store"
    record_history(store, HISTORY, seed=1)
    return store


def _seal(url: str) -> Checkpoint:
    with RawLog.open(url) as source:
        return checkpoint_of(source.seal())


def _verify(url: str, checkpoints: list[Checkpoint] = [], **options):  # type: ignore[no-untyped-def]  # noqa: B006
    with RawLog.open(url) as source:
        return verify_chain(source, checkpoints, **options)


def test_an_altered_chain_entry_is_told_apart_from_an_altered_event(url: str) -> None:
    _seal(url)
    raw = RawStore(url)
    with raw.events.begin() as conn:
        conn.execute(text("UPDATE chain SET chain_hash = :h WHERE position = 4"), {"h": "0" * 64})
    raw.close()
    finding = _verify(url).finding
    assert (finding.position, finding.kind) == (4, "chain-modified")


def test_a_log_walked_in_segments_by_worker_processes_gives_the_single_walks_report(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = _seal(url)
    segmented = []
    original = chain_verify.walk_segments

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        segmented.append(args[2])
        return original(*args, **kwargs)

    monkeypatch.setattr(chain_verify, "walk_segments", spy)
    parallel = {"workers": 3, "parallel_threshold": 2, "batch": 2}
    clean = _verify(url, [checkpoint], **parallel)
    assert clean == _verify(url, [checkpoint], workers=1, batch=2)
    assert clean.ok and clean.events_checked == checkpoint.position
    raw = RawStore(url)
    late = raw.positions()[-2]
    raw.flip_event_byte(late, 7)
    raw.close()
    broken = _verify(url, [checkpoint], **parallel)
    assert broken == _verify(url, [checkpoint], workers=1, batch=2)
    assert (broken.finding.position, broken.finding.kind) == (late, "modified")
    assert len(segmented) == 2 and all(len(starts) == 2 for starts in segmented)


def test_payload_bytes_deleted_without_a_purge_are_missing_not_purged(url: str) -> None:
    _seal(url)
    raw = RawStore(url)
    digest = raw.payload_digests()[0]
    first = min(p for p, state in raw.states() if digest.encode() in state)
    with raw.payloads.begin() as conn:
        conn.execute(text("UPDATE payloads SET data = NULL WHERE hash = :h"), {"h": digest})
    raw.close()
    finding = _verify(url).finding
    assert (finding.position, finding.kind) == (first, "payload-missing")


def test_a_rewritten_and_rechained_history_is_caught_only_by_a_checkpoint(url: str) -> None:
    checkpoint = _seal(url)
    raw = RawStore(url)
    raw.flip_event_byte(3, 40)
    with raw.events.begin() as conn:
        conn.execute(text("DELETE FROM chain"))
    raw.close()
    _seal(url)  # whoever can write the tables can recompute an unkeyed chain

    assert _verify(url).ok
    finding = _verify(url, [checkpoint]).finding
    assert (finding.position, finding.kind) == (checkpoint.position, "rewritten")


def test_verifying_from_a_trusted_checkpoint_checks_only_what_follows(url: str) -> None:
    trusted = _seal(url)
    record_history(url, [Token((7,), "completed", False)], seed=2, prefix="later")
    _seal(url)
    raw = RawStore(url)
    raw.flip_event_byte(2, 10)
    raw.close()
    report = _verify(url, trusted=trusted)
    assert report.ok and report.events_checked == len(RawStore(url).positions()) - trusted.position
    assert _verify(url).finding.position == 2


def test_two_checkpoints_prove_the_log_only_grew_between_them(url: str) -> None:
    old = _seal(url)
    record_history(url, [Token((5, 6), "completed", False)], seed=3, prefix="later")
    new = _seal(url)
    assert _verify(url, [old, new], until=new.position).checkpoints_checked == 2
    forged_old = Checkpoint(old.position, link(GENESIS, 1, "x", "y", 1, b"").hex(), "then")
    finding = _verify(url, [forged_old, new]).finding
    assert (finding.position, finding.kind) == (old.position, "rewritten")


def test_a_checkpoint_signed_with_another_key_fails_verification(url: str) -> None:
    checkpoint = checkpoint_of(RawLog.open(url).seal(), Key("hmac-sha256", secret=b"ours"))
    assert _verify(url, [checkpoint], signature_check=Key("hmac-sha256", secret=b"ours").check).ok
    finding = _verify(
        url, [checkpoint], signature_check=Key("hmac-sha256", secret=b"theirs").check
    ).finding
    assert finding.kind == "bad-signature"


def test_purge_deletes_old_payload_bytes_and_verify_reports_them_purged(url: str) -> None:
    checkpoint = _seal(url)
    with RawLog.open(url) as source:
        nothing = purge_payloads(source, timedelta(days=30))
        result = purge_payloads(
            source, timedelta(0), now=datetime.now(UTC) + timedelta(1), retention=timedelta(0)
        )
    assert nothing.purged == 0
    assert result.purged == len(RawStore(url).payload_digests())

    report = _verify(url, [checkpoint])
    assert report.ok, str(report.finding)
    assert report.payloads_purged == report.payloads_checked > 0


def test_purging_one_run_keeps_bytes_another_run_still_names(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/two-runs"
    with Ledger.open(store) as ledger:
        first = ledger.begin_run({"shared": True})
        ledger.begin_run({"shared": True})
        state = ledger.open_state(
            run_id=first, token_id="t", node_id="n", step_index=0, input={"only": "first"}
        )
        input_hash = ledger.load(NodeState, state).input_hash
        config_hash = ledger.load(Run, first).config_hash
    with RawLog.open(store) as source:
        purge_payloads(
            source, timedelta(0), run_id=first, now=datetime.now(UTC) + timedelta(1),
            retention=timedelta(0),
        )  # fmt: skip
    with Ledger.open(store) as ledger:
        assert ledger.payloads.status(input_hash) == "purged"
        assert ledger.payloads.status(config_hash) == "present"


def test_explain_shows_a_purged_payload_as_purged_with_its_hash(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/explained"
    with Ledger.open(store) as ledger:
        run = ledger.begin_run()
        state = ledger.open_state(run_id=run, token_id="t", node_id="n", step_index=0)
        ledger.record_call(state, call_type="llm", request={"q": 1}, response={"a": 1})
    with RawLog.open(store) as source:
        purge_payloads(
            source, timedelta(0), now=datetime.now(UTC) + timedelta(1), retention=timedelta(0)
        )
    with Ledger.open(store) as ledger:
        ledger.catch_up()
        (call,) = ledger.explain(state_id=state).runs[0].states[0].calls
    assert call.request_payload == "purged" and len(call.request_hash) == 64
    assert call.response_payload == "purged" and call.response_hash is not None


def test_an_age_is_a_number_and_a_unit() -> None:
    assert parse_age("30d") == timedelta(days=30)
    assert parse_age("12h") == timedelta(hours=12)
    with pytest.raises(InvalidArgument, match="older_than"):
        parse_age("30 days")


def test_tamper_evidence_refuses_an_in_memory_store() -> None:
    with pytest.raises(StoreError, match="memory://"):
        RawLog.open("memory://")


@pytest.mark.postgres
def test_sealing_waits_for_an_insert_still_in_flight_and_never_passes_its_gap(
    postgres_url: str,
) -> None:
    record_history(postgres_url, [Token((1,), "completed", False)], seed=4)
    late = psycopg.connect(postgres_url)
    late.execute(
        "INSERT INTO auditledger_events (originator_id, originator_version, topic, state) "
        "VALUES (gen_random_uuid(), 1, 'auditledger:Run.RunStarted:v1', '{}')"
    )  # draws a notification id, not committed yet
    with psycopg.connect(postgres_url, autocommit=True) as other:
        other.execute(
            "INSERT INTO auditledger_events (originator_id, originator_version, topic, state) "
            "VALUES (gen_random_uuid(), 1, 'auditledger:Run.RunStarted:v1', '{}')"
        )  # a later id, committed first
        sealed: list[int] = []
        sealer = threading.Thread(
            target=lambda: sealed.append(RawLog.open(postgres_url).seal().position)
        )
        sealer.start()
        for _ in range(600):
            waiting = other.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND query LIKE 'LOCK TABLE auditledger_events%'"
            ).fetchone()
            if waiting and waiting[0]:
                break
            sealer.join(0.05)
        assert sealer.is_alive(), "the sealer did not wait for the open insert"
        late.commit()
        sealer.join(60)
    late.close()
    assert sealed and _verify(postgres_url).ok
    assert _verify(postgres_url).sealed_position == sealed[0]


@pytest.mark.postgres
def test_a_landscape_rebuild_in_the_same_database_leaves_the_chain_alone(
    postgres_url: str,
) -> None:
    record_history(postgres_url, HISTORY, seed=5)
    checkpoint = _seal(postgres_url)
    with Ledger.open(postgres_url) as ledger:
        ledger.rebuild()
    report = _verify(postgres_url, [checkpoint])
    assert report.ok and report.sealed_position == checkpoint.position


@pytest.mark.parametrize(
    ("alteration", "kind", "words"),
    [
        ("UPDATE payloads SET data = :bytes WHERE hash = :h", "payload-tampered", "hash to {}"),
        ("DELETE FROM payloads WHERE hash = :h", "payload-missing", "has no row"),
        (
            "UPDATE payloads SET data = NULL WHERE hash = :h",
            "payload-missing",
            "lost its bytes without a purge",
        ),
    ],
)
def test_a_payload_finding_says_whether_its_bytes_were_altered_lost_or_never_there(
    url: str, alteration: str, kind: str, words: str
) -> None:
    _seal(url)
    raw = RawStore(url)
    digest = raw.payload_digests()[0]
    position = min(p for p, state in raw.states() if digest.encode() in state)
    with raw.payloads.begin() as conn:
        conn.execute(text(alteration), {"h": digest, "bytes": b"altered"})
    raw.close()
    finding = _verify(url).finding
    assert (finding.position, finding.kind) == (position, kind)
    assert digest in finding.detail
    assert words.format(hashlib.sha256(b"altered").hexdigest()) in finding.detail


def test_the_former_name_log_source_still_opens_the_raw_log(url: str) -> None:
    from auditledger.adapters.tamper.raw_log import LogSource, RawEvent

    assert LogSource is RawLog
    with LogSource.open(url) as source:
        first = next(iter(source.events()))[0]
    assert isinstance(first, RawEvent) and first.position == 1
