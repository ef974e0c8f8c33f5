"""The WebSocket protocol on the server's side (RFC 6455, with permessage-deflate from
RFC 7692): the opening handshake, a frame parser fed with whatever the socket had, and
server frames packed once for any number of recipients. No sockets here: the connection
that reads and writes them is `realtime.transport.connection`.

Invariants:
- `FrameParser.feed` never waits: it takes the bytes that arrived (a frame in pieces,
  several frames at once) and returns the whole messages and control frames in them,
  keeping the rest for the next call;
- a client's frame is masked; a message (or frame) longer than `max_size` bytes fails
  the connection with 1009 as soon as its length is known, text that is not UTF-8 and
  compressed data that does not inflate with 1007, anything else malformed with 1002
  (`ProtocolError` carries the code);
- what a parser holds is bounded by `max_size`, however the client sends it: each
  fragment after a message's first counts `FRAGMENT_COST` bytes besides its payload
  (262,143 one-byte or empty fragments would otherwise hold megabytes of small objects),
  fragments are joined into one buffer as they arrive, and one `feed` returns at most
  `MESSAGES_PER_FEED` messages, and stops once they add up to `max_size` bytes (inflated
  messages can outgrow the read that brought them); the rest wait, parsed on the next
  call (`ready`);
- server frames are never masked, so a text message packs to the same bytes for every
  connection without deflate (`Frame`), and, since this server compresses every message
  without context takeover, to the same bytes for every connection with it too.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import Mapping
from typing import Any

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA
_OPCODES = frozenset((0x0, TEXT, BINARY, CLOSE, PING, PONG))
# close codes a peer may send (RFC 6455 7.4.1; 3000-4999 are for applications)
_CLOSE_CODES = frozenset((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011))
_DEFLATE_TAIL = b"\x00\x00\xff\xff"
FRAGMENT_COST = 6  # bytes a continuation frame counts besides its payload (its least header)
MESSAGES_PER_FEED = 256  # messages one `feed` returns at most; the rest wait in the buffer

Message = tuple[int, Any]  # (TEXT, str) | (BINARY, bytes) | (CLOSE, code) | (PING|PONG, bytes)


class ProtocolError(Exception):
    """The peer broke the protocol: the connection is closed with `code`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class HandshakeError(Exception):
    """An upgrade request that cannot be accepted: answered with `status`."""

    def __init__(self, status: str, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.headers = headers or []


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def handshake(environ: Mapping[str, Any], compression: bool) -> tuple[bytes, Deflate | None]:
    """The `101 Switching Protocols` reply to an upgrade request (a WSGI environ) and the
    deflate state it negotiated (None without `compression` or an offer)."""
    connection = environ.get("HTTP_CONNECTION", "").lower()
    if environ.get("HTTP_UPGRADE", "").lower() != "websocket" or "upgrade" not in connection:
        raise HandshakeError("400 Bad Request")
    if environ.get("HTTP_SEC_WEBSOCKET_VERSION") != "13":
        raise HandshakeError("426 Upgrade Required", [("Sec-WebSocket-Version", "13")])
    key = environ.get("HTTP_SEC_WEBSOCKET_KEY", "")
    try:
        valid = len(base64.b64decode(key, validate=True)) == 16
    except ValueError:
        valid = False
    if not valid:
        raise HandshakeError("400 Bad Request")
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_key(key)}",
    ]
    deflate = None
    if compression:
        deflate, response = negotiate_deflate(environ.get("HTTP_SEC_WEBSOCKET_EXTENSIONS", ""))
        if deflate is not None:
            lines.append(f"Sec-WebSocket-Extensions: {response}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), deflate


def negotiate_deflate(offers: str) -> tuple[Deflate | None, str]:
    """Accept the first permessage-deflate offer this server can honour. The server
    always compresses without context takeover (so that a message compresses once for
    every recipient); the client keeps its context unless it offered not to."""
    for offer in offers.split(","):
        name, *params = (part.strip() for part in offer.split(";"))
        if name != "permessage-deflate":
            continue
        response = ["permessage-deflate", "server_no_context_takeover"]
        client_resets = False
        acceptable = True
        seen: set[str] = set()
        for param in params:
            key, _, value = param.partition("=")
            key, value = key.strip(), value.strip().strip('"')
            if key in seen:
                acceptable = False  # RFC 7692 7.1: an offer naming a parameter twice
            seen.add(key)
            if key == "server_no_context_takeover" and not value:
                continue
            if key == "client_no_context_takeover" and not value:
                client_resets = True
                response.append("client_no_context_takeover")
            elif key == "client_max_window_bits" and (not value or value in _WINDOW_BITS):
                continue  # we read any window up to 15 bits
            elif key == "server_max_window_bits" and value in _WINDOW_BITS:
                acceptable = acceptable and value == "15"  # we compress with 15 bits only
            else:
                acceptable = False
        if acceptable:
            return Deflate(client_resets), "; ".join(response)
    return None, ""


_WINDOW_BITS = frozenset(str(bits) for bits in range(8, 16))  # RFC 7692 7.1.2


class Deflate:
    """Per-connection inflate state; compression (no context takeover) is shared.

    A message that ends the deflate stream (a final block) leaves nothing to inflate
    the next one with: zlib would keep every later byte as `unused_data`, so the next
    compressed message fails with 1007 instead (with the client's context reset after
    every message, a new stream starts anyway)."""

    __slots__ = ("inflater", "client_resets")

    def __init__(self, client_resets: bool) -> None:
        self.client_resets = client_resets
        self.inflater = zlib.decompressobj(-15)

    def inflate(self, data: bytes, max_size: int) -> bytes:
        if self.inflater.eof:
            raise ProtocolError(1007, "Compressed data after the end of the deflate stream")
        try:
            out = self.inflater.decompress(data + _DEFLATE_TAIL, max_size + 1)
        except zlib.error:
            raise ProtocolError(1007, "Invalid compressed data") from None
        if len(out) > max_size or self.inflater.unconsumed_tail:
            raise ProtocolError(1009, f"Incoming message is above length limit of {max_size} bytes")
        if self.inflater.eof:
            # the message ended the deflate stream with a final block: what follows it is
            # the tail we added, after at most one padding byte (RFC 7692 7.2.3.3);
            # anything more is data past the end of the stream
            rest = self.inflater.unused_data
            if len(rest) > len(_DEFLATE_TAIL) + 1 or not rest.endswith(_DEFLATE_TAIL):
                raise ProtocolError(1007, "Compressed data after the end of the deflate stream")
        if self.client_resets:
            self.inflater = zlib.decompressobj(-15)
        return out

    @property
    def held(self) -> int:
        """Bytes of input the inflater holds beyond its window (at most what one frame
        brought, until the frame's message is refused)."""
        return len(self.inflater.unused_data) + len(self.inflater.unconsumed_tail)


_COMPRESSOR = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)


