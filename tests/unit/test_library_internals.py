"""Every private method or attribute of python-socketio, python-engineio, eventlet and
kombu that chainpulse overrides or calls, checked against the installed versions.

requirements.lock pins the versions these were tested with; after `make lock UPGRADE=1`
this test names the one that moved. Each row says where chainpulse relies on it.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from typing import Any

import engineio
import kombu
import pytest
import socketio
from engineio import packet, payload
from engineio import socket as engineio_socket
from kombu.transport import redis as kombu_redis

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    import eventlet.greenio
    import eventlet.hubs.hub
    import eventlet.queue
    import eventlet.websocket
    import eventlet.wsgi

# (class, method, its parameters as chainpulse calls or overrides them, who relies on it)
METHODS: list[tuple[type, str, list[str], str]] = [
    (socketio.Server, "_handle_eio_message", ["self", "eio_sid", "data"], "socketio_server"),
    (
        socketio.Server,
        "_handle_connect",
        ["self", "eio_sid", "namespace", "data"],
        "socketio_server",
    ),
    (
        socketio.Server,
        "_handle_event",
        ["self", "eio_sid", "namespace", "id", "data"],
        "socketio_server",
    ),
    (socketio.Server, "_engineio_server_class", ["self"], "socketio_server"),
    (socketio.Server, "_handle_eio_connect", ["self", "eio_sid", "environ"], "admission"),
    (socketio.Server, "_handle_eio_disconnect", ["self", "eio_sid", "reason"], "admission"),
    (socketio.Client, "_engineio_client_class", ["self"], "client"),
    (engineio.Client, "_trigger_event", ["self", "event", "args", "kwargs"], "client"),
    (engineio.Client, "_reset", ["self"], "client: closes a lost WebSocket"),
    (engineio.Server, "start_background_task", ["self", "target", "args", "kwargs"], "engineio"),
    (engineio.Server, "create_queue", ["self", "args", "kwargs"], "engineio_server"),
    (engineio.Server, "send_packet", ["self", "sid", "pkt"], "engineio_server"),
    (engineio_socket.Socket, "_send_ping", ["self"], "engineio_server: heartbeat timers"),
    (engineio.Server, "_get_socket", ["self", "sid"], "engineio_server: FanoutSocket"),
    (engineio.Server, "disconnect", ["self", "sid"], "engineio_server"),
    (engineio_socket.Socket, "handle_post_request", ["self", "environ"], "FanoutSocket"),
    (engineio_socket.Socket, "receive", ["self", "pkt"], "FanoutSocket"),
    (
        engineio_socket.Socket,
        "_websocket_handler",
        ["self", "ws"],
        "FanoutSocket: the WebSocket handler without a writer green thread",
    ),
    (eventlet.queue.Queue, "task_done", ["self"], "FanoutSocket: the writer"),
    (
        eventlet.hubs.hub.BaseHub,
        "add",
        ["self", "evtype", "fileno", "cb", "tb", "mark_as_closed"],
        "engineio_server._Connection: a WebSocket read from the hub",
    ),
    (eventlet.hubs.hub.BaseHub, "remove", ["self", "listener"], "engineio_server._Connection"),
    (engineio_socket.Socket, "check_ping_timeout", ["self"], "engineio_server"),
    (engineio_socket.Socket, "send", ["self", "pkt"], "engineio_server"),
    (
        engineio_socket.Socket,
        "close",
        ["self", "wait", "abort", "reason"],
        "engineio_server; socketio_server.close_sessions (SIGTERM)",
    ),
    (eventlet.websocket.RFC6455WebSocket, "_send", ["self", "frame"], "engineio_server"),
    (
        eventlet.websocket.RFC6455WebSocket,
        "_pack_message",
        ["self", "message", "masked", "continuation", "final", "control_code"],
        "engineio_server: Frame",
    ),
    (
        eventlet.websocket.WebSocketWSGI,
        "_negotiate_permessage_deflate",
        ["self", "extensions"],
        "engineio_server",
    ),
    (
        eventlet.websocket.WebSocketWSGI,
        "__init__",
        ["self", "handler", "max_frame_length"],
        "engineio_server",
    ),
    (eventlet.queue.Queue, "_put", ["self", "item"], "engineio_server: HeartbeatFirstQueue"),
    (eventlet.wsgi.HttpProtocol, "handle_one_response", ["self"], "server: WebSocket timeout"),
    (eventlet.queue.Queue, "_put_bookkeeping", ["self"], "engineio_server"),
    (eventlet.queue.Queue, "get", ["self", "block", "timeout"], "engineio_server"),
    (socketio.RedisManager, "_publish", ["self", "data"], "bus: canary"),
    (socketio.RedisManager, "_redis_connect", ["self"], "bus"),
    (socketio.RedisManager, "_listen", ["self"], "bus"),
    (socketio.RedisManager, "_redis_listen_with_retries", ["self"], "bus"),
    (socketio.RedisManager, "_handle_emit", ["self", "message"], "bus: publish_private"),
    (
        socketio.Manager,
        "basic_enter_room",
        ["self", "sid", "namespace", "room", "eio_sid"],
        "rooms",
    ),
    (socketio.Manager, "basic_leave_room", ["self", "sid", "namespace", "room"], "rooms"),
    (socketio.Manager, "basic_disconnect", ["self", "sid", "namespace", "kwargs"], "rooms"),
    (
        kombu_redis.Channel,
        "basic_publish",
        ["self", "message", "exchange", "routing_key", "kwargs"],
        "follower.queue: fenced enqueue (_publish_batch)",
    ),
    (kombu.Producer, "batch", ["self", "max_size"], "follower.queue"),
    (kombu_redis.QoS, "restore_unacked", ["self", "client"], "workers.transport"),
    (kombu_redis.Channel, "_connparams", ["self", "asynchronous"], "workers.transport"),
]

# (what to build, attribute, who relies on it)
ATTRIBUTES: list[tuple[str, str, str]] = [
    ("socketio.Server", "_binary_packet", "socketio_server: binary refusal"),
    ("socketio.Server", "reserved_events", "socketio_server"),
    ("socketio.Server", "environ", "gateway: trims the WSGI environ"),
    ("engineio.Client", "ws", "client: closes a lost WebSocket"),
    ("engineio.Server", "_async", "engineio_server: the websocket driver"),
    ("engineio.Server", "sockets", "engineio_server; socketio_server.close_sessions, server.drain"),
    ("socketio.Manager", "rooms", "feed: fan-out"),
    ("socketio.Manager", "callbacks", "rooms"),
    ("socketio.Manager", "pending_connect", "rooms"),
    ("socketio.Manager", "pending_disconnect", "rooms"),
    ("engineio.Socket", "queue", "engineio_server"),
    ("engineio.Socket", "upgraded", "engineio_server: direct writes"),
    ("engineio.Socket", "upgrading", "engineio_server"),
    ("engineio.Socket", "connected", "FanoutSocket: an upgrade from long-polling"),
    ("engineio.Socket", "closing", "engineio_server"),
    ("engineio.Socket", "closed", "engineio_server"),
    ("engineio.Socket", "last_ping", "engineio_server: heartbeat timers"),
    ("engineio.Packet", "encode_cache", "engineio_server: frames encoded once"),
    ("eventlet.Queue", "queue", "engineio_server: pings first"),
    ("kombu.Channel", "supports_batch_publish", "follower.queue"),
    ("kombu.Channel", "create_publish_batch", "follower.queue"),
    ("kombu.Channel", "unacked_key", "chainpulse.backfill: lost jobs"),
]


def _build(what: str) -> Any:
    server = engineio.Server(async_mode="threading")
    makers: dict[str, Callable[[], Any]] = {
        "socketio.Server": lambda: socketio.Server(async_mode="threading"),
        "engineio.Server": lambda: server,
        "engineio.Client": engineio.Client,
        "socketio.Manager": lambda: socketio.Server(async_mode="threading").manager,
        "engineio.Socket": lambda: engineio_socket.Socket(server, "sid"),
        "engineio.Packet": lambda: packet.Packet(packet.MESSAGE, data="x"),
        "eventlet.Queue": eventlet.queue.Queue,
        "kombu.Channel": lambda: kombu_redis.Channel,
    }
    return makers[what]()


@pytest.mark.parametrize(("cls", "name", "params", "user"), METHODS, ids=lambda v: str(v))
def test_a_private_method_we_rely_on_is_there_with_its_parameters(
    cls: type, name: str, params: list[str], user: str
) -> None:
    where = f"{cls.__module__}.{cls.__qualname__}.{name} (used by {user})"
    method = getattr(cls, name, None)
    assert callable(method), f"{where} is missing"
    assert list(inspect.signature(method).parameters) == params, f"{where} changed signature"


@pytest.mark.parametrize(("what", "name", "user"), ATTRIBUTES, ids=lambda v: str(v))
def test_a_private_attribute_we_rely_on_is_there(what: str, name: str, user: str) -> None:
    assert hasattr(_build(what), name), f"{what}.{name} (used by {user}) is missing"


def test_the_held_jobs_the_mended_transport_forgets_are_where_it_looks() -> None:
    """workers.transport clears `QoS._delivered` (what `restore_unacked` walks) and asks
    `Channel.connection.client` (what `_connparams` reads) whether the broker is gone."""
    assert "self._delivered" in inspect.getsource(kombu_redis.QoS.restore_unacked)
    assert "self.connection.client" in inspect.getsource(kombu_redis.Channel._connparams)
    assert issubclass(kombu_redis.Transport.Channel, kombu_redis.Channel)


def test_the_request_our_protocol_reads_before_a_response_is_where_it_looks() -> None:
    """realtime.server's Protocol reads `self.headers` and `self.connection` (the socket
    whose timeout it clears for a WebSocket) in `handle_one_response`."""
    source = inspect.getsource(eventlet.wsgi.HttpProtocol)
    assert "self.connection = self.request" in source
    assert "self.headers" in inspect.getsource(eventlet.wsgi.HttpProtocol.handle_one_response)


def test_the_polling_decoder_limit_is_the_one_our_responses_keep_to() -> None:
    """python-engineio clients refuse a polling response of more than 16 packets
    (engineio_server.POLL_BATCH_MAX); FanoutSocket lifts the same limit for what the
    server decodes, through the class attribute its decoder reads."""
    assert payload.Payload.max_decode_packets == 16
    assert "self.max_decode_packets" in inspect.getsource(payload.Payload.decode)
    source = inspect.getsource(engineio_socket.Socket.handle_post_request)
    assert "payload.Payload(encoded_payload=" in source and "self.receive(" in source


def test_the_websocket_handler_we_replace_is_reached_through_the_driver() -> None:
    """FanoutSocket replaces `Socket._websocket_handler` (python-engineio's reads, the
    upgrade probe and a writer green thread); engineio_server's WebSocket driver finds
    the session as the handler's `__self__`, handed over by `_upgrade_websocket`, and
    python-engineio's handler still ends a session by queueing None for its writer."""
    upgrade = inspect.getsource(engineio_socket.Socket._upgrade_websocket)
    assert "self._websocket_handler, self.server" in upgrade
    handler = inspect.getsource(engineio_socket.Socket._websocket_handler)
    assert "self.queue.put(None)" in handler and "packet.UPGRADE" in handler


def test_a_websocket_can_outlive_its_wsgi_request_as_we_hand_it_over() -> None:
    """engineio_server._Connection.hand_over: eventlet's WebSocketWSGI sends a closing
    frame right after the handler returns (which we skip once); the WebSocket reads and
    writes `self.socket` (which we replace) and reads a frame's exact length, never
    beyond it (so a peek at the socket says whether another frame has begun); a
    GreenSocket wraps an existing socket and keeps it as `fd` (which we detach)."""
    call = inspect.getsource(eventlet.websocket.WebSocketWSGI.__call__)
    assert call.index("self.handler(ws)") < call.index("ws._send_closing_frame(True)")
    rfc = eventlet.websocket.RFC6455WebSocket
    assert "self.socket.recv(numbytes - len(data))" in inspect.getsource(rfc._get_bytes)
    assert "self.socket.sendall(frame)" in inspect.getsource(rfc._send)
    assert "self.socket.close()" in inspect.getsource(rfc.close)
    green = inspect.getsource(eventlet.greenio.GreenSocket.__init__)
    assert "fd = family" in green and "self.fd = fd" in green
