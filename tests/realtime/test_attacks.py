"""One ordinary client cannot stall or bloat a server: each attack, from one connection on
loopback, against `chainpulse serve`, with a bystander that must keep receiving every
push. What a connection holds is the transport's own accounting
(`chainpulse_realtime_connection_held_bytes_peak`), held to `connection.held_bound`."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chainpulse.devnet import RedisServer, wait_until
from realtime.transport.connection import held_bound
from tests.harness.events import Stream, block_event
from tests.harness.metrics import scrape, value
from tests.harness.realtime import WAIT, Client, Server
from tests.harness.seeded import make_database
from tests.harness.wire import (
    BINARY,
    CLOSE,
    CONT,
    NS,
    PING,
    TEXT,
    Wire,
    client_frame,
    deflated,
    polling_session,
    polling_url,
)

MAX_MESSAGE_BYTES = 1024
MAX_FRAME = 4 * MAX_MESSAGE_BYTES
OUTBOUND_BYTES_MAX = 32_768
BOUND = held_bound(MAX_FRAME, OUTBOUND_BYTES_MAX)
HEIGHTS = itertools.count(10_000)


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("attacks")


SERVER_SETTINGS = {
    "MAX_MESSAGE_BYTES": MAX_MESSAGE_BYTES,
    "OUTBOUND_QUEUE_MAX": 50,  # below RATE_LIMIT (100): a burst of pings outgrows it
    "OUTBOUND_BYTES_MAX": OUTBOUND_BYTES_MAX,
    "UPGRADE_TIMEOUT": 2,
    "WS_COMPRESSION": "true",
}


class Bystander:
    """A python-socketio client that must get every block pushed while an attack runs."""

    def __init__(self, server: Server, redis_url: str) -> None:
        self.client = Client(server).connect()
        self.stream = Stream(redis_url)
        self.height = 0

    def served(self) -> None:
        self.height = next(HEIGHTS)  # heights rise across the module's tests
        self.stream.append(block_event(self.height))
        wait_until(
            lambda: any(b["number"] == self.height for b in self.client.of("new-block")),
            WAIT,
            f"the bystander's new-block {self.height}",
        )

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def bystander(server: Server, redis_server: RedisServer) -> Iterator[Bystander]:
    one = Bystander(server, redis_server.url)
    yield one
    one.close()


def peak(server: Server) -> float:
    held = value(scrape(f"{server.url}/metrics"), "chainpulse_realtime_connection_held_bytes_peak")
    return held or 0.0


def no_traceback(server: Server) -> None:
    assert "Traceback" not in server.log(), server.log()[-3000:]


def test_an_upgrade_probe_that_never_comes_cannot_hold_the_server(
    server: Server, bystander: Bystander
) -> None:
    """A polling session's WebSocket upgrade sends PING frames and never `2probe`: it
    is closed after a few frames, and one that says nothing after UPGRADE_TIMEOUT;
    meanwhile everyone else is served."""
    opened = polling_session(server.port)
    flood = Wire.open(server.port, f"EIO=4&transport=websocket&sid={opened['sid']}")
    stop = threading.Event()

    def ping() -> None:
        try:
            while not stop.is_set():
                flood.send(client_frame(PING, b"") * 64)
        except OSError:
            pass  # closed by the server

    flooder = threading.Thread(target=ping)
    flooder.start()
    try:
        code, _ = flood.closed()
        assert (code, flood.close_reason) == (1002, "Engine.IO upgrade failed")
        bystander.served()
        assert requests.get(f"{server.url}/healthz", timeout=WAIT).status_code == 200
    finally:
        stop.set()
        flooder.join(WAIT)
        flood.close()
    quiet = polling_session(server.port)
    started = time.monotonic()  # before the request: the server's deadline starts after
    with Wire.open(server.port, f"EIO=4&transport=websocket&sid={quiet['sid']}") as silent:
        assert silent.closed(timeout=WAIT)[0] == 1002
        assert time.monotonic() - started >= 2  # UPGRADE_TIMEOUT=2
    bystander.served()
    no_traceback(server)


@pytest.mark.parametrize("size", [1, 0])
def test_endless_small_fragments_are_bounded(
    server: Server, bystander: Bystander, size: int
) -> None:
    """Connections sending one message as endless one-byte (or empty) fragments (each
    held 14 MB before) are closed with 1009 once the fragments count past the frame
    limit: each counts its least header besides its payload."""
    wires = [Wire.realtime(server.port) for _ in range(5)]
    try:
        for wire in wires:
            wire.send(client_frame(TEXT, b"4", fin=False))
            with contextlib.suppress(OSError):  # the server may close while we send
                wire.send(client_frame(CONT, b"x" * size, fin=False) * (MAX_FRAME // 2))
            code, _ = wire.closed()
            assert code == 1009 and "length limit" in wire.close_reason
        bystander.served()
        assert peak(server) <= BOUND
    finally:
        for wire in wires:
            wire.close()
    no_traceback(server)


def test_fragments_past_the_limit_are_closed_with_1009(server: Server) -> None:
    with Wire.realtime(server.port) as wire:
        wire.send(client_frame(TEXT, b"4", fin=False))
        wire.send(client_frame(CONT, b"", fin=False) * (MAX_FRAME // 6 + 1))
        code, _ = wire.closed()
        assert code == 1009 and "length limit" in wire.close_reason


def deflate_wire(server: Server) -> Wire:
    wire, _ = Wire.engine(server.port, extensions="permessage-deflate")
    assert b"permessage-deflate" in wire.response
    wire.send_text(f"40{NS},")
    wire.until(lambda t: t.startswith(f'42{NS},["connected"'))
    return wire


def test_compressed_data_after_the_end_of_the_deflate_stream_is_closed_with_1007(
    server: Server, bystander: Bystander
) -> None:
    with deflate_wire(server) as wire:
        wire.send(client_frame(TEXT, deflated('42/realtime,["ping"]', finish=True), rsv1=True))
        assert "timestamp" in wire.event("pong")  # that message was whole and valid
        with pytest.raises(OSError):
            for _ in range(2_000):  # 120 MB of compressed frames were taken before
                wire.send(client_frame(TEXT, deflated("4" + "x" * 200), rsv1=True) * 20)
        assert wire.closed()[0] == 1007
    bystander.served()
    assert peak(server) <= BOUND
    no_traceback(server)


def test_small_frames_that_inflate_to_the_limit_are_bounded(
    server: Server, bystander: Bystander
) -> None:
    """Compressed frames of a few hundred bytes that each inflate to nearly the frame
    limit: one read would inflate to megabytes, were a parse not stopped at the limit."""
    bomb = client_frame(TEXT, deflated("4" + "x" * (MAX_FRAME - 64)), rsv1=True)
    assert len(bomb) < 200
    with deflate_wire(server) as wire, contextlib.suppress(OSError):
        wire.send(bomb * 300)  # 60 KB, one read: 1.2 MB inflated
        wire.send_text(f'42{NS},["ping"]')
        assert "timestamp" in wire.event("pong")  # every message handled, in order
    bystander.served()
    assert peak(server) <= BOUND
    no_traceback(server)


def test_a_final_deflate_block_with_a_padding_byte_is_one_whole_message(
    server: Server,
) -> None:
    """RFC 7692 7.2.3.3: a message may end with a final block and a padding byte."""
    with deflate_wire(server) as wire:
        body = deflated('42/realtime,["ping"]', finish=True) + b"\x00"
        wire.send(client_frame(TEXT, body, rsv1=True))
        assert "timestamp" in wire.event("pong")


def test_corrupt_compressed_data_is_closed_with_1007_and_no_traceback(server: Server) -> None:
    with deflate_wire(server) as wire:
        wire.send(client_frame(TEXT, b"\xff\xff\xff\xff", rsv1=True))
        code, _ = wire.closed()
        assert (code, wire.close_reason) == (1007, "Invalid compressed data")
    no_traceback(server)


def test_a_client_dropped_in_the_middle_of_its_own_burst_leaves_no_traceback(
    server: Server, bystander: Bystander
) -> None:
    """A burst of pings, never read: the answers outgrow OUTBOUND_QUEUE_MAX inside the
    read, the client is dropped, and the rest of its burst is not handled."""
    with Wire.realtime(server.port) as wire:
        wire.send(client_frame(TEXT, f'42{NS},["ping"]') * 500)
        frames = wire.closed()[1]
        texts = [p.decode() for op, p in frames if op == TEXT]
        assert any("Slow consumer: outbound queue full" in t for t in texts)
    bystander.served()
    no_traceback(server)


def test_a_resume_from_beyond_any_height_is_a_documented_refusal(server: Server) -> None:
    wire, _ = Wire.engine(server.port)
    with wire:
        wire.send_text(
            f"40{NS}," + json.dumps({"lastBlock": 2**63, "lastBlockHash": "0x" + "a" * 64})
        )
        refusal = wire.event("exception")
        assert refusal["message"].startswith("Invalid payload: lastBlock must be an integer")
        wire.send_text(f'42{NS},["ping"]')
        assert "timestamp" in wire.event("pong")
    no_traceback(server)


def test_empty_binary_frames_never_read_hold_a_bounded_amount(
    server: Server, bystander: Bystander
) -> None:
    """1 MB of empty binary frames from a client that reads nothing: each is refused,
    the answers are bounded (counted only past half the bounds, then the client is
    dropped), and the connection never holds more than the bound."""
    with Wire.realtime(server.port) as wire:
        burst = client_frame(BINARY, b"") * 10_000
        try:
            for _ in range(17):  # about 1 MB
                wire.send(burst)
        except OSError:
            pass  # dropped as a slow consumer
        bystander.served()
        assert peak(server) <= BOUND
    samples = scrape(f"{server.url}/metrics")
    unanswered = value(samples, "chainpulse_realtime_refusals_total", reason="binary, unanswered")
    assert unanswered and unanswered > 0
    no_traceback(server)


def test_a_ping_that_comes_with_the_close_is_answered_first(server: Server) -> None:
    """RFC 6455 5.5.2: a PONG for the PING, then the closing frame, even when both
    arrive in one read."""
    with Wire.realtime(server.port) as wire:
        wire.send(
            client_frame(TEXT, f'42{NS},["ping"]')
            + client_frame(PING, b"are you there")
            + client_frame(CLOSE, (1000).to_bytes(2, "big"))
        )
        code, frames = wire.closed()
        assert (0xA, b"are you there") in frames and code == 1000
        assert any(op == TEXT and b'"pong"' in p for op, p in frames)


# the general property ------------------------------------------------------------------

FRAMES = st.lists(
    st.one_of(
        st.tuples(
            st.sampled_from([CONT, TEXT, BINARY, PING, 0xA]),
            st.booleans(),  # fin
            st.booleans(),  # rsv1
            st.one_of(
                st.binary(max_size=64),
                st.sampled_from([b"", b"4", b'42/realtime,["ping"]', b"2probe", b"5"]),
                st.integers(0, 3 * MAX_FRAME).map(lambda n: b"x" * n),
            ),
            st.integers(1, 400),  # repeats
        ),
        # valid compressed messages, small or inflating to near the limit
        st.tuples(
            st.just(TEXT),
            st.booleans(),
            st.just(True),
            st.integers(0, MAX_FRAME).map(lambda n: deflated("4" + "y" * n)),
            st.integers(1, 400),
        ),
    ),
    min_size=1,
    max_size=6,
)


@pytest.mark.parametrize("examples", [pytest.param(15), pytest.param(200, marks=pytest.mark.slow)])
def test_whatever_one_connection_sends_it_holds_a_bounded_amount(
    server: Server, bystander: Bystander, examples: int
) -> None:
    """For any frames one connection sends (hypothesis: fragments, control frames,
    binary, compressed or not, repeated), it holds at most the bound, and the bystander
    keeps receiving every push."""

    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(frames=FRAMES, compressed=st.booleans())
    def attack(frames: list[tuple[int, bool, bool, bytes, int]], compressed: bool) -> None:
        wire = deflate_wire(server) if compressed else Wire.realtime(server.port)
        try:
            for opcode, fin, rsv1, payload, repeats in frames:
                wire.send(client_frame(opcode, payload, fin=fin, rsv1=rsv1) * repeats)
        except OSError:
            pass  # the server closed it, as it may
        finally:
            wire.close()
        bystander.served()
        assert peak(server) <= BOUND

    attack()
    no_traceback(server)


# a server with a proxy in front, and one that requires a token ---------------------------


@pytest.fixture(scope="module")
def proxied(redis_server: RedisServer, directory: Path) -> Iterator[Server]:
    server = Server(
        redis_server.url,
        make_database(directory / "proxied.db"),
        TRUSTED_PROXY_HEADER="X-Forwarded-For",
        MAX_CONNECTIONS_PER_ADDRESS=2,
    ).start()
    yield server
    server.stop()


def test_underscore_headers_never_stand_in_for_the_trusted_one(proxied: Server) -> None:
    """`X_Forwarded_For` is not `X-Forwarded-For`: eventlet.wsgi drops it, and the
    WebSocket fast path must too, or each handshake counts against an address of the
    client's choosing."""
    opened: list[Wire] = []
    refused = 0
    for n in range(5):
        headers = {"X_Forwarded_For": f"10.0.0.{n}"}
        try:
            opened.append(Wire.open(proxied.port, headers=headers))
        except AssertionError as exc:
            assert "401" in str(exc)
            refused += 1
    polled = [
        requests.get(polling_url(proxied.port), headers={"X_Forwarded_For": f"10.1.0.{n}"},
                     timeout=WAIT).status_code
        for n in range(3)
    ]  # fmt: skip
    assert (len(opened), refused, polled) == (2, 3, [401] * 3)
    for wire in opened:
        wire.close()


