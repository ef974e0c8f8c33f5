"""Floods from one address and slow clients: a per-address cap, a connect rate, and
half-sent requests timed out, while well-behaved clients carry on."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import pytest
import websocket

from chainpulse.devnet import wait_until
from tests.harness.events import Stream, block_event
from tests.harness.realtime import WAIT, Client, RawSocket, Server

StartServer = Callable[..., Server]
Connect = Callable[..., Client]


def refused_handshake(server: Server, headers: list[str] | None = None) -> str:
    """The body of a refused WebSocket handshake (raises if it was accepted)."""
    url = f"ws://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket"
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(url, timeout=WAIT, header=headers or [])
    assert refused.value.status_code == 401
    return refused.value.resp_body.decode() if refused.value.resp_body else ""


def test_the_per_address_cap_refuses_the_next_connection_and_frees_on_close(
    start_server: StartServer,
) -> None:
    server = start_server(MAX_CONNECTIONS_PER_ADDRESS="3")
    held = [RawSocket(server) for _ in range(3)]
    for raw in held:
        raw.event("connected")
    assert "Too many connections from this address" in refused_handshake(server)
    held.pop().close()

    def admitted() -> bool:
        raw = RawSocket(server)
        held.append(raw)
        return True

    wait_until(admitted, WAIT, "a place freed by the close")
    for raw in held:
        raw.close()
    assert 'refusals_total{reason="Too many connections from this address"}' in (
        server.get("/metrics").text
    )


def test_a_trusted_forwarded_header_names_the_address(start_server: StartServer) -> None:
    server = start_server(MAX_CONNECTIONS_PER_ADDRESS="1", TRUSTED_PROXY_HEADER="X-Forwarded-For")
    url = f"ws://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket"
    first = websocket.create_connection(url, timeout=WAIT, header=["X-Forwarded-For: 10.1.1.1"])
    # a forged entry before the proxy's own counts for nothing: the last entry decides
    second = websocket.create_connection(
        url, timeout=WAIT, header=["X-Forwarded-For: 10.1.1.1, 10.2.2.2"]
    )
    assert "Too many connections" in refused_handshake(
        server, ["X-Forwarded-For: 10.9.9.9, 10.1.1.1"]
    )
    first.close()
    second.close()


def test_the_connect_rate_refuses_a_burst_from_one_address(start_server: StartServer) -> None:
    server = start_server(CONNECT_RATE="1")  # ten per ten seconds
    opened = [RawSocket(server, connect_namespace=False) for _ in range(10)]
    assert "Too many connection attempts" in refused_handshake(server)
    for raw in opened:
        raw.close()


def test_half_sent_requests_are_closed_and_live_clients_are_not(
    start_server: StartServer, clients: Connect, stream: Stream
) -> None:
    # the timeout is shorter than the silence between two pings: WebSockets must not be
    # held to it
    server = start_server(PING_INTERVAL="2", PING_TIMEOUT="2", HTTP_TIMEOUT="1")
    live = clients(server)
    slow = []
    for _ in range(50):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the end
        slow.append(sock)
    time.sleep(5)  # five times HTTP_TIMEOUT, and two heartbeats
    for sock in slow:
        assert sock.recv(100) == b""  # closed by the server
        sock.close()
    assert live.sio.connected
    stream.append(block_event(1))
    assert live.wait_for("new-block")[0]["number"] == 1
