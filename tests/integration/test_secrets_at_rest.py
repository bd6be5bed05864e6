"""No credential a caller sent reaches the disk: every byte of an SQLite directory, and a
pg_dump of a PostgreSQL database, is scanned for the secret values after recording calls
that carry them in query strings, in headers, in openai's default_query and in the message
of a failed request. Markers sent alongside show the scan sees what was recorded."""

from __future__ import annotations

import subprocess
from pathlib import Path
from uuid import uuid4

import httpx
import pytest

from auditledger.adapters import Ledger
from auditledger.adapters.demo.fake_provider import FakeOpenAI
from auditledger.adapters.demo.provider_server import serving

SECRETS = {
    name: f"s3cr3t{name}{uuid4().hex[:12]}"
    for name in (
        "apikeyq",
        "keyq",
        "googheader",
        "apimheader",
        "authtokenheader",
        "bearer",
        "defaultquery",
        "failedkey",
    )
}
MARKERS = ("visiblemarker0a1b2c", "failedmarker3d4e5f")
HEADERS = {
    "x-goog-api-key": "googheader",
    "Ocp-Apim-Subscription-Key": "apimheader",
    "X-Auth-Token": "authtokenheader",
}


def forms(value: str) -> list[bytes]:
    """The value as text, and hex-encoded as pg_dump writes bytea."""
    return [value.encode(), value.encode().hex().encode()]


def refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError(f"cannot connect to {request.url}", request=request)


def record_calls_carrying_secrets(url: str) -> None:
    with Ledger.open(url) as ledger, serving(FakeOpenAI()) as server:
        run_id = ledger.begin_run(config={})
        state = ledger.open_state(run_id=run_id, token_id="t", node_id="n", step_index=0)
        with ledger.http_client(state) as http:
            http.get(f"{server.origin}/json/a?api_key={SECRETS['apikeyq']}&q={MARKERS[0]}")
            http.get(f"{server.origin}/json/b", params={"key": SECRETS["keyq"]})
            for header, secret in HEADERS.items():
                http.get(f"{server.origin}/json/h", headers={header: SECRETS[secret]})
        llm = ledger.openai(
            state,
            api_key=SECRETS["bearer"],
            base_url=server.base_url,
            default_query={"api-key": SECRETS["defaultquery"]},
            max_retries=0,
        )
        llm.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        failing = f"https://api.example/v1?key={SECRETS['failedkey']}&q={MARKERS[1]}"
        with (
            ledger.http_client(state, transport=httpx.MockTransport(refuse)) as http,
            pytest.raises(httpx.ConnectError),
        ):
            http.get(failing)
        ledger.catch_up()  # the landscape's calls rows, error_json included


def assert_only_markers_in(stored: bytes, where: str) -> None:
    for marker in MARKERS:
        assert any(form in stored for form in forms(marker)), f"{marker} not in {where}"
    leaked = [name for name, value in SECRETS.items() if any(f in stored for f in forms(value))]
    assert leaked == [], f"secrets {leaked} stored in {where}"


def test_an_sqlite_directory_holds_no_secret(tmp_path: Path) -> None:
    directory = tmp_path / "ledger"
    record_calls_carrying_secrets(f"sqlite:///{directory}")
    files = [path for path in directory.rglob("*") if path.is_file()]
    assert files
    assert_only_markers_in(b"".join(path.read_bytes() for path in files), str(directory))


@pytest.mark.postgres
def test_a_pg_dump_holds_no_secret(postgres_url: str) -> None:
    record_calls_carrying_secrets(postgres_url)
    database = postgres_url.rsplit("/", 1)[1]
    dump = subprocess.run(
        ["pg_dump", "-h", "127.0.0.1", "-U", "postgres", database],
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout
    assert_only_markers_in(dump, f"pg_dump {database}")
