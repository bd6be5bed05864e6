"""Value rules shared by the aggregates: digests, names, counters, durations, moments.

Commands never compute a digest from bytes (that is I/O's side); they only insist that
what they are given has the shape of one, so no event can carry a malformed hash.

Every value a command accepts is one every backend's landscape can hold: text is UTF-8
(no lone surrogates, no NUL in names), whole numbers fit a 32-bit INTEGER column, moments
stay within years 1..9999 once converted to UTC, inline text is at most MAX_INLINE_BYTES of UTF-8.
So a fact the ledger accepts can always be projected.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

from .errors import InvalidArgument

_DIGEST = re.compile(r"[0-9a-f]{64}")

MAX_INLINE_BYTES = 1024 * 1024
"""The most an inline text field of an event (an error, a config, a summary, a reason) holds,
in UTF-8 bytes, on every backend. Bigger data belongs in a payload: its hash goes inline."""

MAX_COUNT = 2**31 - 1
"""The largest whole number a landscape INTEGER column holds on every backend."""


def require_digest(name: str, value: object) -> str:
    if not isinstance(value, str) or _DIGEST.fullmatch(value) is None:
        raise InvalidArgument(name, value, "a sha256 digest is 64 lowercase hex characters")
    return value


def optional_digest(name: str, value: object) -> str | None:
    return None if value is None else require_digest(name, value)


def is_utf8(text: str) -> bool:
    """False for a string with lone surrogates, which no store can encode."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def require_name(name: str, value: object, *, max_length: int = 512) -> str:
    if (
        not isinstance(value, str)
        or not value
        or len(value) > max_length
        or "\x00" in value
        or not is_utf8(value)
    ):
        raise InvalidArgument(
            name, value, f"a non-empty UTF-8 string of at most {max_length} characters, no NUL"
        )
    return value


def optional_name(name: str, value: object, *, max_length: int = 512) -> str | None:
    return None if value is None else require_name(name, value, max_length=max_length)


def optional_datetime(name: str, value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidArgument(name, value, "a datetime")
    if value.tzinfo is not None:
        try:
            value.astimezone(UTC)
        except (OverflowError, ValueError):
            raise InvalidArgument(
                name, value, "a moment whose UTC time falls within years 1..9999"
            ) from None
    return value


def require_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise InvalidArgument(name, value, f"a whole number from 0 to {MAX_COUNT:,}")
    return value


def optional_duration(name: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(name, value, "a number of milliseconds >= 0")
    try:
        as_float = float(value)
    except OverflowError:
        as_float = math.inf
    if not math.isfinite(as_float) or as_float < 0:
        raise InvalidArgument(name, value, "a finite number of milliseconds >= 0")
    return as_float


def require_choice(name: str, value: object, choices: frozenset[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise InvalidArgument(name, value, f"one of {', '.join(sorted(choices))}")
    return str(value)


def require_inline(name: str, value: object) -> str:
    """Inline JSON or text: a non-empty UTF-8 string, no NUL, at most MAX_INLINE_BYTES."""
    if not isinstance(value, str) or not value or "\x00" in value or not is_utf8(value):
        raise InvalidArgument(name, value, "a non-empty UTF-8 string, no NUL")
    if len(value) * 4 > MAX_INLINE_BYTES:  # only then can it be too long: measure it
        size = len(value.encode("utf-8"))
        if size > MAX_INLINE_BYTES:
            raise InvalidArgument(
                name,
                value,
                f"an inline field holds at most {MAX_INLINE_BYTES} bytes (1 MiB) of UTF-8, "
                f"this one has {size}; keep bigger data as a payload (store_bytes, "
                "attachments) and refer to its hash",
            )
    return value


def optional_inline(name: str, value: object) -> str | None:
    return None if value is None else require_inline(name, value)
