"""Events as the ABI describes them: read from ABI JSON or from a human-readable
signature, and decoded from a log into exact, JSON-ready values.

- An `EventAbi` has one canonical signature (`Transfer(address,address,uint256)`,
  tuples as `(t1,t2)`, `uint` as `uint256`) and its topic0, the keccak of it.
- Human-readable signatures follow the Solidity declaration (and viem's `parseAbiItem`):
  `event Transfer(address indexed from, address indexed to, uint256 value)`, the
  keyword `event` optional, names optional, tuples as `(uint256 a, address b) name` or
  `tuple(uint256 a, address b)`, arrays as `T[]` and `T[k]`, `anonymous` after the list.
- Decoded values: integers of every width as decimal strings (exact), `address` as
  lowercase hex, `bool` as a boolean, `bytes` and `bytesN` as `0x` hex, `string` as text
  (bytes that are not UTF-8 replaced by U+FFFD), arrays as lists, tuples as objects by
  component name (lists when a component has none). An indexed argument of a reference
  type (string, bytes, arrays, tuples) is its topic, the keccak of its encoding, as the
  ABI says: `0x` hex.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from eth_abi import decode
from eth_abi.exceptions import DecodingError
from eth_utils import keccak

from indexer.errors import ConfigError


class AbiError(ConfigError):
    """An event description that cannot be used; the message says what is wrong."""


class LogMismatch(ValueError):
    """A log that does not fit its event (topics or data of another shape)."""


ELEMENTARY = re.compile(r"^(uint|int)(\d*)$|^bytes(\d*)$|^(address|bool|string)$")
ARRAY = re.compile(r"\[(\d*)\]")
NAME = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")


@dataclass(frozen=True)
class Param:
    """One input of an event, or one component of a tuple. `type` is canonical and, for
    a tuple, `tuple` plus its array suffixes (`tuple[2][]`), as ABI JSON has it."""

    name: str
    type: str
    indexed: bool = False
    components: tuple[Param, ...] = ()

    @property
    def canonical(self) -> str:
        """The type as it appears in a signature: tuples spelled out."""
        if self.is_tuple:
            inner = ",".join(c.canonical for c in self.components)
            return f"({inner}){self.type[len('tuple') :]}"
        return self.type

    @property
    def wire(self) -> str:
        """The type decoded: `canonical` with `string` read as `bytes` (the same
        encoding), so that text that is not UTF-8 is replaced, not refused."""
        if self.is_tuple:
            inner = ",".join(c.wire for c in self.components)
            return f"({inner}){self.type[len('tuple') :]}"
        return re.sub(r"^string", "bytes", self.type)

    @property
    def hashed(self) -> bool:
        """Whether an indexed value of this type is stored as the keccak of its encoding
        (strings, bytes, arrays and structs: Solidity's reference types)."""
        return self.type in ("string", "bytes") or self.type.endswith("]") or self.is_tuple

    @property
    def is_tuple(self) -> bool:
        return self.type.startswith("tuple")

    def _element(self) -> Param:
        return Param(self.name, self.type[: self.type.rindex("[")], components=self.components)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.components:
            out["components"] = [c.to_json() for c in self.components]
        return out


@dataclass(frozen=True)
class EventAbi:
    name: str
    inputs: tuple[Param, ...]
    anonymous: bool = False

    # computed once per event: `decode` runs for every matching log
    @cached_property
    def signature(self) -> str:
        return f"{self.name}({','.join(p.canonical for p in self.inputs)})"

    @cached_property
    def topic0(self) -> str:
        return "0x" + keccak(text=self.signature).hex()

    @cached_property
    def indexed(self) -> tuple[Param, ...]:
        return tuple(p for p in self.inputs if p.indexed)

    @cached_property
    def _plain(self) -> tuple[tuple[Param, ...], list[str]]:
        plain = tuple(p for p in self.inputs if not p.indexed)
        return plain, [p.wire for p in plain]

    @cached_property
    def _readers(self) -> tuple[Reader, ...] | None:
        """`_flat`'s readers of its data, when that is elementary types only."""
        plain = self._plain[0]
        if any("[" in p.type or p.is_tuple for p in plain):
            return None
        return tuple(_reader(p) for p in plain)

    @cached_property
    def _topic_readers(self) -> tuple[Reader | None, ...]:
        """Per indexed argument, the reader of its topic (None: a hash, kept as it is)."""
        return tuple(None if p.hashed else _reader(p) for p in self.indexed)

    @cached_property
    def _names(self) -> tuple[list[str], list[str], list[str]]:
        """The arguments' names: all, in declaration order; the indexed; the others."""
        names = [_arg_name(p, i) for i, p in enumerate(self.inputs)]
        indexed = [n for n, p in zip(names, self.inputs, strict=True) if p.indexed]
        plain = [n for n, p in zip(names, self.inputs, strict=True) if not p.indexed]
        return names, indexed, plain

    @property
    def indexed_names(self) -> list[str]:
        """The indexed arguments' names, as `decode` keys them (`arg<i>` if unnamed)."""
        return self._names[1]

    def to_json(self) -> dict[str, Any]:
        """The event as ABI JSON (without solc's `internalType`)."""
        return {
            "type": "event",
            "name": self.name,
            "anonymous": self.anonymous,
            "inputs": [{**p.to_json(), "indexed": p.indexed} for p in self.inputs],
        }

    def decode(self, topics: Sequence[str], data: str) -> dict[str, Any]:
        """The arguments of a log of this event, by name (`arg<i>` for an unnamed one),
        in declaration order. LogMismatch when the log does not fit the event."""
        first = 0 if self.anonymous else 1
        indexed = self.indexed
        if len(topics) != first + len(indexed):
            raise LogMismatch(
                f"{len(topics)} topics, the event has {first + len(indexed)} "
                f"({len(indexed)} indexed argument{'' if len(indexed) == 1 else 's'})"
            )
        if not self.anonymous and topics[0].lower() != self.topic0:
            raise LogMismatch(f"topic0 {topics[0]} is not {self.signature}'s")
        plain, wire = self._plain
        readers = self._readers
        try:
            raw = _bytes(data)
            if readers is not None:
                plain_values = _flat(readers, raw)
            else:
                values = decode(wire, raw)
                plain_values = [_json(p, v) for p, v in zip(plain, values, strict=True)]
            by_topic = []
            for read, topic in zip(self._topic_readers, topics[first:], strict=True):
                word = _bytes(topic)
                if len(word) != 32:
                    raise ValueError(f"a topic of {len(word)} bytes")
                # a topic not hashed is one word of an elementary type
                by_topic.append("0x" + word.hex() if read is None else read(word, 0, 32))
        except (DecodingError, ValueError, OverflowError) as exc:
            raise LogMismatch(f"does not decode as {self.signature}: {exc}") from None
        names, indexed_names, plain_names = self._names
        by_name = dict(zip(plain_names, plain_values, strict=True))
        if not by_topic:
            return by_name
        by_name.update(zip(indexed_names, by_topic, strict=True))
        return {name: by_name[name] for name in names}  # in declaration order


Reader = Callable[[bytes, int, int], Any]  # (data, the word's offset, the head's size)


def _flat(readers: Sequence[Reader], data: bytes) -> list[Any]:
    """The values of elementary arguments (each read by its `_reader`) in `data`, as
    `_json` gives them: decoded as eth_abi's strict decoder does, and checked as
    strictly (bounds, padding, offsets), at a fraction of its cost; ValueError where it
    refuses. The common events (transfers, swaps, syncs) are such."""
    head = 32 * len(readers)
    if len(data) < head:
        raise ValueError(f"{len(data)} bytes of data, {head} at least")
    return [read(data, 32 * i, head) for i, read in enumerate(readers)]


def _reader(param: Param) -> Reader:
    """How `_flat` reads an elementary `param` (its word, or the tail it points to)."""
    kind = param.type
    if kind in ("bytes", "string"):
        as_text = kind == "string"

        def read_dynamic(data: bytes, at: int, head: int) -> Any:
            offset = int.from_bytes(data[at : at + 32], "big")
            if offset < head or offset + 32 > len(data):
                raise ValueError(
                    f"offset {offset} is not in the data's tail (bytes {head} to {len(data)})"
                )
            length = int.from_bytes(data[offset : offset + 32], "big")
            end = offset + 32 + length
            padded = offset + 32 + -(-length // 32) * 32
            if padded > len(data) or any(data[end:padded]):
                raise ValueError(f"{kind} of {length} bytes does not fit, or is not padded")
            value = data[offset + 32 : end]
            return _text(value) if as_text else "0x" + value.hex()

        return read_dynamic
    if kind.startswith("uint"):
        bits = int(kind[4:])

        def read_uint(data: bytes, at: int, head: int) -> Any:
            value = int.from_bytes(data[at : at + 32], "big")
            if value >> bits:
                raise ValueError(f"{value} is out of {kind}'s range")
            return str(value)

        return read_uint
    if kind.startswith("int"):
        half = 1 << (int(kind[3:]) - 1)

        def read_int(data: bytes, at: int, head: int) -> Any:
            value = int.from_bytes(data[at : at + 32], "big", signed=True)
            if not -half <= value < half:
                raise ValueError(f"{value} is out of {kind}'s range")
            return str(value)

        return read_int
    if kind == "address":

        def read_address(data: bytes, at: int, head: int) -> Any:
            if any(data[at : at + 12]):
                raise ValueError("an address with non-zero padding")
            return "0x" + data[at + 12 : at + 32].hex()

        return read_address
    if kind == "bool":

        def read_bool(data: bytes, at: int, head: int) -> Any:
            value = int.from_bytes(data[at : at + 32], "big")
            if value > 1:
                raise ValueError(f"{value} is not a bool")
            return bool(value)

        return read_bool
    size = int(kind[5:])  # bytesN

    def read_fixed(data: bytes, at: int, head: int) -> Any:
        if any(data[at + size : at + 32]):
            raise ValueError(f"{kind} with non-zero padding")
        return "0x" + data[at : at + size].hex()

    return read_fixed


def _arg_name(param: Param, position: int) -> str:
    return param.name or f"arg{position}"


def _bytes(value: str | bytes) -> bytes:
    if isinstance(value, bytes):
        return value
    return bytes.fromhex(value[2:] if value[:2] in ("0x", "0X") else value)


def _json(param: Param, value: Any) -> Any:
    """A decoded value as the rows and payloads carry it (see the module's docstring)."""
    kind = param.type
    if kind.endswith("]"):
        element = param._element()
        return [_json(element, v) for v in value]
    if kind == "tuple":
        if all(c.name for c in param.components):
            return {c.name: _json(c, v) for c, v in zip(param.components, value, strict=True)}
        return [_json(c, v) for c, v in zip(param.components, value, strict=True)]
    if kind.startswith(("uint", "int")):
        return str(value)
    if kind == "address":
        return str(value).lower()
    if kind == "bool":
        return bool(value)
    if kind == "string":
        return _text(bytes(value))
    return "0x" + bytes(value).hex()  # bytes, bytesN


def _text(value: bytes) -> str:
    # NUL too becomes U+FFFD: PostgreSQL's JSONB and text refuse it
    return value.decode("utf-8", errors="replace").replace("\x00", "\ufffd")


def topic_value(param: Param, value: object) -> str:
    """A value a subscriber or a query gives for an indexed argument, normalised as its
    stored column holds it; ValueError naming the problem when it cannot be one."""
    kind = param.type
    text = str(value).strip() if not isinstance(value, bool) else ""
    if param.hashed or kind.startswith("bytes"):
        size = 32 if param.hashed else int(kind[len("bytes") :])
        if not re.fullmatch(r"0x[0-9a-fA-F]*", text) or len(text) != 2 + 2 * size:
            what = "the topic hash" if param.hashed else kind
            raise ValueError(f"expected 0x and {2 * size} hex digits ({what})")
        return text.lower()
    if kind == "address":
        if not re.fullmatch(r"0x[0-9a-fA-F]{40}", text):
            raise ValueError("expected an address (0x and 40 hex digits)")
        return text.lower()
    if kind == "bool":
        if isinstance(value, bool):
            return "true" if value else "false"
        if text in ("true", "false"):
            return text
        raise ValueError("expected true or false")
    if isinstance(value, bool) or not re.fullmatch(r"-?\d+", text):
        raise ValueError("expected an integer (a number or a decimal string)")
    return str(int(text))


def column_value(param: Param, value: Any) -> str:
    """The stored column of an indexed argument's decoded value (its `topic_value`)."""
    if param.type == "bool":
        return "true" if value else "false"
    return str(value)


# reading ABI JSON ----------------------------------------------------------------------


def from_json(item: Mapping[str, Any]) -> EventAbi:
    """An event of ABI JSON (as solc, Foundry and Hardhat write it); AbiError if it is
    not one."""
    if item.get("type") != "event":
        raise AbiError(f"not an event: type {item.get('type')!r}")
    name = item.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise AbiError(f"an event without a valid name: {name!r}")
    inputs = item.get("inputs", [])
    if not isinstance(inputs, list):
        raise AbiError(f"event {name}: inputs must be a list")
    params = tuple(_param_from_json(p, name, top=True) for p in inputs)
    event = EventAbi(name, params, bool(item.get("anonymous", False)))
    _check(event)
    return event


def _param_from_json(item: Any, event: str, top: bool) -> Param:
    if not isinstance(item, Mapping) or not isinstance(item.get("type"), str):
        raise AbiError(f"event {event}: an input without a type")
    kind = item["type"]
    components: tuple[Param, ...] = ()
    if kind.startswith("tuple"):
        raw = item.get("components")
        if not isinstance(raw, list) or not raw:
            raise AbiError(f"event {event}: a tuple without components")
        components = tuple(_param_from_json(c, event, top=False) for c in raw)
        suffix = kind[len("tuple") :]
        _check_suffix(suffix, event)
        kind = "tuple" + suffix
    else:
        kind = _canonical_elementary(kind, event)
    name = item.get("name") or ""
    return Param(str(name), kind, bool(item.get("indexed", False)) if top else False, components)


# parsing human-readable signatures ------------------------------------------------------


def parse_signature(text: str) -> EventAbi:
    """An event from its human-readable signature; AbiError saying where it fails."""
    source = text.strip()
    rest = source[len("event") :].lstrip() if re.match(r"^event\s", source) else source
    match = re.match(r"^([A-Za-z_$][A-Za-z0-9_$]*)\s*\(", rest)
    if not match:
        raise AbiError(f"{text!r}: expected an event name and its arguments in ( )")
    name = match.group(1)
    parser = _Parser(rest, match.end() - 1, text)
    params = parser.params(top=True)
    tail = rest[parser.at :].strip().rstrip(";").rstrip()
    anonymous = tail == "anonymous"
    if tail not in ("", "anonymous"):
        raise AbiError(f"{text!r}: unexpected {tail!r} after the arguments")
    event = EventAbi(name, params, anonymous)
    _check(event)
    return event


class _Parser:
    """Recursive descent over `( param, ... )` where param is `type [indexed] [name]`
    and type is elementary or a tuple `( ... )` / `tuple( ... )`, then array suffixes."""

    def __init__(self, text: str, at: int, whole: str) -> None:
        self.text = text
        self.at = at
        self.whole = whole

    def fail(self, what: str) -> AbiError:
        return AbiError(f"{self.whole!r}: {what} at character {self.at + 1} of {self.text!r}")

    def skip(self) -> None:
        while self.at < len(self.text) and self.text[self.at].isspace():
            self.at += 1

    def peek(self) -> str:
        self.skip()
        return self.text[self.at : self.at + 1]

    def word(self) -> str:
        self.skip()
        match = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*").match(self.text, self.at)
        if not match:
            return ""
        self.at = match.end()
        return match.group(0)

    def params(self, top: bool) -> tuple[Param, ...]:
        if self.peek() != "(":
            raise self.fail("expected (")
        self.at += 1
        out: list[Param] = []
        if self.peek() == ")":
            self.at += 1
            return ()
        while True:
            out.append(self.param(top))
            following = self.peek()
            self.at += 1
            if following == ")":
                return tuple(out)
            if following != ",":
                self.at -= 1
                raise self.fail("expected , or )")

    def param(self, top: bool) -> Param:
        components: tuple[Param, ...] = ()
        if self.peek() == "(":
            components = self.params(top=False)
            kind = "tuple"
        else:
            word = self.word()
            if not word:
                raise self.fail("expected a type")
            if word == "tuple" and self.peek() == "(":
                components = self.params(top=False)
                kind = "tuple"
            else:
                kind = _canonical_elementary(word, self.whole)
        suffix = ""
        while self.peek() == "[":
            match = ARRAY.match(self.text, self.at)
            if not match:
                raise self.fail("expected an array suffix [] or [k]")
            suffix += match.group(0)
            self.at = match.end()
        _check_suffix(suffix, self.whole)
        indexed = False
        name = self.word()
        if name == "indexed":
            if not top:
                raise self.fail("indexed inside a tuple")
            indexed = True
            name = self.word()
        if name in ("indexed", "memory", "calldata", "storage"):
            raise self.fail(f"unexpected {name!r}")
        if kind == "tuple":
            return Param(name, "tuple" + suffix, indexed, components)
        return Param(name, kind + suffix, indexed)


def _canonical_elementary(kind: str, where: str) -> str:
    base, _, suffix = kind.partition("[")
    suffix = "[" + suffix if suffix else ""
    _check_suffix(suffix, where)
    match = ELEMENTARY.match(base)
    if not match:
        raise AbiError(f"{where}: unknown type {kind!r}")
    if match.group(1):  # uint / int
        bits = int(match.group(2) or 256)
        if bits % 8 or not 8 <= bits <= 256:
            raise AbiError(f"{where}: {kind!r}: integers are 8 to 256 bits, in steps of 8")
        return f"{match.group(1)}{bits}{suffix}"
    if match.group(3) and not 1 <= int(match.group(3)) <= 32:
        raise AbiError(f"{where}: {kind!r}: bytesN is bytes1 to bytes32")
    return base + suffix


def _check_suffix(suffix: str, where: str) -> None:
    if suffix and ARRAY.sub("", suffix):
        raise AbiError(f"{where}: {suffix!r} is not an array suffix")
    for size in ARRAY.findall(suffix):
        if size and int(size) < 1:
            raise AbiError(f"{where}: an array of size 0")


def _check(event: EventAbi) -> None:
    """What an event must be to decode into one value per argument name."""
    most = 4 if event.anonymous else 3
    if len(event.indexed) > most:
        raise AbiError(
            f"event {event.name}: {len(event.indexed)} indexed arguments, at most {most}"
        )
    names = event._names[0]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise AbiError(f"event {event.name}: two arguments named {twice[0]!r}")
