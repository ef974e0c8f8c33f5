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
        "connection.Connection: a WebSocket read from the hub",
    ),
    (eventlet.hubs.hub.BaseHub, "remove", ["self", "listener"], "connection.Connection"),
    (engineio_socket.Socket, "check_ping_timeout", ["self"], "engineio_server"),
    (engineio_socket.Socket, "send", ["self", "pkt"], "engineio_server"),
    (
        engineio_socket.Socket,
        "close",
        ["self", "wait", "abort", "reason"],
        "engineio_server; socketio_server.close_sessions (SIGTERM)",
    ),
    (eventlet.queue.Queue, "_put", ["self", "item"], "engineio_server: HeartbeatFirstQueue"),
    (
        eventlet.wsgi.HttpProtocol,
        "__init__",
        ["self", "conn_state", "server"],
        "server: Protocol serves a WebSocket connect itself (connection.first_request)",
    ),
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


def test_the_first_request_is_handed_to_our_protocol_as_we_expect() -> None:
    """connection.first_request: eventlet.wsgi's accept loop builds the protocol with
    `[address, socket, state]` (the socket with HTTP_TIMEOUT as its timeout) through the
    `protocol` option of `eventlet.wsgi.server`."""
    assert "protocol" in inspect.signature(eventlet.wsgi.server).parameters
    loop = inspect.getsource(eventlet.wsgi.server)
    assert "client_socket.settimeout(serv.socket_timeout)" in loop
    assert "[client_addr, client_socket, STATE_IDLE]" in loop
    assert "self.protocol(conn_state, self)" in inspect.getsource(eventlet.wsgi.Server)


def test_the_request_pool_we_give_the_accept_loop_is_used_as_we_expect() -> None:
    """greenthreads.RequestPool is eventlet.wsgi.server's `custom_pool`: the accept loop
    calls `spawn(process_request, connection)`, links its clean-up to what `spawn`
    returns, and `waitall()`s when it stops. greenthreads.GreenThreads switches into
    parked greenlets from the hub: the hub's greenlet is `hub.greenlet`, and
    `hub.switch()` from a green thread returns what the next `switch` hands it."""
    assert "custom_pool" in inspect.signature(eventlet.wsgi.server).parameters
    loop = inspect.getsource(eventlet.wsgi.server)
    assert "pool.spawn(serv.process_request, connection)" in loop
    assert ".link(_clean_connection, connection)" in loop
    assert "pool.waitall()" in loop
    hub = inspect.getsource(eventlet.hubs.hub.BaseHub.switch)
    assert "return self.greenlet.switch()" in hub


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


def test_a_websocket_can_outlive_its_wsgi_request_as_we_take_its_socket() -> None:
    """connection.WebSocketDriver takes the socket from eventlet.wsgi: its environ holds
    `eventlet.input` (whose `get_socket` is the connection's GreenSocket, which keeps
    the real socket as `fd`, which we detach) and `eventlet.set_idle`; setting
    `WSGI_LOCAL.already_handled` makes it write no response of its own."""
    environ = inspect.getsource(eventlet.wsgi.HttpProtocol.get_environ)
    assert "env['eventlet.input'] = Input(" in environ.replace("env['wsgi.input'] = ", "")
    assert "env['eventlet.set_idle'] = set_idle" in environ
    assert "return self._sock" in inspect.getsource(eventlet.wsgi.Input.get_socket)
    respond = inspect.getsource(eventlet.wsgi.HttpProtocol.handle_one_response)
    assert "if WSGI_LOCAL.already_handled:" in respond
    green = inspect.getsource(eventlet.greenio.GreenSocket.__init__)
    assert "fd = family" in green and "self.fd = fd" in green