@pytest.fixture(scope="module")
def guarded(redis_server: RedisServer, directory: Path) -> Iterator[Server]:
    server = Server(
        redis_server.url, make_database(directory / "guarded.db"), REQUIRE_AUTH="true"
    ).start()
    yield server
    server.stop()


FORGED = "2026-12-07 00:00:00,000 ERROR chainpulse.realtime forged line"


def forged_token() -> str:
    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    header = {"alg": "HS256", "typ": "JWT", "crit": [f"x\n{FORGED}\x1b[2J"]}
    return f"{part(header)}.{part({'sub': 'mallory'})}.c2lnbmF0dXJl"


def test_refused_connects_write_a_bounded_log_with_no_attacker_lines(guarded: Server) -> None:
    """A token whose header carries a newline and escape bytes never forges a line;
    a session retrying CONNECT after its refusal is closed; many bad tokens cost at most
    one line per reason per 10 s."""
    before = len(guarded.log().splitlines())
    wire, _ = Wire.engine(guarded.port)
    with wire:
        connect = f"40{NS}," + json.dumps({"token": forged_token()})
        try:
            for _ in range(200):
                wire.send_text(connect)
        except OSError:
            pass
        errors = [
            t for _, p in wire.closed()[1] if (t := p.decode(errors="replace")).startswith("44")
        ]
        assert 1 <= len(errors) <= 3 and json.loads(errors[0][len(f"44{NS},") :]) == {
            "message": "Invalid token"
        }
    for _ in range(100):
        with Wire.engine(guarded.port)[0] as other:
            other.send_text(f"40{NS}," + json.dumps({"token": "not.a.token"}))
            other.until(lambda t: t.startswith("44"))
    lines = guarded.log().splitlines()[before:]
    assert not any(line.startswith(FORGED) for line in lines)
    assert "\x1b" not in guarded.log()
    assert len(lines) <= 10, lines
