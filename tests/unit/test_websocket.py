"""The WebSocket protocol (realtime/transport/websocket.py) and the first request's parse
(realtime/transport/connection.py): pure logic, against frames that websocket-client builds."""

from __future__ import annotations

import zlib

import pytest
import websocket as wsclient
from hypothesis import given, settings
from hypothesis import strategies as st

from realtime.transport.connection import upgrade_environ
from realtime.transport.websocket import (
    BINARY,
    CLOSE,
    MESSAGES_PER_FEED,
    PING,
    TEXT,
    Deflate,
    Frame,
    FrameParser,
    HandshakeError,
    ProtocolError,
    accept_key,
    close_frame,
    deflate,
    handshake,
    negotiate_deflate,
    text_frame,
)

LIMIT = 1_000


def client_frame(
    data: str | bytes, opcode: int = wsclient.ABNF.OPCODE_TEXT, fin: int = 1, rsv1: int = 0
) -> bytes:
    """A masked frame as a client sends it."""
    payload = data.encode() if isinstance(data, str) else data
    return bytes(wsclient.ABNF(fin, rsv1, 0, 0, opcode, 1, payload).format())


def compressed(text: str) -> bytes:
    c = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    body = c.compress(text.encode()) + c.flush(zlib.Z_SYNC_FLUSH)
    return client_frame(body[:-4], wsclient.ABNF.OPCODE_TEXT, rsv1=1)


def server_message(data: bytes) -> tuple[int, bytes, bytes]:
    """(opcode, payload, rest) of one unmasked server frame."""
    b0, b1 = data[0], data[1]
    assert b1 & 0x80 == 0, "server frames are never masked"
    length, at = b1 & 0x7F, 2
    if length == 126:
        length, at = int.from_bytes(data[2:4], "big"), 4
    elif length == 127:
        length, at = int.from_bytes(data[2:10], "big"), 10
    return b0 & 0x0F, data[at : at + length], data[at + length :]


# the handshake ---------------------------------------------------------------------------


def environ(**headers: str) -> dict[str, str]:
    base = {
        "HTTP_UPGRADE": "websocket",
        "HTTP_CONNECTION": "Upgrade",
        "HTTP_SEC_WEBSOCKET_VERSION": "13",
        "HTTP_SEC_WEBSOCKET_KEY": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    return {**base, **headers}


def test_the_accept_key_is_the_rfcs() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    reply, state = handshake(environ(), compression=False)
    assert reply.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in reply
    assert reply.endswith(b"\r\n\r\n") and state is None


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"HTTP_UPGRADE": "h2c"}, "400 Bad Request"),
        ({"HTTP_CONNECTION": "keep-alive"}, "400 Bad Request"),
        ({"HTTP_SEC_WEBSOCKET_VERSION": "8"}, "426 Upgrade Required"),
        ({"HTTP_SEC_WEBSOCKET_KEY": "not base64!"}, "400 Bad Request"),
        ({"HTTP_SEC_WEBSOCKET_KEY": "c2hvcnQ="}, "400 Bad Request"),  # 5 bytes, not 16
    ],
)
def test_a_bad_upgrade_is_refused(headers: dict[str, str], status: str) -> None:
    with pytest.raises(HandshakeError) as refused:
        handshake(environ(**headers), compression=False)
    assert refused.value.status == status


def test_deflate_is_negotiated_only_when_on_and_offered() -> None:
    offer = {"HTTP_SEC_WEBSOCKET_EXTENSIONS": "permessage-deflate; client_max_window_bits"}
    assert handshake(environ(**offer), compression=False)[1] is None
    reply, state = handshake(environ(**offer), compression=True)
    assert state is not None
    assert b"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover" in reply
    assert handshake(environ(), compression=True)[1] is None  # nothing offered


