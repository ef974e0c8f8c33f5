"""JSON for Socket.IO packets: orjson where it can, the standard library where it cannot.

orjson encodes and decodes a small payload in a fraction of the standard library's time
(every connect encodes four packets and decodes two). Its output is the same JSON, but
for non-ASCII text (written as UTF-8, not as `\\u` escapes) and some float spellings
(`1e16`, not `1e+16`). What it refuses falls back to the standard library, so nothing
is accepted or refused differently: integers beyond 64 bits, non-string keys, and, when
decoding, `NaN`, `Infinity` and lone surrogates.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import socketio


def dumps(obj: Any, **kwargs: Any) -> str:
    """Compact JSON (python-socketio asks for `separators=(",", ":")`, orjson's own)."""
    try:
        return orjson.dumps(obj).decode()
    except TypeError:
        return json.dumps(obj, separators=(",", ":"))


def loads(text: str | bytes, **kwargs: Any) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


class _Json:
    dumps = staticmethod(dumps)
    loads = staticmethod(loads)


class Packet(socketio.packet.Packet):
    """python-socketio's packet with this JSON (its `serializer` option)."""

    json = _Json
