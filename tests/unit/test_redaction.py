"""Credentials in query strings, headers and exception messages never reach the call JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from uuid import UUID

import httpx
import pytest

from auditledger.adapters import Ledger
from auditledger.adapters.calls.exchange import REDACTED, error_json, is_secret, safe_url
from auditledger.adapters.calls.replay import RecordedCall, recorded_calls

SECRET = "gk-5ec12e7-query-secret"


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    with Ledger.open("memory://") as opened:
        yield opened


@pytest.fixture
def state(ledger: Ledger) -> str:
    run_id = ledger.begin_run(config={})
    return ledger.open_state(run_id=run_id, token_id="t", node_id="fetch", step_index=0)


def calls(ledger: Ledger, parent: str) -> list[RecordedCall]:
    return recorded_calls(ledger, UUID(parent))


@pytest.mark.parametrize(
    "name",
    [
        "api_key",
        "key",
        "api-key",
        "apiKey",
        "x-goog-api-key",
        "Ocp-Apim-Subscription-Key",
        "X-Auth-Token",
        "access_token",
        "client_secret",
        "X-Amz-Signature",
        "sig",
        "password",
        "X-Amz-Credential",
        "PHPSESSID",
        "sessionid",
        "Set-Cookie",
        "Authorization",
    ],
)
def test_a_name_that_names_a_credential_is_secret_in_any_case(name: str) -> None:
    assert is_secret(name)
    assert is_secret(name.upper())


@pytest.mark.parametrize(
    "name", ["q", "model", "content-type", "max_tokens", "x-ratelimit-remaining-tokens"]
)
def test_ordinary_names_and_token_counts_are_kept(name: str) -> None:
    assert not is_secret(name)


def test_the_callers_own_names_are_secret_too() -> None:
    assert not is_secret("x-tenant")
    assert is_secret("X-Tenant", frozenset({"x-tenant"}))


def test_a_secret_query_value_is_replaced_and_its_name_and_the_rest_kept() -> None:
    url = httpx.URL(f"https://api.example/v1/x?api_key={SECRET}&q=kept&key={SECRET}#token={SECRET}")
    assert safe_url(url) == (
        f"https://api.example/v1/x?api_key={REDACTED}&q=kept&key={REDACTED}#token={REDACTED}"
    )


def test_a_parameter_the_caller_names_is_redacted() -> None:
    url = httpx.URL(f"https://api.example/?tenant={SECRET}")
    assert safe_url(url, frozenset({"tenant"})) == f"https://api.example/?tenant={REDACTED}"


def test_an_exception_message_naming_the_url_is_stored_redacted() -> None:
    request = httpx.Request("GET", f"https://api.example/v1?key={SECRET}")
    error = httpx.ConnectError(f"cannot reach {request.url}", request=request)
    assert error_json(error)["message"] == f"cannot reach https://api.example/v1?key={REDACTED}"


def test_a_credential_the_failed_request_carried_is_scrubbed_wherever_the_message_has_it() -> None:
    request = httpx.Request("GET", "https://api.example/", headers={"X-Auth-Token": SECRET})
    error = httpx.LocalProtocolError(f"Illegal header value b'{SECRET}'", request=request)
    assert SECRET not in json.dumps(error_json(error))


def test_a_message_without_a_request_keeps_its_words() -> None:
    assert error_json(ValueError("no such file: a=b"))["message"] == "no such file: a=b"


def test_recorded_calls_keep_no_credential_from_query_headers_or_errors(
    ledger: Ledger, state: str
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/down":
            raise httpx.ConnectError(f"cannot reach {request.url}", request=request)
        location = f"https://cdn.example/blob?X-Amz-Signature={SECRET}"
        return httpx.Response(302, headers={"location": location})

    headers = {"x-goog-api-key": SECRET, "Ocp-Apim-Subscription-Key": SECRET}
    with ledger.http_client(state, transport=httpx.MockTransport(answer)) as client:
        client.get(f"https://api.example/up?api_key={SECRET}&q=visible", headers=headers)
        with pytest.raises(httpx.ConnectError):
            client.get(f"https://api.example/down?key={SECRET}")
    up, down = calls(ledger, state)
    assert up.request["url"] == f"https://api.example/up?api_key={REDACTED}&q=visible"
    assert dict(up.request["headers"])["x-goog-api-key"] == REDACTED
    assert dict(up.response["headers"])["location"].endswith(f"X-Amz-Signature={REDACTED}")
    assert down.error["message"] == f"cannot reach https://api.example/down?key={REDACTED}"
    assert SECRET not in json.dumps([up.request, up.response, down.request, down.error])


def test_a_redacted_request_still_replays(ledger: Ledger, state: str) -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json={"ok": True}))
    with ledger.http_client(state, transport=transport) as client:
        client.get(f"https://api.example/x?api_key={SECRET}")
    with ledger.replay_http_client(state) as replay:
        assert replay.get(f"https://api.example/x?api_key={SECRET}").json() == {"ok": True}