@pytest.mark.parametrize(
    ("offer", "accepted", "client_resets"),
    [
        ("permessage-deflate", True, False),
        ("permessage-deflate; client_no_context_takeover", True, True),
        ("permessage-deflate; server_max_window_bits=10", False, False),
        ("permessage-deflate; server_max_window_bits=10, permessage-deflate", True, False),
        ("permessage-deflate; unknown=1", False, False),
        ("x-webkit-deflate-frame", False, False),
        # RFC 7692 7.1: a parameter named twice, or a window outside 8 to 15, declines
        ("permessage-deflate; client_no_context_takeover; client_no_context_takeover", False,
         False),
        ("permessage-deflate; client_max_window_bits=10; client_max_window_bits", False, False),
        ("permessage-deflate; server_max_window_bits=15; server_max_window_bits=15", False,
         False),
        ("permessage-deflate; client_max_window_bits=7", False, False),
        ("permessage-deflate; client_max_window_bits=16", False, False),
        ("permessage-deflate; client_max_window_bits=8", True, False),
        ('permessage-deflate; client_max_window_bits="15"', True, False),
        ("permessage-deflate; server_max_window_bits=16", False, False),
        ("permessage-deflate; client_max_window_bits=9, permessage-deflate", True, False),
    ],
)  # fmt: skip
def test_deflate_offers(offer: str, accepted: bool, client_resets: bool) -> None:
    state, response = negotiate_deflate(offer)
    assert (state is not None) is accepted
    if state is not None:
        assert state.client_resets is client_resets
        assert response.startswith("permessage-deflate; server_no_context_takeover")


# reading frames --------------------------------------------------------------------------


def test_text_binary_and_control_frames() -> None:
    parser = FrameParser(LIMIT)
    data = (
        client_frame('42/realtime,["ping"]')
        + client_frame(b"\x00\x01", wsclient.ABNF.OPCODE_BINARY)
        + client_frame(b"hi", wsclient.ABNF.OPCODE_PING)
        + client_frame(b"\x03\xe8bye", wsclient.ABNF.OPCODE_CLOSE)
    )
    assert parser.feed(data) == [
        (TEXT, '42/realtime,["ping"]'),
        (BINARY, b"\x00\x01"),
        (PING, b"hi"),
        (CLOSE, 1000),
    ]
    assert parser.pending == 0


def test_a_fragmented_message_with_a_ping_between_its_fragments() -> None:
    parser = FrameParser(LIMIT)
    data = (
        client_frame("hel", fin=0)
        + client_frame(b"", wsclient.ABNF.OPCODE_PING)
        + client_frame("lo é", wsclient.ABNF.OPCODE_CONT)
    )
    assert parser.feed(data) == [(PING, b""), (TEXT, "hello é")]


@settings(max_examples=100, deadline=None)
@given(
    texts=st.lists(st.text(max_size=300), min_size=1, max_size=5),
    cuts=st.lists(st.integers(min_value=0, max_value=2_000), max_size=12),
)
def test_frames_are_parsed_however_the_bytes_arrive(texts: list[str], cuts: list[int]) -> None:
    data = b"".join(client_frame(t) for t in texts)
    parser = FrameParser(10_000)
    got: list[tuple[int, object]] = []
    at = 0
    for cut in sorted({min(c, len(data)) for c in cuts}) + [len(data)]:
        got += parser.feed(data[at:cut])
        at = cut
    assert got == [(TEXT, t) for t in texts]
    assert parser.pending == 0


@pytest.mark.parametrize(
    ("data", "code", "reason"),
    [
        (b"\x81\x05hello", 1002, "mask"),  # unmasked
        (client_frame("x")[:1].replace(b"\x81", b"\x83") + client_frame("x")[1:], 1002, "opcode"),
        (client_frame("x", rsv1=1), 1002, "RSV"),  # no deflate negotiated
        (client_frame("x", wsclient.ABNF.OPCODE_CONT), 1002, "continuation"),
        (client_frame(b"p" * 126, wsclient.ABNF.OPCODE_PING), 1002, "control frame"),
        (client_frame(b"\xff\xfe"), 1007, "UTF-8"),
        (client_frame(b"\x00\x05", wsclient.ABNF.OPCODE_CLOSE), 1002, "close code"),
        (client_frame(b"\x03", wsclient.ABNF.OPCODE_CLOSE), 1002, "close code"),
    ],
    ids=[
        "unmasked",
        "unknown opcode",
        "rsv1 without deflate",
        "stray continuation",
        "long ping",
        "bad utf-8",
        "close code 5",
        "one-byte close",
    ],
)
def test_protocol_errors(data: bytes, code: int, reason: str) -> None:
    with pytest.raises(ProtocolError) as error:
        FrameParser(LIMIT).feed(data)
    assert error.value.code == code and reason in error.value.reason


def test_a_new_message_inside_a_fragmented_one_is_refused() -> None:
    parser = FrameParser(LIMIT)
    parser.feed(client_frame("a", fin=0))
    with pytest.raises(ProtocolError, match="inside a fragmented"):
        parser.feed(client_frame("b"))


