"""The guard on a real server: optional and required auth, private messages, expiry."""

from __future__ import annotations

import time
from collections.abc import Callable

import jwt
import pytest
import socketio

from chainpulse.devnet import wait_until
from tests.harness.events import Stream, block_event
from tests.harness.realtime import SECRET, WAIT, Client, Server

StartServer = Callable[..., Server]
Connect = Callable[..., Client]


def token(sub: str, ttl: float = 600, key: str = SECRET) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time() + ttl)}, key, algorithm="HS256")


def guarded_actions_without_or_with_a_bad_token(server: Server, clients: Connect) -> None:
    anonymous = clients(server)
    forged = clients(server, auth={"token": token("alice", key="f" * 32)})
    for client, error in ((anonymous, "Unauthorized"), (forged, "Invalid token")):
        answer = client.call("private-message", {"to": "bob", "message": "hi"})
        assert answer == {"success": False, "error": error}
        assert client.call("subscribe", {"channel": "user:alice"}) == answer
        assert [e["message"] for e in client.wait_for("exception", 2)] == [error, error]
        # public feeds still work
        assert client.call("subscribe", {"channel": "price:ETH"})["success"] is True


def test_guarded_actions_and_private_messages(start_server: StartServer, clients: Connect) -> None:
    server = start_server()
    guarded_actions_without_or_with_a_bad_token(server, clients)
    alice = clients(server, auth={"token": token("alice")})
    bob = clients(server, auth={"token": token("bob")})
    eve = clients(server, auth={"token": token("eve")})
    assert eve.call("subscribe", {"channel": "user:bob"}) == {
        "success": False,
        "error": "Forbidden",
    }
    assert bob.call("subscribe", {"channel": "user:bob"}) == {
        "success": True,
        "channel": "user:bob",
    }
    assert alice.call("private-message", {"to": "bob", "message": "hi bob"}) == {"success": True}
    got = bob.wait_for("private-message")[0]
    assert got["from"] == "alice" and got["message"] == "hi bob"
    assert isinstance(got["timestamp"], int)
    bad = alice.call("private-message", {"to": "bob"})
    assert bad["success"] is False and bad["error"].startswith("Invalid payload")
    alice.emit("ping")
    alice.wait_for("pong")
    eve.emit("ping")
    eve.wait_for("pong")
    assert eve.of("private-message") == [] and alice.of("private-message") == []


def test_required_auth_refuses_the_handshake_and_disconnects_at_expiry(
    start_server: StartServer,
) -> None:
    server = start_server(REQUIRE_AUTH="true")
    cases = [
        (None, "Unauthorized"),
        ({"token": ""}, "Unauthorized"),
        ({"token": "garbage"}, "Invalid token"),
        ({"token": token("alice", ttl=-30)}, "Invalid token"),
    ]
    for auth, message in cases:
        client = Client(server, auth=auth)
        with pytest.raises(socketio.exceptions.ConnectionError):
            client.connect()
        assert client.connect_error == {"message": message}
        client.close()
    expiring = Client(server, auth={"token": token("alice", ttl=2)}).connect()
    wait_until(lambda: not expiring.sio.connected, WAIT, "the disconnect at expiry")
    assert expiring.of("exception") == [{"status": "error", "message": "Token expired"}]
    expiring.close()
    metrics = server.get("/metrics").text
    assert 'chainpulse_realtime_refusals_total{reason="auth"} 4.0' in metrics


def test_token_expiry_drops_private_rights_but_keeps_public_feeds(
    start_server: StartServer, clients: Connect, stream: Stream
) -> None:
    server = start_server()
    alice = clients(server, auth={"token": token("alice", ttl=2)})
    bob = clients(server, auth={"token": token("bob")})
    assert alice.call("private-message", {"to": "bob", "message": "1"}) == {"success": True}
    assert alice.wait_for("exception", timeout=WAIT)[0]["message"] == "Token expired"
    assert alice.call("private-message", {"to": "bob", "message": "2"}) == {
        "success": False,
        "error": "Invalid token",
    }
    assert bob.call("private-message", {"to": "alice", "message": "3"}) == {"success": True}
    stream.append(block_event(1))
    alice.wait_for("new-block")
    bob.wait_for("new-block")
    assert alice.of("private-message") == []  # left user:alice at expiry
    assert [m["message"] for m in bob.of("private-message")] == ["1"]
