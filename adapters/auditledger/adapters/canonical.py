"""Canonical JSON (RFC 8785) and its sha256: the only way a JSON value becomes a hash here.

NaN, Infinity, bytes, sets, objects, integers beyond IEEE-754 precision and nesting deeper
than MAX_DEPTH are refused with NotCanonical before anything is written, never silently
converted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import rfc8785

from auditledger.domain.errors import NotCanonical

MAX_DEPTH = 256


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


def canonical_json(value: Any, what: str) -> bytes:
    _refuse_non_json(value, what)
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as error:
        raise NotCanonical(what, str(error)) from None
    except RecursionError:
        raise NotCanonical(what, "nested too deeply for this thread's stack") from None


def canonical_text(value: Any, what: str) -> str:
    return canonical_json(value, what).decode("utf-8")


def _refuse_non_json(value: Any, what: str) -> None:
    stack = [(value, what, 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, (dict, list)) and depth >= MAX_DEPTH:
            raise NotCanonical(what, f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise NotCanonical(path, f"object key {key!r} is not a string")
                stack.append((child, f"{path}.{key}", depth + 1))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{i}]", depth + 1) for i, child in enumerate(item))
        elif isinstance(item, (bytes, bytearray, memoryview)):
            raise NotCanonical(path, "bytes are not JSON; record raw bytes with store_bytes()")
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise NotCanonical(path, "a string with lone surrogates is not UTF-8") from None
        elif item is None or isinstance(item, (bool, int, float)):
            continue
        else:
            raise NotCanonical(path, f"a {type(item).__name__} is not a JSON value")
