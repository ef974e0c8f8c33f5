"""Two server processes on one Redis; and one server across a Redis restart."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import jwt
import pytest

from chainpulse.devnet import RedisServer, wait_until
from tests.harness.events import Stream, block_event
from tests.harness.realtime import SECRET, WAIT, Client, Server
from tests.harness.seeded import make_database

StartServer = Callable[..., Server]
Connect = Callable[..., Client]


def token(sub: str) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time()) + 600}, SECRET, algorithm="HS256")


def numbers(client: Client) -> list[int]:
    return [b["number"] for b in client.of("new-block")]


def test_two_processes_every_block_once_and_private_messages_cross(
    start_server: StartServer, clients: Connect, stream: Stream
) -> None:
    a, b = start_server(), start_server()
    alice = clients(a, auth={"token": token("alice")})
    bob = clients(b, auth={"token": token("bob")})
    watchers = [clients(a), clients(b), clients(a, transports=["polling"])]
    stream.append(block_event(1), block_event(3), block_event(2), block_event(2))
    stream.append(*(block_event(n) for n in range(4, 21)))
    everyone = [alice, bob, *watchers]
    for client in everyone:
        client.wait_for("new-block", 20)
    assert alice.call("private-message", {"to": "bob", "message": "a->b"}) == {"success": True}
    assert bob.call("private-message", {"to": "alice", "message": "b->a"}) == {"success": True}
    assert bob.wait_for("private-message")[0]["message"] == "a->b"
    assert alice.wait_for("private-message")[0]["message"] == "b->a"
    stream.append(block_event(21))  # a marker: anything duplicated would have arrived by now
    for client in everyone:
        client.wait_for("new-block", 21)
        assert numbers(client) == list(range(1, 22))
    assert len(alice.of("private-message")) == 1 and len(bob.of("private-message")) == 1


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def test_redis_restart_loses_nothing_for_connected_clients(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    server = Server(own_redis.url, make_database(tmp_path / "db.sqlite")).start()
    try:
        alice = Client(server, auth={"token": token("alice")}).connect()
        bob = Client(server, auth={"token": token("bob")}).connect()
        Stream(own_redis.url).append(block_event(1))
        alice.wait_for("new-block")
        own_redis.stop()
        down = alice.call("private-message", {"to": "bob", "message": "lost"})
        assert down == {"success": False, "error": "Private messages are unavailable"}
        wait_until(lambda: server.get("/readyz").status_code == 503, WAIT, "readyz to fail")
        own_redis.start()  # empty: Redis lost the stream with everything else
        Stream(own_redis.url).append(block_event(2), block_event(3))
        alice.wait_for("new-block", 3)
        assert numbers(alice) == [1, 2, 3]
        wait_until(lambda: server.get("/readyz").status_code == 200, WAIT * 2, "readyz again")
        assert alice.call("private-message", {"to": "bob", "message": "back"}) == {"success": True}
        assert [m["message"] for m in bob.wait_for("private-message")] == ["back"]
        alice.close()
        bob.close()
    finally:
        server.stop()


def test_a_silent_pubsub_listener_is_reported(own_redis: RedisServer, tmp_path: Path) -> None:
    import redis

    server = Server(own_redis.url, make_database(tmp_path / "db.sqlite")).start()
    try:
        assert "chainpulse_realtime_pubsub_healthy 1.0" in server.get("/metrics").text
        # Redis still answers PING, but no PUBLISH gets through: the canary goes unheard
        redis.Redis.from_url(own_redis.url).execute_command("CLIENT", "PAUSE", "2500", "WRITE")
        wait_until(lambda: server.get("/readyz").status_code == 503, WAIT, "readyz to fail")
        checks = server.get("/readyz").json()
        assert checks["redis"] == "ok" and checks["pubsub"].startswith("silent for")
        assert "chainpulse_realtime_pubsub_healthy 0.0" in server.get("/metrics").text
        wait_until(lambda: server.get("/readyz").status_code == 200, WAIT, "the canary again")
    finally:
        server.stop()
