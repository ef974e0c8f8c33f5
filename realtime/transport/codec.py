"""JSON for Socket.IO packets: `indexer.json_text` (orjson where it can, the standard
library where it cannot); every connect encodes four packets and decodes two."""

from __future__ import annotations

from typing import Any

import socketio

from indexer import json_text


def dumps(obj: Any, **kwargs: Any) -> str:
    """Compact JSON (python-socketio asks for `separators=(",", ":")`, orjson's own)."""
    return json_text.dumps(obj)


def loads(text: str | bytes, **kwargs: Any) -> Any:
    return json_text.loads(text)


class _Json:
    dumps = staticmethod(dumps)
    loads = staticmethod(loads)


class Packet(socketio.packet.Packet):
    """python-socketio's packet with this JSON (its `serializer` option)."""

    json = _Json
