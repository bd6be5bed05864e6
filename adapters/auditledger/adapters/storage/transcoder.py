"""The event transcoder: the library's JSON, byte for byte, written by orjson where it can.

eventsourcing's JSONTranscoder builds a new stdlib encoder for every event and calls back
into Python for every UUID and datetime, a large share of recording an event. Our
events are flat (strings, integers, floats, booleans, None, UUIDs, datetimes, tuples of
strings), so here a flat state has its UUIDs and datetimes turned into the library's
{"_type_", "_data_"} objects and goes through orjson, whose output for such a state
is the library's own bytes: same key order, same separators, same string escapes, same
float digits. What
orjson would spell differently (floats below 1e-4, NaN, infinities), what it refuses
(integers beyond 64 bits, lone surrogates) and anything not flat goes through the
library's encoder instead. A property test holds the two to the same bytes. Decoding is
the library's.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.persistence import DatetimeAsISO, JSONTranscoder

from auditledger.adapters.storage.canonical import right_sized

_PLAIN = frozenset({str, int, bool, type(None)})
_TRANSCODED = frozenset({UUID, datetime, Decimal})
_ISO_ZONES = (None, UTC)  # where orjson's datetime text is isoformat()'s (a property test)


class LedgerTranscoder(JSONTranscoder):
    def encode(self, obj: Any) -> bytes:
        if type(obj) is dict:
            flat = self._flat(obj)
            if flat is not None:
                try:
                    return right_sized(orjson.dumps(flat))
                except orjson.JSONEncodeError:
                    pass  # an integer beyond 64 bits, a lone surrogate: as the library does
        return super().encode(obj)

    def _flat(self, state: dict[Any, Any]) -> dict[Any, Any] | None:
        """The state with UUIDs and datetimes as the library writes them, or None when it
        holds anything orjson would not spell exactly as the library does."""
        flat = None
        for key, value in state.items():
            kind = type(value)
            if kind in _PLAIN:
                continue
            if kind is tuple and all(type(item) is str for item in value):
                continue  # a call's attachment_hashes: a list of strings either way
            if kind is float:
                if value == 0.0 or 1e-4 <= abs(value) < math.inf:
                    continue
                return None  # orjson writes 0.00001 where Python writes 1e-05; NaN as null
            if kind in _TRANSCODED and kind in self.types:
                if flat is None:
                    flat = dict(state)
                if (
                    kind is datetime
                    and value.tzinfo in _ISO_ZONES
                    and type(self.types[datetime]) is DatetimeAsISO
                ):
                    # orjson writes datetime.isoformat()'s text itself: no Python call
                    flat[key] = {"_type_": self.types[datetime].name, "_data_": value}
                else:
                    flat[key] = self._encode_obj(value)
                continue
            return None
        return state if flat is None else flat
