import hashlib
import json

from auditledger.domain.payload_status import (
    PayloadCheck,
    PayloadStatus,
    check,
    classify,
    without_bytes,
)

DATA = b'{"a":1}'
DIGEST = hashlib.sha256(DATA).hexdigest()


def test_bytes_that_hash_to_the_digest_are_present() -> None:
    assert classify(DIGEST, DATA, False) is PayloadStatus.PRESENT


def test_no_bytes_after_a_purge_are_purged_and_without_one_missing() -> None:
    assert classify(DIGEST, None, True) is PayloadStatus.PURGED
    assert classify(DIGEST, None, False) is PayloadStatus.MISSING


def test_altered_bytes_are_corrupt_and_name_the_digest_they_give() -> None:
    altered = b'{"a":2}'
    assert check(DIGEST, altered, False) == PayloadCheck(
        PayloadStatus.CORRUPT, hashlib.sha256(altered).hexdigest()
    )


def test_a_status_prints_and_serialises_as_the_stored_word() -> None:
    assert [str(s) for s in PayloadStatus] == ["present", "purged", "missing", "corrupt", "erased"]
    assert json.dumps({"p": PayloadStatus.PURGED}) == '{"p": "purged"}'
    assert PayloadStatus.PRESENT == "present"


def test_a_row_read_without_bytes_is_never_corrupt() -> None:
    assert without_bytes(True, False) is PayloadStatus.PRESENT
    assert without_bytes(False, True) is PayloadStatus.PURGED
    assert without_bytes(False, False) is PayloadStatus.MISSING