def test_an_oversized_frame_is_refused_from_its_header_alone() -> None:
    header = client_frame("x" * (LIMIT + 1))[:8]  # length and mask, no payload yet
    with pytest.raises(ProtocolError) as error:
        FrameParser(LIMIT).feed(header)
    assert error.value.code == 1009 and "length limit" in error.value.reason
    parser = FrameParser(LIMIT)  # and fragments that add up past it
    parser.feed(client_frame("x" * 600, fin=0))
    with pytest.raises(ProtocolError) as error:
        parser.feed(client_frame("x" * 600, wsclient.ABNF.OPCODE_CONT))
    assert error.value.code == 1009


def test_compressed_messages_are_inflated_and_bounded() -> None:
    text = '42/realtime,["subscribe",{"channel":"price:ETH"}]' * 10
    parser = FrameParser(LIMIT, Deflate(client_resets=False))
    assert parser.feed(compressed(text) + compressed(text)) == [(TEXT, text), (TEXT, text)]
    bomb = compressed("a" * (LIMIT * 50))  # small on the wire, too large inflated
    assert len(bomb) < LIMIT
    with pytest.raises(ProtocolError) as error:
        FrameParser(LIMIT, Deflate(client_resets=False)).feed(bomb)
    assert error.value.code == 1009


def test_a_message_after_the_end_of_the_deflate_stream_fails_with_1007() -> None:
    """A final deflate block ends the stream: zlib would keep every later byte as
    unused data (119 MB of frames grew the server by as much), so the next compressed
    message is refused."""
    c = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    ended = c.compress(b"4hello") + c.flush(zlib.Z_FINISH)
    parser = FrameParser(LIMIT, Deflate(client_resets=False))
    assert parser.feed(client_frame(ended, rsv1=1)) == [(TEXT, "4hello")]
    with pytest.raises(ProtocolError) as error:
        parser.feed(compressed("4again"))
    assert error.value.code == 1007 and parser.pending <= len(compressed("4again"))
    # in one frame: the stream's end, then more
    with pytest.raises(ProtocolError) as error:
        FrameParser(LIMIT, Deflate(client_resets=False)).feed(
            client_frame(ended + b"\x00" * 500, rsv1=1)
        )
    assert error.value.code == 1007
    # with the client's context reset after each message, a new stream starts each time
    resets = FrameParser(LIMIT, Deflate(client_resets=True))
    assert resets.feed(client_frame(ended, rsv1=1) * 2) == [(TEXT, "4hello")] * 2


def test_corrupt_compressed_data_fails_with_1007() -> None:
    with pytest.raises(ProtocolError) as error:
        FrameParser(LIMIT, Deflate(client_resets=False)).feed(
            client_frame(b"\xff\xff\xff\xff", rsv1=1)
        )
    assert error.value.code == 1007 and error.value.reason == "Invalid compressed data"


@pytest.mark.parametrize("size", [0, 1])
def test_many_small_fragments_count_against_the_limit(size: int) -> None:
    """262,143 one-byte (or empty) fragments held 14 MB per connection: each fragment
    after the first counts its least header too, so the parser holds near the limit."""
    parser = FrameParser(LIMIT)
    parser.feed(client_frame("x" * size, fin=0))
    fragment = client_frame(b"x" * size, wsclient.ABNF.OPCODE_CONT, fin=0)
    with pytest.raises(ProtocolError) as error:
        for _ in range(LIMIT):
            parser.feed(fragment)
            assert parser.pending <= LIMIT
    assert error.value.code == 1009


def test_one_feed_returns_a_bounded_number_of_messages() -> None:
    parser = FrameParser(LIMIT)
    pings = client_frame(b"", wsclient.ABNF.OPCODE_PING) * 600
    first = parser.feed(pings)
    assert len(first) == MESSAGES_PER_FEED and parser.ready
    second = parser.feed(b"")
    third = parser.feed(b"")
    assert len(second) == MESSAGES_PER_FEED and len(third) == 600 - 2 * MESSAGES_PER_FEED
    assert not parser.ready and parser.pending == 0


