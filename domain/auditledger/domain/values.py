"""Value rules shared by the aggregates: digests, names, counters, durations.

Commands never compute a digest from bytes (that is I/O's side); they only insist that
what they are given has the shape of one, so no event can carry a malformed hash.
"""

from __future__ import annotations

import math
import re
from datetime import datetime

from .errors import InvalidArgument

_DIGEST = re.compile(r"[0-9a-f]{64}")


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