def deflate(data: bytes) -> bytes:
    """`data` compressed as one message without context takeover: Z_FULL_FLUSH resets the
    window after it, so one compressor serves every message of every connection."""
    out = _COMPRESSOR.compress(data) + _COMPRESSOR.flush(zlib.Z_FULL_FLUSH)
    return out[:-4] if out.endswith(_DEFLATE_TAIL) else out


def frame(opcode: int, payload: bytes, compressed: bool = False) -> bytes:
    """A final server frame (unmasked)."""
    first = 0x80 | opcode | (0x40 if compressed else 0)
    n = len(payload)
    if n < 126:
        head = bytes((first, n))
    elif n < 65536:
        head = bytes((first, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((first, 127)) + n.to_bytes(8, "big")
    return head + payload


def text_frame(text: str, compressed: bool = False) -> bytes:
    data = text.encode()
    return frame(TEXT, deflate(data), True) if compressed else frame(TEXT, data)


def close_frame(code: int | None = None, reason: str = "") -> bytes:
    """A close frame: empty without a code (the peer reads 1005, no status)."""
    if code is None:
        return frame(CLOSE, b"")
    return frame(CLOSE, code.to_bytes(2, "big") + reason.encode()[:123])


class Frame(str):
    """A text message that packs its frames once, for any number of recipients."""

    packed: bytes | None = None
    packed_deflated: bytes | None = None
    _size: int | None = None

    @property
    def size(self) -> int:
        """Its length in UTF-8 bytes (what a queue holding it weighs)."""
        if self._size is None:
            self._size = len(self.encode())
        return self._size

    def frame(self, compressed: bool = False) -> bytes:
        if compressed:
            if self.packed_deflated is None:
                self.packed_deflated = text_frame(str(self), True)
            return self.packed_deflated
        if self.packed is None:
            self.packed = text_frame(str(self))
        return self.packed


def unmask(data: bytes, mask: bytes) -> bytes:
    n = len(data)
    if not n:
        return data
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(data, "big") ^ key).to_bytes(n, "big")


class FrameParser:
    """Client frames to messages; see the module's invariants."""

    __slots__ = (
        "max_size",
        "deflate",
        "ready",
        "_buf",
        "_parts",
        "_opcode",
        "_size",
        "_compressed",
    )

    def __init__(self, max_size: int, deflate: Deflate | None = None) -> None:
        self.max_size = max_size
        self.deflate = deflate
        self.ready = False  # whole frames wait in the buffer: `feed(b"")` returns them
        self._buf = b""
        self._parts = bytearray()  # a fragmented message's payload so far
        self._opcode = 0  # its opcode, 0 when none is under way
        self._size = 0  # what it counts against `max_size` (see FRAGMENT_COST)
        self._compressed = False

    @property
    def pending(self) -> int:
        """Bytes held back: an incomplete frame, frames not parsed yet, a fragmented
        message's payload so far, and the inflater's unused input."""
        inflater = self.deflate.held if self.deflate is not None else 0
        return len(self._buf) + len(self._parts) + inflater

    def feed(self, data: bytes) -> list[Message]:
        buf = self._buf + data if self._buf else data
        out: list[Message] = []
        pos, end = 0, len(buf)
        self.ready = False
        returned = 0  # bytes of the messages returned (inflated, they can outgrow the read)
        while end - pos >= 2:
            if len(out) == MESSAGES_PER_FEED or returned >= self.max_size:
                self.ready = True
                break
            b0, b1 = buf[pos], buf[pos + 1]
            length, head = b1 & 0x7F, pos + 2
            if length == 126:
                if end - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), pos + 4
            elif length == 127:
                if end - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), pos + 10
            self._check(b0, b1, length)
            if end - head < 4 + length:
                break
            payload = unmask(buf[head + 4 : head + 4 + length], buf[head : head + 4])
            pos = head + 4 + length
            message = self._frame(b0, payload)
            if message is not None:
                out.append(message)
                body = message[1]
                returned += len(body) if isinstance(body, str | bytes) else 0
        self._buf = buf[pos:] if pos < end else b""
        return out

    def _check(self, b0: int, b1: int, length: int) -> None:
        """What the frame's header alone says is wrong (before its payload has arrived)."""
        opcode, rsv = b0 & 0x0F, b0 & 0x70
        if not b1 & 0x80:
            raise ProtocolError(1002, "A client must mask every frame it sends")
        if opcode not in _OPCODES:
            raise ProtocolError(1002, f"Unknown opcode {opcode}")
        if rsv and (rsv != 0x40 or self.deflate is None or opcode not in (TEXT, BINARY)):
            raise ProtocolError(1002, "RSV bits set without a negotiated extension")
        if opcode & 0x8:
            if not b0 & 0x80 or length > 125:
                raise ProtocolError(1002, "A control frame must be whole and at most 125 bytes")
        elif opcode and self._opcode:
            raise ProtocolError(1002, "A new message began inside a fragmented one")
        elif not opcode and not self._opcode:
            raise ProtocolError(1002, "A continuation frame with no message to continue")
        elif self._size + length + (FRAGMENT_COST if self._opcode else 0) > self.max_size:
            raise ProtocolError(
                1009,
                f"Incoming message of {self._size + length} bytes or more is above length "
                f"limit of {self.max_size} bytes",
            )

    def _frame(self, b0: int, payload: bytes) -> Message | None:
        opcode = b0 & 0x0F
        if opcode & 0x8:
            return self._control(opcode, payload)
        if opcode:
            if b0 & 0x80:  # a whole message in one frame: no copy into the buffer
                return self._message(opcode, bool(b0 & 0x40), payload)
            self._opcode, self._compressed = opcode, bool(b0 & 0x40)
        else:
            self._size += FRAGMENT_COST
        self._parts += payload
        self._size += len(payload)
        if not b0 & 0x80:
            return None
        data = bytes(self._parts)
        opcode, compressed = self._opcode, self._compressed
        self._parts, self._opcode, self._size = bytearray(), 0, 0
        return self._message(opcode, compressed, data)

    def _message(self, opcode: int, compressed: bool, data: bytes) -> Message:
        if compressed:
            assert self.deflate is not None  # `_check` refused RSV1 without it
            data = self.deflate.inflate(data, self.max_size)
        if opcode == BINARY:
            return (BINARY, data)
        try:
            return (TEXT, data.decode())
        except UnicodeDecodeError:
            raise ProtocolError(1007, "Text must be valid UTF-8") from None

    @staticmethod
    def _control(opcode: int, payload: bytes) -> Message:
        if opcode != CLOSE:
            return (opcode, payload)
        if not payload:
            return (CLOSE, 1000)
        code = int.from_bytes(payload[:2], "big")
        if len(payload) < 2 or not (code in _CLOSE_CODES or 3000 <= code <= 4999):
            raise ProtocolError(1002, "Invalid close code")
        try:
            payload[2:].decode()
        except UnicodeDecodeError:
            raise ProtocolError(1002, "A close reason must be UTF-8") from None
        return (CLOSE, code)
