"""The fast canonical encoder gives exactly RFC 8785's bytes, so hashes never depend on it."""

from __future__ import annotations

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from auditledger.adapters.storage.canonical import canonical_json

SAFE = 2**53 - 1
texts = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12
) | st.sampled_from(
    ["\x00", "\x1f", "\x7f", '"', "\\", "\b\f\n\r\t", "\u2028", "é", "😀", "\ufeff", "\ue000"]
)
leaves = st.none() | st.booleans() | st.integers(-SAFE, SAFE) | texts
json_values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=25,
)


@settings(max_examples=400)
@given(json_values)
def test_every_json_value_without_floats_encodes_to_the_rfc_8785_bytes(value: object) -> None:
    assert canonical_json(value, "v") == rfc8785.dumps(value)


@given(st.dictionaries(texts, st.floats(allow_nan=False, allow_infinity=False), max_size=4))
def test_values_with_floats_still_encode_to_the_rfc_8785_bytes(value: object) -> None:
    assert canonical_json(value, "v") == rfc8785.dumps(value)


def test_keys_outside_the_basic_plane_sort_by_utf16_code_units_as_rfc_8785_says() -> None:
    value = {"\U0001f600": 1, "\uff61": 2, "a": 3}
    assert canonical_json(value, "v") == '{"a":3,"\U0001f600":1,"\uff61":2}'.encode()


def test_a_value_nested_past_the_fast_encoders_limit_still_encodes_to_the_rfc_8785_bytes() -> None:
    value: list[object] = []
    inner = value
    for _ in range(254):  # under MAX_DEPTH (256), past orjson's own nesting limit (253)
        inner.append([])
        inner = inner[-1]  # type: ignore[assignment]
    inner.append({"k": "leaf"})
    assert canonical_json(value, "v") == rfc8785.dumps(value)
