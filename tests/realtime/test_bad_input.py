"""Bad input gets a clear answer (exception event, ack error or a refused frame) and
leaves the server and the other clients unaffected."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chainpulse.devnet import RedisServer, wait_until
from tests.harness.events import Stream, block_event
from tests.harness.metrics import scrape, value
from tests.harness.realtime import WAIT, Client, RawSocket, Server
from tests.harness.seeded import make_database

RATE_LIMIT = 40
MAX_ROOMS = 5
MAX_BYTES = 1024


SERVER_SETTINGS = {"RATE_LIMIT": RATE_LIMIT, "MAX_ROOMS": MAX_ROOMS, "MAX_MESSAGE_BYTES": MAX_BYTES}


@pytest.fixture
def connect(server: Server) -> Iterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(**kwargs: Any) -> Client:
        client = Client(server, **kwargs).connect()
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def still_served(client: Client) -> None:
    before = len(client.of("pong"))
    client.emit("ping")
    client.wait_for("pong", before + 1)


@pytest.mark.parametrize(
    "payload",
    [
        "price:ETH",
        5,
        None,
        ["price:ETH"],
        {},
        {"channel": 5},
        {"channel": ""},
        {"channel": "price:" + "A" * 33},
        {"channel": "price:" + "x" * 500},
        {"channel": "price:BAD TOKEN"},
        {"channel": "price:"},
        {"channel": "news:ETH"},
        {"channel": "user:"},
        {"channel": "blocks:"},
        {"channel": "blocks:0"},
        {"channel": "blocks:08453"},
        {"channel": "blocks:9007199254740992"},  # 2^53: above any chain id
        {"channel": "blocks:8453"},  # a chain this deployment does not index
        {"channel": "blocks:31337", "lastBlock": -1},
        {"channel": "blocks:31337", "lastBlock": "7"},
        {"channel": "blocks:31337", "lastBlock": 7, "lastBlockHash": 7},
    ],
)
def test_bad_subscribe_payloads(connect: Callable[..., Client], payload: Any) -> None:
    client = connect()
    ack = client.call("subscribe", payload)
    assert ack["success"] is False
    assert ack["error"].startswith(("Invalid payload", "Invalid channel"))
    exception = client.wait_for("exception")[0]
    # an exception about a subscription names its channel, when the payload named one
    named = payload.get("channel") if isinstance(payload, dict) else None
    expected = {"status": "error", "message": ack["error"]}
    if isinstance(named, str) and 0 < len(named) <= 160:
        expected["channel"] = named
    assert exception == expected
    still_served(client)


def test_unknown_and_reserved_events(connect: Callable[..., Client]) -> None:
    client = connect()
    assert client.call("frobnicate", {"a": 1}) == {
        "success": False,
        "error": "Unknown event: frobnicate",
    }
    client.emit("disconnect", {"x": 1})  # a reserved name must not reach the handler
    client.wait_for("exception", 2)
    assert client.of("exception")[1]["message"] == "Unknown event: disconnect"
    still_served(client)
    assert client.sio.connected


def test_payload_over_the_size_cap_gets_an_exception(connect: Callable[..., Client]) -> None:
    client = connect()
    client.emit("subscribe", {"channel": "price:ETH", "pad": "x" * (MAX_BYTES + 10)})
    assert client.wait_for("exception")[0]["message"] == "Message too large"
    still_served(client)


def test_frame_far_over_the_cap_is_closed_with_a_reason(server: Server) -> None:
    raw = RawSocket(server)
    # the header of a masked text frame of 5 KB: the server refuses it on the length alone
    raw.send_raw(b"\x81" + bytes([0x80 | 126]) + (5 * MAX_BYTES).to_bytes(2, "big"))
    code, reason = raw.close_frame()
    assert code == 1009 and "length limit" in reason
    raw.close()


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (b"\x00\xff\xfe garbage", "Binary messages are not accepted"),
        ('42/realtime,{"not":"a list"}', "Malformed packet"),
        ("42/realtime,[unterminated", "Malformed packet"),
        (
            '451-/realtime,["subscribe",{"_placeholder":true,"num":0}]',
            "Binary messages are not accepted",
        ),
        ("42/realtime,[5]", "Malformed packet"),
    ],
)
def test_garbage_frames(
    server: Server, connect: Callable[..., Client], frame: Any, message: str
) -> None:
    bystander = connect()
    raw = RawSocket(server)
    raw.event("connected")
    if isinstance(frame, bytes):
        raw.send_binary(frame)
    else:
        raw.send(frame)
    assert raw.event("exception") == {"status": "error", "message": message}
    raw.send('42/realtime,["ping"]')
    assert "timestamp" in raw.event("pong")
    raw.close()
    still_served(bystander)


@pytest.mark.parametrize("frame", ["hello", "", "\u00e9t\u00e9", "9"])
def test_text_that_is_not_engine_io_closes_the_session(
    server: Server, connect: Callable[..., Client], frame: str
) -> None:
    """The Engine.IO protocol closes a session whose packet does not parse (the
    reference server does; its protocol suite checks it): no answer on a namespace."""
    bystander = connect()
    raw = RawSocket(server)
    raw.event("connected")
    raw.send(frame)
    code, reason = raw.close_frame()
    assert (code, reason) == (1003, "Invalid Engine.IO packet")
    raw.close()
    still_served(bystander)


def test_thousands_of_subscribes(
    server: Server, connect: Callable[..., Client], redis_server: RedisServer
) -> None:
    flooder, bystander = connect(), connect()
    acks: list[Any] = []
    done = threading.Event()
    total = 2000

    def on_ack(answer: Any) -> None:
        acks.append(answer)
        if len(acks) == total:
            done.set()

    for i in range(total):
        flooder.sio.emit(
            "subscribe", {"channel": f"price:T{i}"}, namespace="/realtime", callback=on_ack
        )

    def refused(reason: str) -> float:
        samples = scrape(f"{server.url}/metrics")
        return value(samples, "chainpulse_realtime_refusals_total", reason=reason) or 0.0

    # every subscribe is answered or counted: past the rate limit, answers are sent
    # while the client has room for them (half its outbound bounds), then only counted
    wait_until(
        lambda: refused("rate limit") + refused("rate limit, unanswered") == total - RATE_LIMIT,
        WAIT,
        "every refusal counted",
    )
    answered = refused("rate limit")
    wait_until(lambda: len(acks) == RATE_LIMIT + answered, WAIT, "the answers' arrival")
    successes = [a for a in acks if a["success"]]
    errors = [a["error"] for a in acks if not a["success"]]
    assert len(successes) == MAX_ROOMS
    assert errors.count(f"Too many subscriptions: at most {MAX_ROOMS}") == RATE_LIMIT - MAX_ROOMS
    assert errors.count("Rate limit exceeded") == answered > 0
    assert refused("rate limit, unanswered") > 0 and not done.is_set()
    # the flooder is still connected and still gets broadcasts; the bystander is served
    stream = Stream(redis_server.url)
    stream.append(block_event(500))
    flooder.wait_for("new-block")
    bystander.wait_for("new-block")
    still_served(bystander)
    assert flooder.sio.connected
    metrics = server.get("/metrics").text
    assert 'chainpulse_realtime_refusals_total{reason="rate limit"}' in metrics


def test_rate_limit_recovers_after_the_window(tmp_path: Path, redis_url: str) -> None:
    server = Server(redis_url, make_database(tmp_path / "db.sqlite"), RATE_LIMIT=3, RATE_WINDOW=1)
    server.start()
    try:
        client = Client(server).connect()
        answers = [client.call("unsubscribe", {"channel": "price:ETH"}) for _ in range(4)]
        assert answers[:3] == [{"success": True}] * 3
        assert answers[3] == {"success": False, "error": "Rate limit exceeded"}
        wait_until(
            lambda: client.call("unsubscribe", {"channel": "price:ETH"}) == {"success": True},
            WAIT,
            "the window to slide",
            interval=0.3,
        )
        assert client.sio.connected
        client.close()
        # the HTTP read API has the same limit, per client address
        codes = [server.get("/api/prices").status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        assert server.get("/healthz").status_code == 200  # probes are not limited
    finally:
        server.stop()


def _offered_deflate(server: Server) -> dict[str, str]:
    import websocket

    ws = websocket.create_connection(
        f"ws://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket",
        header=["Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"],
        timeout=WAIT,
    )
    headers = {k.lower(): v for k, v in (ws.getheaders() or {}).items()}
    ws.shutdown()
    return headers


def test_no_per_message_deflate_by_default(server: Server, tmp_path: Path, redis_url: str) -> None:
    assert "sec-websocket-extensions" not in _offered_deflate(server)
    compressed = Server(redis_url, make_database(tmp_path / "c.db"), WS_COMPRESSION="true")
    compressed.start(ready=False)
    try:
        assert "permessage-deflate" in _offered_deflate(compressed)["sec-websocket-extensions"]
    finally:
        compressed.stop()


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ('42/realtime,["subscribe",{"channel":"price:ETH"},1,2]', "Invalid payload"),
        ('42/realtime,["unsubscribe",{"channel":"price:ETH"},1]', "Invalid payload"),
        ('42/realtime,["private-message",{"to":"a","message":"b"},1]', "Invalid payload"),
        ('42/realtime,["*"]', "Unknown event: *"),
        ('42/realtime,["*",{"a":1}]', "Unknown event: *"),
    ],
)
def test_a_wrong_argument_count_is_answered_not_raised(
    server: Server, connect: Callable[..., Client], frame: str, message: str
) -> None:
    bystander = connect()
    raw = RawSocket(server)
    raw.event("connected")
    before = server.log().count("Traceback")
    raw.send(frame)
    assert raw.event("exception")["message"].startswith(message)
    acked = frame.replace("42/realtime,", "42/realtime,7", 1)
    raw.send(acked)  # the same with an ack id: the ack says so too
    reply = raw.recv_until(lambda t: t.startswith("43/realtime,7"))
    assert reply.startswith(f'43/realtime,7[{{"success":false,"error":"{message}')
    raw.send('42/realtime,["ping"]')
    assert "timestamp" in raw.event("pong")
    raw.close()
    still_served(bystander)
    assert server.log().count("Traceback") == before, server.log()[-3000:]


def test_a_flood_of_refusals_writes_a_bounded_log(server: Server) -> None:
    raw = RawSocket(server)
    raw.event("connected")
    before = len(server.log().splitlines())
    for _ in range(30):  # within RATE_LIMIT: each one is handled, and refused
        raw.send('42/realtime,["subscribe",{"channel":"price:ETH"},1,2]')
    for _ in range(30):
        raw.event("exception")
    raw.close()
    assert len(server.log().splitlines()) - before <= 3, server.log()[-3000:]


def test_a_second_connect_on_one_session_is_refused_and_counted_once(server: Server) -> None:
    def connected() -> float:
        lines = server.get("/metrics").text.splitlines()
        [line] = [x for x in lines if x.startswith("chainpulse_realtime_connected_clients ")]
        return float(line.split()[1])

    before = connected()
    raw = RawSocket(server)
    raw.event("connected")
    raw.send("40/realtime,")
    assert raw.event("exception")["message"] == "Already connected to this namespace"
    raw.send('42/realtime,["ping"]')
    assert "timestamp" in raw.event("pong")
    raw.close()
    # other tests' clients may still be leaving: the gauge must not stay above `before`
    wait_until(lambda: connected() <= before, WAIT, "the gauge back where it was")
