"""The llm summary of an OpenAI-compatible exchange: the SQL-usable facts beside the bytes.

Keys (all present, null when the provider did not say; see docs/calls.md): provider,
endpoint, model, prompt_tokens, completion_tokens, total_tokens, cached_tokens,
reasoning_tokens, finish_reason, service_tier, via_batch, custom_id.
A 2xx whose JSON body does not parse is an error call (MalformedResponse): the exchange
happened, but its result is unusable, and the ledger says so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from auditledger.adapters.calls.exchange import Exchange

SUMMARY_KEYS = (
    "provider",
    "endpoint",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "finish_reason",
    "service_tier",
    "via_batch",
    "custom_id",
)


def ends_event_stream(body: bytes) -> bool:
    """An OpenAI event stream is whole once `data: [DONE]` arrived (the SDK stops there)."""
    return body.rstrip().endswith(b"data: [DONE]")


def summarise_exchange(
    exchange: Exchange,
) -> tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]:
    """(summary, error) for a complete 2xx exchange of the openai SDK."""
    assert exchange.response is not None
    content_type = exchange.response.headers.get("content-type", "")
    endpoint = exchange.request.url.path
    try:
        data = exchange.decoded_body()
    except httpx.DecodingError as problem:
        return None, {"type": "MalformedResponse", "message": f"undecodable body: {problem}"}
    if content_type.startswith("text/event-stream"):
        return summarise_body(_merge_stream(data), endpoint=endpoint), None
    media = content_type.split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        return None, None  # JSONL, octet-stream, text: recorded, not summarised
    try:
        body = json.loads(data)
    except ValueError as problem:
        return None, {
            "type": "MalformedResponse",
            "message": f"a {media} body that is not JSON: {problem}",
        }
    if not isinstance(body, dict) or not ("usage" in body or "choices" in body):
        return None, None
    return summarise_body(body, endpoint=endpoint), None


def summarise_body(
    body: Mapping[str, Any],
    *,
    endpoint: str | None,
    via_batch: bool = False,
    custom_id: str | None = None,
) -> dict[str, Any]:
    usage = _mapping(body.get("usage"))
    prompt_details = _mapping(
        usage.get("prompt_tokens_details") or usage.get("input_tokens_details")
    )
    completion_details = _mapping(
        usage.get("completion_tokens_details") or usage.get("output_tokens_details")
    )
    choices = body.get("choices")
    first = choices[0] if isinstance(choices, list) and choices else {}
    return {
        "provider": "openai",
        "endpoint": endpoint,
        "model": body.get("model"),
        "prompt_tokens": _first(usage, "prompt_tokens", "input_tokens"),
        "completion_tokens": _first(usage, "completion_tokens", "output_tokens"),
        "total_tokens": usage.get("total_tokens"),
        "cached_tokens": prompt_details.get("cached_tokens"),
        "reasoning_tokens": completion_details.get("reasoning_tokens"),
        "finish_reason": _mapping(first).get("finish_reason"),
        "service_tier": body.get("service_tier"),
        "via_batch": via_batch,
        "custom_id": custom_id,
    }


def _merge_stream(data: bytes) -> dict[str, Any]:
    """Fold server-sent chat chunks into one body: model, tier, usage, last finish reason."""
    merged: dict[str, Any] = {}
    for line in data.decode("utf-8", "replace").splitlines():
        if not line.startswith("data:") or line[5:].strip() == "[DONE]":
            continue
        try:
            chunk = json.loads(line[5:])
        except ValueError:
            continue
        if not isinstance(chunk, dict):
            continue
        for key in ("model", "service_tier", "usage"):
            if chunk.get(key) is not None:
                merged[key] = chunk[key]
        for choice in chunk.get("choices") or []:
            if isinstance(choice, dict) and choice.get("finish_reason") is not None:
                merged["choices"] = [{"finish_reason": choice["finish_reason"]}]
    return merged


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _first(mapping: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if mapping.get(key) is not None:
            return mapping[key]
    return None
