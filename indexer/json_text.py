"""Compact JSON text: orjson where it can, the standard library where it cannot.

orjson encodes and decodes in a fraction of the standard library's time: it encodes the
stream's events (a block's decoded contract events among them), the event rows' args
for PostgreSQL's COPY, and every Socket.IO packet. Its output is the same JSON, but for
non-ASCII text (written as UTF-8, not as `\\u` escapes), some float spellings (`1e16`,
not `1e+16`), and floats that are not finite (written as `null`; the standard library
writes `Infinity` and `NaN`, which browsers' JSON parsers refuse). What it refuses
falls back to the standard library, so nothing else is accepted or refused
differently: integers beyond 64 bits and non-string keys when encoding; when decoding,
`NaN`, `Infinity` and lone surrogates, and text holding a number of 20 digits or more
(19 after a minus sign), which orjson would read as a float, losing digits (such a
number inside a string sends the text to the standard library too, which is only
slower).
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson


def dumps(obj: Any) -> str:
    """`obj` as compact JSON (no spaces after `,` and `:`)."""
    try:
        return orjson.dumps(obj).decode()
    except TypeError:
        return json.dumps(obj, separators=(",", ":"))


# a number beyond 64 bits (20 digits, or 19 after a minus sign), which orjson would read
# as a float (losing its digits)
_LONG = r"(?:^|[\[:,\s])(?:-\d{19}|\d{20})"
_LONG_NUMBER = re.compile(_LONG)
_LONG_NUMBER_BYTES = re.compile(_LONG.encode())


def loads(text: str | bytes) -> Any:
    long = _LONG_NUMBER_BYTES if isinstance(text, bytes) else _LONG_NUMBER
    if long.search(text):  # type: ignore[arg-type]
        return json.loads(text)  # exact integers of any size
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
