"""The JWT matrix on a real server (issue: hostile input): every token that must not
pass is refused with the documented error, no client reaches another subject's
`user:` room or its private messages, the server logs no traceback, and a
well-behaved client keeps receiving `new-block` throughout.

A token is read only from `handshake.auth.token`, as the reference's guard does: one in
the query string or in an `Authorization` header is no token at all."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
import socketio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.harness.events import Stream, block_event
from tests.harness.realtime import NS, SECRET, WAIT, Client, Server

StartServer = Callable[..., Server]
Connect = Callable[..., Client]

AUDIENCE, ISSUER = "dapp", "chainpulse-tests"


def claims(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"sub": "alice", "aud": AUDIENCE, "iss": ISSUER}
    base["exp"] = int(time.time()) + 600
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def hs(key: str = SECRET, **changes: Any) -> str:
    return jwt.encode(claims(**changes), key, algorithm="HS256")


def unsigned(**changes: Any) -> str:
    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims(**changes))}."


BAD_TOKENS = {
    "alg none": unsigned(),
    "wrong secret": hs(key="w" * 32),
    "expired": hs(exp=int(time.time()) - 30),
    "not yet valid": hs(nbf=int(time.time()) + 86_400),
    "wrong audience": hs(aud="another-app"),
    "no audience": hs(aud=None),
    "wrong issuer": hs(iss="someone-else"),
    "no subject": hs(sub=None),
    "numeric subject": jwt.encode(claims(sub=42), SECRET, algorithm="HS256"),
    "empty subject": hs(sub=""),
    "not a JWT": "a.b.c",
    "not a string": 12345,
}


def private_rights(client: Client) -> tuple[Any, Any]:
    """What a client gets asking for alice's room and sending as someone."""
    return (
        client.call("subscribe", {"channel": "user:alice"}),
        client.call("private-message", {"to": "alice", "message": "hi"}),
    )


def refused(error: str) -> tuple[dict[str, Any], dict[str, Any]]:
    answer = {"success": False, "error": error}
    return answer, answer


@pytest.fixture
def server(start_server: StartServer) -> Server:
    return start_server(JWT_AUDIENCE=AUDIENCE, JWT_ISSUER=ISSUER)


def test_every_bad_token_is_refused_and_the_feed_carries_on(
    server: Server, clients: Connect, stream: Stream
) -> None:
    watcher = clients(server)  # anonymous: public feeds need no token
    alice = clients(server, auth={"token": hs()})
    assert private_rights(alice) == ({"success": True, "channel": "user:alice"}, {"success": True})
    for height, (name, token) in enumerate(BAD_TOKENS.items(), start=1):
        intruder = clients(server, auth={"token": token})
        assert private_rights(intruder) == refused("Invalid token"), name
        assert intruder.call("subscribe", {"channel": "price:ETH"})["success"] is True, name
        stream.append(block_event(height))
        assert watcher.wait_for("new-block", height)[-1]["number"] == height, name
        intruder.close()
    # alice's own note to herself is all she got: no intruder's message reached her
    assert [m["message"] for m in alice.of("private-message")] == ["hi"]
    assert "Traceback" not in server.log()


def test_a_token_outside_handshake_auth_is_no_token(server: Server) -> None:
    good = hs()
    client = Client(server)
    client.sio.connect(
        f"{server.url}?token={good}",
        headers={"Authorization": f"Bearer {good}"},
        namespaces=[NS],
        transports=["websocket"],
        wait_timeout=WAIT,
    )
    try:
        client.wait_for("connected")
        assert private_rights(client) == refused("Unauthorized")
    finally:
        client.close()


def test_a_100_kb_token_is_refused_and_the_server_carries_on(
    server: Server, clients: Connect, stream: Stream
) -> None:
    watcher = clients(server)
    huge = Client(server, auth={"token": hs(padding="x" * 100_000)})
    with pytest.raises(socketio.exceptions.ConnectionError):
        huge.connect()
    assert huge.connect_error == {"message": "Message too large"}  # answered, not left waiting
    huge.close()
    stream.append(block_event(1))
    assert watcher.wait_for("new-block")[0]["number"] == 1
    assert "Traceback" not in server.log()


def test_required_auth_refuses_every_bad_token_at_the_handshake(
    start_server: StartServer,
) -> None:
    server = start_server(REQUIRE_AUTH="true", JWT_AUDIENCE=AUDIENCE, JWT_ISSUER=ISSUER)
    for name, token in BAD_TOKENS.items():
        client = Client(server, auth={"token": token})
        with pytest.raises(socketio.exceptions.ConnectionError):
            client.connect()
        assert client.connect_error == {"message": "Invalid token"}, name
        client.close()
    assert Client(server, auth={"token": hs()}).connect().sio.connected
    assert "Traceback" not in server.log()


def test_an_rs256_server_refuses_an_hs256_token_signed_with_its_public_key(
    start_server: StartServer, clients: Connect
) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    server = start_server(JWT_PUBLIC_KEY=public_pem, JWT_AUDIENCE=AUDIENCE, JWT_ISSUER=ISSUER)
    good = clients(server, auth={"token": jwt.encode(claims(), private, algorithm="RS256")})
    assert private_rights(good)[0] == {"success": True, "channel": "user:alice"}
    header = {"alg": "HS256", "typ": "JWT"}
    parts = [
        base64.urlsafe_b64encode(json.dumps(p).encode()).rstrip(b"=") for p in (header, claims())
    ]
    signing_input = b".".join(parts)
    signature = hmac.new(public_pem.encode(), signing_input, hashlib.sha256).digest()
    confused = (signing_input + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode()
    intruder = clients(server, auth={"token": confused})
    assert private_rights(intruder) == refused("Invalid token")
    assert "Traceback" not in server.log()
