"""Canonical JSON (RFC 8785) and its sha256: the only way a JSON value becomes a hash here.

NaN, Infinity, bytes, sets, objects, integers beyond IEEE-754 precision and nesting deeper
than MAX_DEPTH are refused with NotCanonical before anything is written, never silently
converted.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import orjson
import rfc8785

from auditledger.domain.errors import InvalidArgument, NotCanonical

MAX_DEPTH = 256
_SAFE_INTEGER = 2**53 - 1


@dataclass(frozen=True)
class Payload:
    """Bytes to keep in the payload store, and their sha256 (the hash the events carry)."""

    data: bytes
    digest: str

    @classmethod
    def of_bytes(cls, data: bytes) -> Payload:
        return cls(data=bytes(data), digest=hashlib.sha256(data).hexdigest())

    @classmethod
    def of_json(cls, value: Any, what: str) -> Payload:
        return cls.of_bytes(canonical_json(value, what))


def checked_attachments(items: Any) -> list[Payload]:
    """Attachments are Payloads whose digest is the sha256 of their bytes, or refused."""
    if isinstance(items, (bytes, bytearray, str, Payload)):
        raise InvalidArgument("attachments", type(items).__name__, "a sequence of Payloads")
    checked = list(items)
    for item in checked:
        if not isinstance(item, Payload):
            raise InvalidArgument("attachments", type(item).__name__, "Payload.of_bytes(data)")
        actual = hashlib.sha256(item.data).hexdigest()
        if actual != item.digest:
            raise InvalidArgument(
                "attachments", item.digest, f"the bytes hash to {actual}, not to this digest"
            )
    return checked


def right_sized(data: bytes) -> bytes:
    """A right-sized copy of orjson's output: its bytes objects keep their working buffer
    allocated, so many kept payloads or events would pin far more memory than their size."""
    return memoryview(data).tobytes()


def canonical_json(value: Any, what: str) -> bytes:
    if _refuse_non_json(value, what):
        # Same bytes as RFC 8785 for this value (no floats, safe integers, ASCII keys,
        # exact built-in types, valid UTF-8), from orjson with sorted keys: the hot path of
        # every recorded call. The stdlib where orjson declines (past its nesting limit).
        try:
            return right_sized(orjson.dumps(value, option=orjson.OPT_SORT_KEYS))
        except orjson.JSONEncodeError:
            pass
        return json.dumps(
            value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
        ).encode("utf-8")
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as error:
        raise NotCanonical(what, str(error)) from None
    except RecursionError:
        raise NotCanonical(what, "nested too deeply for this thread's stack") from None


def canonical_text(value: Any, what: str) -> str:
    return canonical_json(value, what).decode("utf-8")


def _refuse_non_json(value: Any, what: str) -> bool:
    """Refuses what is not JSON; True when the standard encoder gives the RFC 8785 bytes."""
    simple = True
    stack: list[tuple[Any, Any, int]] = [(value, what, 0)]
    while stack:
        item, where, depth = stack.pop()
        kind = type(item)
        if kind is str:
            if item.isascii():
                continue
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise NotCanonical(
                    _path(where), "a string with lone surrogates is not UTF-8"
                ) from None
        elif kind is dict or kind is list or isinstance(item, (dict, list)):
            if depth >= MAX_DEPTH:
                raise NotCanonical(what, f"nested deeper than {MAX_DEPTH} levels")
            if kind is not dict and kind is not list:
                simple = False
            if isinstance(item, dict):
                for key, child in item.items():
                    if not isinstance(key, str):
                        raise NotCanonical(_path(where), f"object key {key!r} is not a string")
                    if type(key) is not str or not key.isascii():
                        simple = False
                    if not _plain_leaf(child):
                        stack.append((child, (where, ".", key), depth + 1))
            else:
                for i, child in enumerate(item):
                    if not _plain_leaf(child):
                        stack.append((child, (where, "[", i), depth + 1))
        elif kind is int:
            if not -_SAFE_INTEGER <= item <= _SAFE_INTEGER:
                simple = False
        elif item is None or kind is bool:
            continue
        elif isinstance(item, (bytes, bytearray, memoryview)):
            raise NotCanonical(
                _path(where), "bytes are not JSON; record raw bytes with store_bytes()"
            )
        elif isinstance(item, (bool, int, float, str)):
            simple = False  # floats (ECMAScript number form) and subclasses: the full encoder
        else:
            raise NotCanonical(_path(where), f"a {type(item).__name__} is not a JSON value")
    return simple


def _plain_leaf(value: Any) -> bool:
    """An ASCII str, None, a bool or a safe int: JSON as it is, nothing to look into (the
    leaves of most call JSON, so they never go through the walk's stack)."""
    kind = type(value)
    if kind is str:
        return value.isascii()  # type: ignore[no-any-return]
    if kind is int:
        return -_SAFE_INTEGER <= value <= _SAFE_INTEGER  # type: ignore[no-any-return]
    return value is None or kind is bool


def _path(where: Any) -> str:
    """Spells (parent, "." | "[", key) chains as `what.key[3]` only when an error needs it."""
    parts: list[str] = []
    while isinstance(where, tuple):
        where, sep, key = where
        parts.append(f".{key}" if sep == "." else f"[{key}]")
    return str(where) + "".join(reversed(parts))