@settings(max_examples=200, deadline=None)
@given(
    frames=st.lists(
        st.tuples(
            st.sampled_from([0x0, 0x1, 0x2, 0x8, 0x9, 0xA]),
            st.booleans(),
            st.booleans(),
            st.binary(max_size=300),
        ),
        max_size=40,
    ),
    chunk=st.integers(1, 700),
    compression=st.booleans(),
)
def test_whatever_a_client_sends_the_parser_holds_near_the_limit(
    frames: list[tuple[int, bool, bool, bytes]], chunk: int, compression: bool
) -> None:
    """For any frames, cut anywhere: the parser holds at most the limit, one frame's
    header and what one feed brought, or it has refused the connection."""
    data = b"".join(
        bytes(wsclient.ABNF(fin, rsv1, 0, 0, op, 1, payload).format())
        for op, fin, rsv1, payload in frames
    )
    parser = FrameParser(LIMIT, Deflate(client_resets=False) if compression else None)
    try:
        for at in range(0, len(data), chunk):
            piece = data[at : at + chunk]
            parser.feed(piece)
            while parser.ready:
                parser.feed(b"")
            assert parser.pending <= LIMIT + 14 + len(piece)
    except ProtocolError as error:
        assert error.code in (1002, 1007, 1009)


# writing frames --------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 125, 126, 65_535, 65_536])
def test_server_frames_carry_their_length(size: int) -> None:
    opcode, payload, rest = server_message(text_frame("x" * size))
    assert (opcode, payload, rest) == (TEXT, b"x" * size, b"")


def test_a_frame_packs_once_for_every_recipient_and_deflates_without_context() -> None:
    frame = Frame('42/realtime,["new-block",{"number":1}]' * 20)
    assert frame.frame() is frame.frame()
    packed = frame.frame(compressed=True)
    assert packed is frame.frame(compressed=True) and packed[0] & 0x40  # RSV1
    _, payload, _ = server_message(packed)
    # a client without context takeover inflates each message on its own
    for _ in range(2):
        inflater = zlib.decompressobj(-15)
        assert inflater.decompress(payload + b"\x00\x00\xff\xff").decode() == str(frame)
    again = deflate(str(frame).encode())
    assert zlib.decompressobj(-15).decompress(again + b"\x00\x00\xff\xff") == str(frame).encode()


def test_close_frames() -> None:
    assert close_frame() == b"\x88\x00"
    opcode, payload, _ = server_message(close_frame(1009, "too big"))
    assert opcode == CLOSE and payload == b"\x03\xf1too big"


# the first request -------------------------------------------------------------------------

HEAD = (
    "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
    "Host: 127.0.0.1:3000\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "X-Forwarded-For: 10.0.0.1\r\n"
    "X-Forwarded-For: 10.0.0.2\r\n"
    "\r\n"
)


def test_a_websocket_connect_is_parsed_into_its_environ() -> None:
    parsed = upgrade_environ(HEAD.encode() + b"\x81", ("127.0.0.5", 4242))
    assert parsed is not None
    env, length = parsed
    assert length == len(HEAD)
    assert env["PATH_INFO"] == "/socket.io/"
    assert env["QUERY_STRING"] == "EIO=4&transport=websocket"
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("127.0.0.5", "4242")
    assert env["HTTP_SEC_WEBSOCKET_KEY"] == "dGhlIHNhbXBsZSBub25jZQ=="
    assert env["HTTP_X_FORWARDED_FOR"] == "10.0.0.1,10.0.0.2"
    encoded = HEAD.replace("EIO=4&", "EIO=%34&")  # percent-encoded, still a connect
    assert upgrade_environ(encoded.encode(), ("127.0.0.1", 1)) is not None


@pytest.mark.parametrize(
    "change",
    [
        ("EIO=4&", "EIO=4&sid=abc&"),  # an upgrade from long-polling
        ("EIO=4", "EIO=3"),
        ("transport=websocket", "transport=polling"),
        ("GET /socket.io/", "GET /api/"),
        ("GET ", "POST "),
        ("HTTP/1.1\r\n", "HTTP/1.0\r\n"),
        ("Upgrade: websocket\r\n", ""),
        ("Host: 127.0.0.1:3000\r\n", "Host: 127.0.0.1:3000\r\n  folded\r\n"),
        ("Host: 127.0.0.1:3000\r\n", "Content-Length: 5\r\n"),
        ("Host: 127.0.0.1:3000\r\n", "Bad Header: x\r\n"),
        ("\r\n\r\n", "\r\n"),  # the head has not all arrived
    ],
)
def test_anything_else_is_left_to_eventlet_wsgi(change: tuple[str, str]) -> None:
    head = HEAD.replace(*change, 1) if change[0] != "\r\n\r\n" else HEAD[:-2]
    assert upgrade_environ(head.encode(), ("127.0.0.1", 1)) is None
