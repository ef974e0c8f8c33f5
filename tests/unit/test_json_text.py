"""Compact JSON (`indexer.json_text`): orjson's output where it can, and nothing read or
written differently from the standard library."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from indexer import json_text

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(values)
def test_what_is_written_reads_back_as_the_standard_library_reads_it(value: object) -> None:
    text = json_text.dumps(value)
    assert json_text.loads(text) == json.loads(text) == json.loads(json.dumps(value))


def test_integers_of_any_size_are_read_exactly() -> None:
    text = '{"value": 18446744073709551616, "low": [-123456789012345678901], "s": "12"}'
    assert json_text.loads(text) == {
        "value": 2**64,
        "low": [-123456789012345678901],
        "s": "12",
    }
    assert json_text.loads(text.encode())["value"] == 2**64
    assert json_text.loads(str(-(2**70))) == -(2**70)  # a document of one number
    assert json_text.loads("[-9999999999999999999]") == [-9999999999999999999]  # < -2^63
    assert json_text.loads(b'\xef\xbb\xbf{"v": 12345678901234567890123}') == {
        "v": 12345678901234567890123
    }  # bytes with a byte-order mark, as the standard library reads them


def test_a_float_that_is_not_finite_is_written_as_null() -> None:
    """The standard library would write `Infinity`, which no JSON parser of a browser
    reads (a price too large for a float is null already: protocol._number)."""
    assert json_text.dumps({"x": float("inf"), "y": float("nan")}) == '{"x":null,"y":null}'
