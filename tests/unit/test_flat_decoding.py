"""The fast decoder of elementary layouts (`indexer.event_abi._flat`) against eth_abi's
strict decoder, on any bytes at all: the same values (as rows carry them) where eth_abi
decodes, a refusal where it refuses."""

from __future__ import annotations

from typing import Any

from eth_abi import decode
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.event_abi import Param, _flat, _json, _reader

TYPES = ["uint8", "uint112", "uint256", "int8", "int24", "int256", "address", "bool",
         "bytes1", "bytes20", "bytes32", "bytes", "string"]  # fmt: skip


def word(value: int) -> bytes:
    return value.to_bytes(32, "big")


# data that is often nearly right: words of small values, of sign-extended negatives, of
# offsets and lengths, and random ones
words = st.one_of(
    st.integers(0, 300).map(word),
    st.integers(1, 2**64).map(lambda n: word(2**256 - n)),
    st.sampled_from([word(32), word(64), word(96), word(0), word(5)]),
    st.binary(min_size=32, max_size=32),
)


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from(TYPES), min_size=1, max_size=3), st.lists(words, max_size=6),
       st.binary(max_size=40))  # fmt: skip
def test_the_fast_decoder_agrees_with_eth_abi(
    types: list[str], chunks: list[bytes], tail: bytes
) -> None:
    data = b"".join(chunks) + tail
    params = tuple(Param(f"a{i}", t) for i, t in enumerate(types))
    wire = ["bytes" if t == "string" else t for t in types]
    try:
        expected: Any = list(decode(wire, data))
    except Exception:  # noqa: BLE001 - any refusal of eth_abi's
        expected = None
    try:
        got: Any = _flat([_reader(p) for p in params], data)
    except ValueError:
        got = None
    if expected is not None:
        expected = [_json(p, v) for p, v in zip(params, expected, strict=True)]
    assert got == expected
