"""The cases of the Engine.IO and Socket.IO protocol suites (socketio/engine.io-protocol
and socketio/socket.io-protocol, `test-suite/`), written here from their definitions
against `chainpulse serve`: its one namespace is `/realtime`, and its events are the
gateway's, so the suites' echo events become `ping`/`pong`.

Where chainpulse deliberately differs from a case, the test says so and checks what it
does instead (docs/protocol.md lists each difference beside the rule): malformed
packets on a joined namespace are answered `Malformed packet` and the session survives,
binary attachments are refused, only `/realtime` is served, and another HTTP method
gets 405.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from chainpulse.devnet import RedisServer
from tests.harness.metrics import scrape, value
from tests.harness.realtime import Server
from tests.harness.seeded import make_database
from tests.harness.wire import NS, Closed, Wire, polling_session, polling_url

PING_INTERVAL = 1  # seconds, as the settings take them; advertised in milliseconds
PING_TIMEOUT = 1
CONNECT_TIMEOUT = 2  # a server of its own (test_a_session_that_never_connects_is_closed)
WAIT = 10
IN_FLIGHT = 1.0  # seconds a request is given to reach the server before the next one


SERVER_SETTINGS = {"PING_INTERVAL": PING_INTERVAL, "PING_TIMEOUT": PING_TIMEOUT}


@pytest.fixture(scope="module")
def quiet(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose pings do not come while a test waits for a long poll's answer."""
    directory = tmp_path_factory.mktemp("quiet")
    server = Server(redis_server.url, make_database(directory / "chainpulse.db")).start()
    yield server
    server.stop()


def get(
    server: Server, sid: str | None = None, query: str = "EIO=4&transport=polling"
) -> requests.Response:
    return requests.get(polling_url(server.port, sid, query), timeout=WAIT)


def waiting_poll(server: Server, sid: str) -> tuple[threading.Thread, list[requests.Response]]:
    """A GET sent from a thread and left waiting for packets; its response lands in the
    list once the thread ends."""
    answers: list[requests.Response] = []
    thread = threading.Thread(target=lambda: answers.append(get(server, sid)))
    thread.start()
    time.sleep(IN_FLIGHT)  # the GET waits for packets
    return thread, answers


def post(server: Server, sid: str, body: str) -> requests.Response:
    return requests.post(polling_url(server.port, sid), data=body.encode(), timeout=WAIT)


def packets(response: requests.Response) -> list[str]:
    return response.text.split("\x1e") if response.text else []


# Engine.IO: handshake ---------------------------------------------------------------


def test_a_polling_handshake_opens_a_session(server: Server) -> None:
    response = get(server)
    assert response.status_code == 200 and response.text.startswith("0")
    opened = json.loads(response.text[1:])
    assert set(opened) == {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}
    assert isinstance(opened["sid"], str) and opened["upgrades"] == ["websocket"]
    assert (opened["pingInterval"], opened["pingTimeout"]) == (1000, 1000)


