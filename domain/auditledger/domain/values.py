"""Value rules shared by the aggregates: digests, names, counters, durations, inline text.

The domain never computes a digest from bytes (that is I/O's side); it only insists that
what it is given has the shape of one, so no event can carry a malformed hash.
"""

from __future__ import annotations

import math
import re
from datetime import datetime

from .errors import InvalidArgument

_DIGEST = re.compile(r"[0-9a-f]{64}")

MAX_INLINE_BYTES = 1024 * 1024
"""The most an inline text field of an event (an error, a config, a summary, a reason) holds,
in UTF-8 bytes, on every backend. Bigger data belongs in a payload: its hash goes inline."""


def require_digest(name: str, value: object) -> str:
    if not isinstance(value, str) or _DIGEST.fullmatch(value) is None:
        raise InvalidArgument(name, value, "a sha256 digest is 64 lowercase hex characters")
    return value


def optional_digest(name: str, value: object) -> str | None:
    return None if value is None else require_digest(name, value)


def require_name(name: str, value: object, *, max_length: int = 512) -> str:
    if not isinstance(value, str) or not value or len(value) > max_length or "\x00" in value:
        raise InvalidArgument(
            name, value, f"a non-empty string of at most {max_length} characters, no NUL"
        )
    return value


def optional_name(name: str, value: object, *, max_length: int = 512) -> str | None:
    return None if value is None else require_name(name, value, max_length=max_length)


def optional_datetime(name: str, value: object) -> datetime | None:
    if value is not None and not isinstance(value, datetime):
        raise InvalidArgument(name, value, "a datetime")
    return value


def require_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgument(name, value, "a whole number >= 0")
    return value


def optional_duration(name: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(name, value, "a number of milliseconds >= 0")
    if not math.isfinite(value) or value < 0:
        raise InvalidArgument(name, value, "a finite number of milliseconds >= 0")
    return float(value)


def require_choice(name: str, value: object, choices: frozenset[str]) -> str:
    if value not in choices:
        raise InvalidArgument(name, value, f"one of {', '.join(sorted(choices))}")
    return str(value)


def require_inline(name: str, value: object) -> str:
    """Inline JSON or text: a non-empty string, no NUL, at most MAX_INLINE_BYTES in UTF-8."""
    if not isinstance(value, str) or not value or "\x00" in value:
        raise InvalidArgument(name, _shown(value), "a non-empty string, no NUL")
    if len(value) * 4 > MAX_INLINE_BYTES:  # only then can it be too long: measure it
        size = len(value.encode("utf-8", "surrogatepass"))
        if size > MAX_INLINE_BYTES:
            raise InvalidArgument(
                name,
                f"<{size} bytes>",
                f"an inline field holds at most {MAX_INLINE_BYTES} bytes (1 MiB) of UTF-8; "
                "keep bigger data as a payload (store_bytes, attachments) and refer to its hash",
            )
    return value


def optional_inline(name: str, value: object) -> str | None:
    return None if value is None else require_inline(name, value)


def _shown(value: object) -> object:
    """A value as an error message may quote it: long text is cut, so is its repr."""
    if isinstance(value, str) and len(value) > 80:
        return f"{value[:60]}... <{len(value)} characters>"
    return value
