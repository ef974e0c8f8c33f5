"""The wire as an attacker or a protocol suite sees it: WebSocket frames built byte by
byte over a plain TCP socket, and Engine.IO long-polling over plain HTTP.

`Wire` speaks just enough RFC 6455 to send any frame (masked or not, fragmented, with
RSV1, a control frame of any size) and to read what the server sends back, including
its close frame; nothing here answers for the test (no automatic PONG, no automatic
close reply) unless asked.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import time
import zlib
from collections.abc import Callable
from typing import Any

import requests

TEXT, BINARY, CLOSE, PING, PONG, CONT = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0
NS = "/realtime"
WAIT = 10.0


def client_frame(
    opcode: int, payload: bytes | str, fin: bool = True, rsv1: bool = False, masked: bool = True
) -> bytes:
    """One frame as a client sends it (masked unless told otherwise)."""
    data = payload.encode() if isinstance(payload, str) else payload
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(data)
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head = bytes((first, mask_bit | n))
    elif n < 65536:
        head = bytes((first, mask_bit | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((first, mask_bit | 127)) + n.to_bytes(8, "big")
    if not masked:
        return head + data
    key = os.urandom(4)
    body = bytes(b ^ key[i % 4] for i, b in enumerate(data)) if n < 4096 else _mask(data, key)
    return head + key + body


def _mask(data: bytes, key: bytes) -> bytes:
    n = len(data)
    whole = int.from_bytes((key * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(data, "big") ^ whole).to_bytes(n, "big")


def deflated(text: str, finish: bool = False) -> bytes:
    """`text` compressed as permessage-deflate sends it (the sync flush's tail removed),
    or with `finish` as a deflate stream that ends (a final block)."""
    c = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    body = c.compress(text.encode())
    if finish:
        return body + c.flush(zlib.Z_FINISH)
    return (body + c.flush(zlib.Z_SYNC_FLUSH))[:-4]


class Closed(Exception):
    """The server closed the TCP connection."""


class Wire:
    """A WebSocket to the server, opened with `Wire.open`, frames in and out by hand."""

    def __init__(self, sock: socket.socket, response: bytes, rest: bytes) -> None:
        self.sock = sock
        self.response = response  # the HTTP response head
        self._buf = rest
        self.close_code: int | None = None
        self.close_reason = ""

    @classmethod
    def open(
        cls,
        port: int,
        query: str = "EIO=4&transport=websocket",
        headers: dict[str, str] | None = None,
        extensions: str | None = None,
        expect: int = 101,
    ) -> Wire:
        """Connect and send the upgrade request; `expect` is the status wanted."""
        sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET /socket.io/?{query} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if extensions:
            lines.append(f"Sec-WebSocket-Extensions: {extensions}")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1]) if head else 0
        if status != expect:
            sock.close()
            raise AssertionError(f"upgrade answered {head[:200]!r}, wanted {expect}")
        return cls(sock, head, rest)

    @classmethod
    def engine(cls, port: int, **kwargs: Any) -> tuple[Wire, dict[str, Any]]:
        """A new Engine.IO session over WebSocket, and its OPEN packet's data."""
        wire = cls.open(port, **kwargs)
        opened = wire.text()
        assert opened.startswith("0{"), opened
        return wire, json.loads(opened[1:])

    @classmethod
    def realtime(cls, port: int, auth: dict[str, Any] | None = None) -> Wire:
        """A session that has joined `/realtime` (and read its `connected` event)."""
        wire, _ = cls.engine(port)
        wire.send_text(f"40{NS}," + (json.dumps(auth) if auth else ""))
        wire.until(lambda t: t.startswith(f"40{NS},"))
        wire.until(lambda t: t.startswith(f'42{NS},["connected"'))
        return wire

    # writing ---------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_text(self, text: str) -> None:
        self.send(client_frame(TEXT, text))

    def send_frame(self, opcode: int, payload: bytes | str = b"", **kwargs: Any) -> None:
        self.send(client_frame(opcode, payload, **kwargs))

    # reading ---------------------------------------------------------------------------

    def frame(self, timeout: float = WAIT) -> tuple[int, bytes]:
        """The next server frame (opcode, payload); Closed when the connection ends."""
        deadline = time.monotonic() + timeout
        while True:
            parsed = self._parse()
            if parsed is not None:
                return parsed
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no frame from the server")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise TimeoutError("no frame from the server") from None
            except ConnectionError:
                chunk = b""
            if not chunk:
                raise Closed("the server closed the connection")
            self._buf += chunk

    def _parse(self) -> tuple[int, bytes] | None:
        buf = self._buf
        if len(buf) < 2:
            return None
        assert not buf[1] & 0x80, "a server frame must not be masked"
        n, at = buf[1] & 0x7F, 2
        if n == 126:
            if len(buf) < 4:
                return None
            n, at = int.from_bytes(buf[2:4], "big"), 4
        elif n == 127:
            if len(buf) < 10:
                return None
            n, at = int.from_bytes(buf[2:10], "big"), 10
        if len(buf) < at + n:
            return None
        self._buf = buf[at + n :]
        opcode, payload = buf[0] & 0x0F, buf[at : at + n]
        if buf[0] & 0x40:
            payload = zlib.decompress(payload + b"\x00\x00\xff\xff", -15)
        if opcode == CLOSE:
            self.close_code = int.from_bytes(payload[:2], "big") if payload else 1005
            self.close_reason = payload[2:].decode(errors="replace")
        return opcode, payload

    def text(self, timeout: float = WAIT) -> str:
        """The next text message, answering the server's Engine.IO pings."""
        while True:
            opcode, payload = self.frame(timeout)
            if opcode == CLOSE:
                raise Closed(f"closed with {self.close_code} {self.close_reason!r}")
            if opcode != TEXT:
                continue
            text = payload.decode()
            if text == "2":
                self.send_text("3")
                continue
            return text

    def until(self, predicate: Callable[[str], bool], timeout: float = WAIT) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.text(max(deadline - time.monotonic(), 0.01))
            if predicate(text):
                return text

    def event(self, name: str, timeout: float = WAIT) -> Any:
        prefix = f'42{NS},["{name}"'
        text = self.until(lambda t: t.startswith(prefix), timeout)
        return json.loads(text[len(f"42{NS},") :])[1]

    def closed(self, timeout: float = WAIT) -> tuple[int | None, list[tuple[int, bytes]]]:
        """Read until the server ends the connection: its close code (None when it
        closed without a close frame) and every frame it sent before."""
        frames: list[tuple[int, bytes]] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                opcode, payload = self.frame(max(deadline - time.monotonic(), 0.01))
            except Closed:
                return self.close_code, frames
            if opcode == CLOSE:
                return self.close_code, frames
            frames.append((opcode, payload))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# long-polling --------------------------------------------------------------------------


def polling_url(port: int, sid: str | None = None, query: str = "EIO=4&transport=polling") -> str:
    return f"http://127.0.0.1:{port}/socket.io/?{query}" + (f"&sid={sid}" if sid else "")


def polling_session(port: int) -> dict[str, Any]:
    """A new Engine.IO session over long-polling: its OPEN packet's data."""
    reply = requests.get(polling_url(port), timeout=WAIT)
    assert reply.status_code == 200 and reply.text.startswith("0{"), reply.text
    opened: dict[str, Any] = json.loads(reply.text[1:])
    return opened
