"""Events from their ABI: human-readable signatures parsed to what the compiler emits,
and logs decoded to the values the contract was called with.

The oracle is the call: `TestEvents` (compiled with the pinned solc-js) emits each event
with its arguments, hypothesis varies them, and each decoded argument must equal the
value passed, normalised as docs/contracts.md says (integers as decimal strings,
addresses lowercase, bytes as hex, an indexed reference type as the keccak of its
encoding, computed here by hand)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from eth_utils import keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chainpulse.contracts import Contracts, artifacts
from chainpulse.devnet import Anvil
from indexer.event_abi import AbiError, EventAbi, LogMismatch, from_json, parse_signature

# As a user copies them from the Solidity source: structs spelled as tuples.
INNER = "(uint8 a, bytes32 b)"
OUTER = f"(string s, int256 i, {INNER}[] inners, address[2] pair)"
HUMAN = {
    "Integers": "event Integers(uint8 indexed u8, int8 indexed i8, uint256 u256, "
    "int256 i256, uint24 u24, int136 i136)",
    "Scalars": "event Scalars(address indexed who, bool indexed flag, bytes32 indexed tag, "
    "bytes1 b1, bytes20 b20, address other, bool on)",
    "Dynamic": "event Dynamic(string indexed label, bytes indexed blob, string text, bytes data)",
    "Arrays": "event Arrays(uint256[] indexed ids, uint256[] values, address[3] fixedAddrs, "
    "int16[][] nested, string[] names, bytes[2] blobs)",
    "Tuples": f"event Tuples({OUTER} indexed hashed, tuple{OUTER} outer, {INNER}[2] twoInners, "
    "uint)",
    "Overloaded(uint256)": "Overloaded(uint256 value)",
    "Overloaded(address,uint256)": "event Overloaded(address who, uint256 value)",
    "Anon": "event Anon(address indexed who, uint256 value) anonymous",
}
UNISWAP = {
    "UniswapV2Factory": [
        "PairCreated(address indexed token0, address indexed token1, address pair, uint256)"
    ],
    "UniswapV2Pair": [
        "event Swap(address indexed sender, uint256 amount0In, uint256 amount1In, "
        "uint256 amount0Out, uint256 amount1Out, address indexed to)",
        "event Sync(uint112 reserve0, uint112 reserve1)",
    ],
    "UniswapV3Pool": [
        "event Swap(address indexed sender, address indexed recipient, int256 amount0, "
        "int256 amount1, uint160 sqrtPriceX96, uint128 liquidity, int24 tick)"
    ],
}


def solc_event(contract: str, signature: str) -> dict[str, Any]:
    """The compiler's ABI JSON of one event, without `internalType` (which says which
    Solidity struct a tuple was, and no more)."""

    def plain(item: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in item.items() if k != "internalType"}
        if "components" in out:
            out["components"] = [plain(c) for c in out["components"]]
        return out

    for item in artifacts()[contract]["abi"]:
        if item["type"] == "event" and from_json(item).signature == signature:
            return {**plain(item), "inputs": [plain(i) for i in item["inputs"]]}
    raise KeyError(signature)


def events_abi() -> dict[str, EventAbi]:
    found = {}
    for item in artifacts()["TestEvents"]["abi"]:
        if item["type"] == "event":
            event = from_json(item)
            key = event.signature if event.name == "Overloaded" else event.name
            found[key] = event
    return found


@pytest.mark.parametrize("key", sorted(HUMAN))
def test_a_human_readable_signature_parses_to_what_solc_emits(key: str) -> None:
    parsed = parse_signature(HUMAN[key])
    assert parsed.to_json() == solc_event("TestEvents", events_abi()[key].signature)


@pytest.mark.parametrize(
    ("contract", "text"), [(c, t) for c, texts in UNISWAP.items() for t in texts]
)
def test_the_uniswap_signatures_parse_to_their_npm_artifacts(contract: str, text: str) -> None:
    parsed = parse_signature(text)
    assert parsed.to_json() == solc_event(contract, parsed.signature)


def test_topic0_is_the_keccak_of_the_canonical_signature() -> None:
    pair_created = parse_signature(UNISWAP["UniswapV2Factory"][0])
    assert pair_created.signature == "PairCreated(address,address,address,uint256)"
    # the topic every block explorer shows for Uniswap V2's PairCreated
    assert pair_created.topic0 == (
        "0x0d3648bd0f6ba80134a33ba9275ac585d9d315f0ad8355cddefde31afa28d0e9"
    )
    assert parse_signature(HUMAN["Tuples"]).signature == (
        "Tuples((string,int256,(uint8,bytes32)[],address[2]),"
        "(string,int256,(uint8,bytes32)[],address[2]),(uint8,bytes32)[2],uint256)"
    )


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("Transfer(address indexed from, address indexed to, uint256 value", "expected , or )"),
        ("Transfer address from", "expected an event name"),
        ("Transfer(uint7 x)", "integers are 8 to 256 bits"),
        ("Transfer(bytes33 x)", "bytesN is bytes1 to bytes32"),
        ("Transfer(float x)", "unknown type 'float'"),
        ("Transfer(uint256[0] x)", "an array of size 0"),
        ("Transfer(uint256[x] y)", "expected an array suffix"),
        ("Transfer((uint8 indexed a) t)", "indexed inside a tuple"),
        ("Transfer(uint8 a) payable", "unexpected 'payable'"),
        (
            "E(uint8 indexed a, uint8 indexed b, uint8 indexed c, uint8 indexed d)",
            "4 indexed arguments, at most 3",
        ),
        ("E(uint8 a, address a)", "two arguments named 'a'"),
        ("E(uint8 indexed arg1, uint8)", "two arguments named 'arg1'"),  # the unnamed's name
    ],
)
def test_a_signature_that_does_not_parse_says_where(text: str, says: str) -> None:
    with pytest.raises(AbiError, match=None) as caught:
        parse_signature(text)
    assert says in str(caught.value), str(caught.value)


# decoding against the calls ---------------------------------------------------------------


@pytest.fixture(scope="module")
def emitter() -> Iterator[tuple[Contracts, str]]:
    with Anvil() as anvil:
        c = Contracts(anvil)
        yield c, c.deploy("TestEvents")


def emitted(c: Contracts, address: str, function: str, *args: Any) -> list[dict[str, Any]]:
    logs: list[dict[str, Any]] = c.call(address, function, *args, gas=5_000_000)["logs"]
    return logs


def decoded(key: str, log: dict[str, Any]) -> dict[str, Any]:
    return events_abi()[key].decode(log["topics"], log["data"])


def text(value: str) -> str:
    """A string as stored: NUL, which PostgreSQL refuses, as U+FFFD."""
    return value.replace("\x00", "\ufffd")


def word(value: int, signed: bool = False) -> bytes:
    return value.to_bytes(32, "big", signed=signed)


def ints(bits: int, signed: bool) -> st.SearchStrategy[int]:
    if signed:
        return st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    return st.integers(0, 2**bits - 1)


addresses = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
EXAMPLES = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@EXAMPLES
@given(
    ints(8, False), ints(8, True), ints(256, False), ints(256, True), ints(24, False),
    ints(136, True),
)  # fmt: skip
def test_integers_of_every_width_decode_exactly(
    emitter: tuple[Contracts, str], u8: int, i8: int, u256: int, i256: int, u24: int, i136: int
) -> None:
    [log] = emitted(*emitter, "integers", u8, i8, u256, i256, u24, i136)
    assert decoded("Integers", log) == {
        "u8": str(u8), "i8": str(i8), "u256": str(u256), "i256": str(i256), "u24": str(u24),
        "i136": str(i136),
    }  # fmt: skip


@EXAMPLES
@given(
    addresses, st.booleans(), st.binary(min_size=32, max_size=32),
    st.binary(min_size=1, max_size=1), st.binary(min_size=20, max_size=20), addresses,
    st.booleans(),
)  # fmt: skip
def test_addresses_bools_and_fixed_bytes_decode_as_passed(
    emitter: tuple[Contracts, str], who: str, flag: bool, tag: bytes, b1: bytes, b20: bytes,
    other: str, on: bool,
) -> None:  # fmt: skip
    [log] = emitted(*emitter, "scalars", who, flag, tag, b1, b20, other, on)
    assert decoded("Scalars", log) == {
        "who": who.lower(), "flag": flag, "tag": "0x" + tag.hex(), "b1": "0x" + b1.hex(),
        "b20": "0x" + b20.hex(), "other": other.lower(), "on": on,
    }  # fmt: skip


@EXAMPLES
@given(st.text(max_size=80), st.binary(max_size=100), st.text(max_size=80), st.binary(max_size=100))
def test_strings_and_bytes_decode_and_indexed_ones_are_their_hash(
    emitter: tuple[Contracts, str], label: str, blob: bytes, content: str, data: bytes
) -> None:
    [log] = emitted(*emitter, "dynamic", label, blob, content, data)
    assert decoded("Dynamic", log) == {
        "label": "0x" + keccak(label.encode()).hex(),
        "blob": "0x" + keccak(blob).hex(),
        "text": text(content),
        "data": "0x" + data.hex(),
    }


@EXAMPLES
@given(
    st.lists(ints(256, False), max_size=5), st.lists(ints(256, False), max_size=5),
    st.lists(addresses, min_size=3, max_size=3),
    st.lists(st.lists(ints(16, True), max_size=3), max_size=3),
    st.lists(st.text(max_size=10), max_size=3),
    st.lists(st.binary(max_size=40), min_size=2, max_size=2),
)  # fmt: skip
def test_arrays_fixed_dynamic_and_nested_decode_as_passed(
    emitter: tuple[Contracts, str], ids: list[int], values: list[int], fixed: list[str],
    nested: list[list[int]], names: list[str], blobs: list[bytes],
) -> None:  # fmt: skip
    [log] = emitted(*emitter, "arrays", ids, values, fixed, nested, names, blobs)
    assert decoded("Arrays", log) == {
        # an indexed array: keccak of its elements' words, in place
        "ids": "0x" + keccak(b"".join(word(i) for i in ids)).hex(),
        "values": [str(v) for v in values],
        "fixedAddrs": [a.lower() for a in fixed],
        "nested": [[str(v) for v in inner] for inner in nested],
        "names": [text(n) for n in names],
        "blobs": ["0x" + b.hex() for b in blobs],
    }


@EXAMPLES
@given(
    st.text(max_size=20), ints(256, True),
    st.lists(st.tuples(ints(8, False), st.binary(min_size=32, max_size=32)), max_size=3),
    st.lists(addresses, min_size=2, max_size=2), ints(256, False),
)  # fmt: skip
def test_structs_nested_in_arrays_decode_to_objects_by_component_name(
    emitter: tuple[Contracts, str], s: str, i: int, inners: list[tuple[int, bytes]],
    pair: list[str], last: int,
) -> None:  # fmt: skip
    as_, bs = [a for a, _ in inners], [b for _, b in inners]
    [log] = emitted(*emitter, "tuples", s, i, as_, bs, pair, last)
    outer = {
        "s": text(s),
        "i": str(i),
        "inners": [{"a": str(a), "b": "0x" + b.hex()} for a, b in inners],
        "pair": [p.lower() for p in pair],
    }
    two = [{"a": "1", "b": "0x" + word(1).hex()}, {"a": "2", "b": "0x" + word(2).hex()}]
    got = decoded("Tuples", log)
    assert got == {"hashed": log["topics"][1], "outer": outer, "twoInners": two, "arg3": str(last)}


def test_overloaded_and_anonymous_events_decode_by_their_own_abi(
    emitter: tuple[Contracts, str],
) -> None:
    who = "0x" + "ab" * 20
    one, two, anonymous = emitted(*emitter, "overloaded", who, 7)
    assert decoded("Overloaded(uint256)", one) == {"value": "7"}
    assert decoded("Overloaded(address,uint256)", two) == {"who": who, "value": "7"}
    assert decoded("Anon", anonymous) == {"who": who, "value": "7"}  # no topic0
    with pytest.raises(LogMismatch, match="topic0"):
        decoded("Overloaded(uint256)", two)


def test_text_that_is_not_utf8_is_replaced_not_refused(emitter: tuple[Contracts, str]) -> None:
    c, address = emitter
    tx = c.transaction(address, "dynamic", "a", b"b", "text", b"d")
    # the string argument's bytes, as another contract may emit them: not UTF-8
    tx["data"] = tx["data"].replace(b"text".hex(), "ff" + b"ext".hex())
    [log] = c.execute(tx)["logs"]
    assert decoded("Dynamic", log)["text"] == "\ufffdext"


def test_a_nul_in_text_is_replaced_as_postgresql_cannot_store_it(
    emitter: tuple[Contracts, str],
) -> None:
    [log] = emitted(*emitter, "dynamic", "a", b"b", "x\x00y", b"d")
    assert decoded("Dynamic", log)["text"] == "x\ufffdy"


def test_anonymous_after_the_list_with_or_without_a_semicolon() -> None:
    for text in ("event A(uint256 indexed a) anonymous;", "A(uint256 indexed a) anonymous"):
        assert parse_signature(text).anonymous
    assert not parse_signature("event A(uint256 a);").anonymous


def test_a_log_that_does_not_fit_its_event_is_a_mismatch(emitter: tuple[Contracts, str]) -> None:
    [log] = emitted(*emitter, "dynamic", "a", b"b", "c", b"d")
    with pytest.raises(LogMismatch, match="topics"):
        decoded("Dynamic", {**log, "topics": log["topics"][:2]})
    with pytest.raises(LogMismatch, match="does not decode"):
        decoded("Dynamic", {**log, "data": log["data"][:70]})
    with pytest.raises(LogMismatch, match="does not decode"):
        decoded("Dynamic", {**log, "data": "0x" + "ff" * 64})  # an offset past the end