def test_the_heartbeat_is_advertised_to_the_millisecond(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """python-engineio advertises whole seconds (2.5 s as 2000 ms); we do not."""
    server = Server(
        redis_server.url, make_database(tmp_path / "db.sqlite"), PING_INTERVAL=2.5,
        PING_TIMEOUT=1.25,
    ).start()  # fmt: skip
    try:
        opened = polling_session(server.port)
        assert (opened["pingInterval"], opened["pingTimeout"]) == (2500, 1250)
    finally:
        server.stop()


@pytest.mark.parametrize("query", ["transport=polling", "EIO=abc&transport=polling"])
def test_an_invalid_eio_parameter_is_refused(server: Server, query: str) -> None:
    assert get(server, query=query).status_code == 400


@pytest.mark.parametrize("query", ["EIO=4", "EIO=4&transport=abc"])
def test_an_invalid_transport_parameter_is_refused(server: Server, query: str) -> None:
    assert get(server, query=query).status_code == 400


def test_an_invalid_request_method_is_refused(server: Server) -> None:
    assert requests.post(polling_url(server.port), timeout=WAIT).status_code == 400
    # deliberate: another method is 405 Method Not Allowed, HTTP's own word for it (the
    # suite accepts 400 only)
    assert requests.put(polling_url(server.port), timeout=WAIT).status_code == 405


def test_a_websocket_handshake_opens_a_session(server: Server) -> None:
    wire, opened = Wire.engine(server.port)
    with wire:
        assert set(opened) == {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}
        assert opened["upgrades"] == []


@pytest.mark.parametrize(
    "query",
    ["transport=websocket", "EIO=abc&transport=websocket", "EIO=4", "EIO=4&transport=abc"],
)
def test_an_invalid_websocket_handshake_is_refused(server: Server, query: str) -> None:
    with pytest.raises(AssertionError, match="wanted 101"):
        Wire.open(server.port, query)


# Engine.IO: messages ----------------------------------------------------------------


def test_one_polling_post_carries_several_packets(server: Server) -> None:
    sid = polling_session(server.port)["sid"]
    response = post(server, sid, f'40{NS},\x1e42{NS},["ping"]')
    assert (response.status_code, response.text) == (200, "OK")
    received: list[str] = []
    deadline = time.monotonic() + WAIT
    while not any('"pong"' in p for p in received) and time.monotonic() < deadline:
        received += [p for p in packets(get(server, sid)) if p != "2"]
    assert received[0].startswith(f"40{NS},") and '"sid"' in received[0]
    assert any(p.startswith(f'42{NS},["connected"') for p in received)
    assert any(p.startswith(f'42{NS},["pong"') for p in received)


def test_an_invalid_packet_closes_a_polling_session(server: Server) -> None:
    sid = polling_session(server.port)["sid"]
    assert post(server, sid, "abc").status_code == 400
    assert get(server, sid).status_code == 400


def test_a_second_poll_while_one_waits_closes_the_session(quiet: Server) -> None:
    server = quiet
    sid = polling_session(server.port)["sid"]
    waiting, first = waiting_poll(server, sid)
    second = get(server, sid)
    waiting.join(WAIT)
    answers = sorted(
        [(r.status_code, r.text if r.status_code == 200 else "") for r in (*first, second)]
    )
    assert answers == [(200, "1"), (400, "")]  # the waiting one gets the session's CLOSE
    assert get(server, sid).status_code == 400


def test_an_invalid_packet_closes_a_websocket_session(server: Server) -> None:
    wire, _ = Wire.engine(server.port)
    with wire:
        wire.send_text("abc")
        assert wire.closed()[0] == 1003


# Engine.IO: heartbeat ---------------------------------------------------------------


def joined(server: Server) -> str:
    """A polling session that has joined `/realtime` (so CONNECT_TIMEOUT does not close
    it) and read its answers: what the suite's heartbeat cases start from."""
    sid = str(polling_session(server.port)["sid"])
    post(server, sid, f"40{NS},")
    received: list[str] = []
    while not any(p.startswith(f'42{NS},["connected"') for p in received):
        received += packets(get(server, sid))
    return sid


def test_polling_ping_and_pong(server: Server) -> None:
    sid = joined(server)
    for _ in range(3):
        assert packets(get(server, sid)) == ["2"]
        assert post(server, sid, "3").status_code == 200


def test_a_polling_session_that_misses_its_pong_is_closed(server: Server) -> None:
    sid = joined(server)
    time.sleep(PING_INTERVAL + PING_TIMEOUT + 0.5)  # a bound the server must keep
    deadline = time.monotonic() + WAIT
    status = 200
    while status == 200 and time.monotonic() < deadline:
        status = get(server, sid).status_code  # "2" until the timeout is noticed
    assert status == 400


def test_websocket_ping_and_pong(server: Server) -> None:
    wire, _ = Wire.engine(server.port)
    with wire:
        wire.send_text(f"40{NS},")  # joined: CONNECT_TIMEOUT does not close it
        wire.until(lambda t: t.startswith(f'42{NS},["connected"'))
        for _ in range(3):
            opcode, payload = wire.frame()
            assert payload == b"2"
            wire.send_text("3")


def test_a_websocket_session_that_misses_its_pong_is_closed(server: Server) -> None:
    wire, _ = Wire.engine(server.port)
    with wire:
        wire.send_text(f"40{NS},")
        frames = [payload for _, payload in wire.closed(timeout=WAIT)[1]]
        assert b"2" in frames  # pinged, never answered, closed


# Engine.IO: close and upgrade -------------------------------------------------------


def test_a_polling_session_closed_by_the_client(quiet: Server) -> None:
    server = quiet
    sid = polling_session(server.port)["sid"]
    waiting, pending = waiting_poll(server, sid)
    assert post(server, sid, "1").status_code == 200
    waiting.join(WAIT)
    assert (pending[0].status_code, pending[0].text) == (200, "6")
    assert get(server, sid).status_code == 400


def test_a_websocket_session_closed_by_the_client(server: Server) -> None:
    wire, _ = Wire.engine(server.port)
    with wire:
        wire.send_text("1")
        wire.closed()


def test_an_upgrade_from_polling_to_websocket(quiet: Server) -> None:
    server = quiet
    sid = polling_session(server.port)["sid"]
    with Wire.open(server.port, f"EIO=4&transport=websocket&sid={sid}") as wire:
        wire.send_text("2probe")
        assert wire.text() == "3probe"
        assert get(server, sid).text == "6"  # the NOOP that ends the pending poll
        wire.send_text("5")
        wire.send_text(f"40{NS},")
        wire.until(lambda t: t.startswith(f"40{NS},"))  # (after python-engineio's NOOP)
        # HTTP requests and a second WebSocket of the session are refused after it
        assert get(server, sid).status_code == 400
        with pytest.raises(AssertionError, match="400"):
            Wire.open(server.port, f"EIO=4&transport=websocket&sid={sid}")
        wire.send_text(f'42{NS},["ping"]')
        assert "timestamp" in wire.event("pong")


# Socket.IO --------------------------------------------------------------------------


def test_a_connect_to_the_namespace_with_and_without_a_payload(server: Server) -> None:
    for auth in ("", '{"token":"123"}'):
        wire, _ = Wire.engine(server.port)
        with wire:
            wire.send_text(f"40{NS},{auth}")
            answer = wire.text()
            assert answer.startswith(f"40{NS},")
            assert set(json.loads(answer[len(f"40{NS},") :])) == {"sid"}
            assert wire.text().startswith(f'42{NS},["connected"')


@pytest.mark.parametrize("namespace", ["/random", "/"])
def test_a_connect_to_another_namespace_is_refused_as_the_protocol_says(
    server: Server, namespace: str
) -> None:
    """The suite's "/random" case exactly; chainpulse serves `/realtime` only, so the
    main namespace gets the same answer."""
    wire, _ = Wire.engine(server.port)
    with wire:
        wire.send_text("40" if namespace == "/" else f"40{namespace}")
        prefix = "44" if namespace == "/" else f"44{namespace},"
        assert wire.text() == prefix + '{"message":"Invalid namespace"}'


def test_an_invalid_handshake_closes_the_session(server: Server) -> None:
    wire, _ = Wire.engine(server.port)
    with wire:
        wire.send_text("4abc")
        wire.closed()


def test_a_session_that_never_connects_is_closed(redis_server: RedisServer, tmp_path: Path) -> None:
    """It answers every ping (so the heartbeat would keep it), and is closed all the
    same once CONNECT_TIMEOUT has passed."""
    server = Server(
        redis_server.url, make_database(tmp_path / "db.sqlite"), CONNECT_TIMEOUT=CONNECT_TIMEOUT,
        PING_INTERVAL=1, PING_TIMEOUT=5,
    ).start()  # fmt: skip
    try:
        started = time.monotonic()
        wire, _ = Wire.engine(server.port)
        with wire, pytest.raises(Closed):
            while time.monotonic() - started < WAIT:
                wire.text()  # answers the pings
        assert time.monotonic() - started >= CONNECT_TIMEOUT
        samples = scrape(f"{server.url}/metrics")
        assert value(samples, "chainpulse_realtime_refusals_total", reason="connect timeout") == 1
    finally:
        server.stop()


def test_a_disconnect_from_the_namespace(server: Server) -> None:
    wire = Wire.realtime(server.port)
    with wire:
        wire.send_text(f"41{NS},")
        opcode, payload = wire.frame()
        assert payload == b"2"  # nothing but the heartbeat from then on


def test_an_event_and_an_event_with_an_ack(server: Server) -> None:
    with Wire.realtime(server.port) as wire:
        wire.send_text(f'42{NS},["ping"]')
        assert "timestamp" in wire.event("pong")
        wire.send_text(f'42{NS},456["ping"]')
        assert wire.until(lambda t: t.startswith("43")) == f"43{NS},456[]"


def test_binary_attachments_are_refused(server: Server) -> None:
    """Deliberate: no chainpulse event carries binary data."""
    with Wire.realtime(server.port) as wire:
        wire.send_text(f'451-{NS},["ping",{{"_placeholder":true,"num":0}}]')
        assert wire.event("exception")["message"] == "Binary messages are not accepted"


@pytest.mark.parametrize("frame", ["4abc", f"42{NS},{{}}", f'42{NS},abc["ping"]'])
def test_malformed_packets_on_the_namespace_are_answered_and_survived(
    server: Server, frame: str
) -> None:
    """Deliberate: the reference server closes the connection on an unknown packet
    type, a payload that is not a list or an invalid ack id; chainpulse answers
    `Malformed packet` and keeps the session (docs/protocol.md)."""
    with Wire.realtime(server.port) as wire:
        wire.send_text(frame)
        assert wire.event("exception")["message"] == "Malformed packet"
        wire.send_text(f'42{NS},["ping"]')
        assert "timestamp" in wire.event("pong")
