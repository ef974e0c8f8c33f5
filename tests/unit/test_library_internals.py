"""Every private method or attribute of python-socketio, python-engineio, eventlet,
kombu and Celery that chainpulse overrides or calls, checked against the installed
versions. The server's are used under realtime/transport/ only (a test holds that).

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
from celery.utils.time import get_exponential_backoff_interval
from engineio import packet, payload
from engineio import socket as engineio_socket
from kombu.transport import redis as kombu_redis

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    import eventlet.greenio
    import eventlet.hubs.hub
    import eventlet.queue
    import eventlet.wsgi

SOCKET_SERVER = "transport/socketio_server.py"
ENGINE = "transport/engine.py"
CONNECTION = "transport/connection.py"
PUBSUB = "transport/pubsub.py"
ROOMS = "transport/rooms.py"
LISTENER = "transport/listener.py"
GREEN = "transport/greenthreads.py"
FANOUT = "transport/socket_fanout.py"
CLIENT = "client.py"  # the Python client (python-socketio's client side)

# (class, method, its parameters as chainpulse calls or overrides them, who relies on it:
# a file under realtime/ for python-socketio, python-engineio and eventlet)
METHODS: list[tuple[type, str, list[str], str]] = [
    (socketio.Server, "_handle_eio_message", ["self", "eio_sid", "data"], SOCKET_SERVER),
    (socketio.Server, "_handle_connect", ["self", "eio_sid", "namespace", "data"], SOCKET_SERVER),
    (
        socketio.Server,
        "_handle_event",
        ["self", "eio_sid", "namespace", "id", "data"],
        SOCKET_SERVER,
    ),
    (socketio.Server, "_engineio_server_class", ["self"], SOCKET_SERVER),
    (socketio.Server, "_handle_eio_connect", ["self", "eio_sid", "environ"], SOCKET_SERVER),
    (socketio.Server, "_handle_eio_disconnect", ["self", "eio_sid", "reason"], SOCKET_SERVER),
    (socketio.Client, "_engineio_client_class", ["self"], CLIENT),
    (engineio.Client, "_trigger_event", ["self", "event", "args", "kwargs"], CLIENT),
    (engineio.Client, "_reset", ["self"], f"{CLIENT}: closes a lost WebSocket"),
    (engineio.Server, "start_background_task", ["self", "target", "args", "kwargs"], ENGINE),
    (engineio.Server, "create_queue", ["self", "args", "kwargs"], ENGINE),
    (engineio.Server, "send_packet", ["self", "sid", "pkt"], ENGINE),
    (engineio.Server, "handle_request", ["self", "environ", "start_response"], ENGINE),
    (
        engineio.Server,
        "_handle_connect",
        ["self", "environ", "start_response", "transport", "jsonp_index"],
        f"{ENGINE}: the handshake, a FanoutSocket from the start",
    ),
    (engineio.Server, "_service_task", ["self"], ENGINE),
    (engineio.Server, "_upgrades", ["self", "sid", "transport"], ENGINE),
    (engineio.Server, "_ok", ["self", "packets", "headers", "jsonp_index"], ENGINE),
    (engineio.Server, "_bad_request", ["self", "message"], ENGINE),
    (engineio.Server, "_unauthorized", ["self", "message"], ENGINE),
    (engineio.Server, "_trigger_event", ["self", "event", "args", "kwargs"], ENGINE),
    (engineio.Server, "generate_id", ["self"], ENGINE),
    (engineio_socket.Socket, "__init__", ["self", "server", "sid"], ENGINE),
    (engineio_socket.Socket, "_send_ping", ["self"], f"{ENGINE}: heartbeat timers"),
    (engineio_socket.Socket, "schedule_ping", ["self"], ENGINE),
    (engineio_socket.Socket, "poll", ["self"], ENGINE),
    (engineio.Server, "disconnect", ["self", "sid"], ENGINE),
    (engineio_socket.Socket, "handle_get_request", ["self", "environ", "start_response"], ENGINE),
    (engineio_socket.Socket, "handle_post_request", ["self", "environ"], ENGINE),
    (engineio_socket.Socket, "receive", ["self", "pkt"], ENGINE),
    (
        engineio_socket.Socket,
        "_websocket_handler",
        ["self", "ws"],
        f"{ENGINE}: the WebSocket handler without a writer green thread",
    ),
    (eventlet.queue.Queue, "task_done", ["self"], f"{ENGINE}: the writer"),
    (
        eventlet.hubs.hub.BaseHub,
        "add",
        ["self", "evtype", "fileno", "cb", "tb", "mark_as_closed"],
        f"{CONNECTION}: a WebSocket read from the hub",
    ),
    (eventlet.hubs.hub.BaseHub, "remove", ["self", "listener"], CONNECTION),
    (engineio_socket.Socket, "check_ping_timeout", ["self"], ENGINE),
    (engineio_socket.Socket, "send", ["self", "pkt"], ENGINE),
    (
        engineio_socket.Socket,
        "close",
        ["self", "wait", "abort", "reason"],
        f"{ENGINE}; {SOCKET_SERVER}: close_sessions (SIGTERM), a session's close",
    ),
    (eventlet.queue.Queue, "_put", ["self", "item"], f"{ENGINE}: HeartbeatFirstQueue"),
    (eventlet.queue.Queue, "_get", ["self"], f"{ENGINE}: HeartbeatFirstQueue's bytes"),
    (
        eventlet.wsgi.HttpProtocol,
        "__init__",
        ["self", "conn_state", "server"],
        f"{LISTENER}: Protocol serves a WebSocket connect itself (connection.first_request)",
    ),
    (eventlet.queue.Queue, "_put_bookkeeping", ["self"], ENGINE),
    (eventlet.queue.Queue, "get", ["self", "block", "timeout"], ENGINE),
    (socketio.RedisManager, "_publish", ["self", "data"], f"{PUBSUB}: canary"),
    (socketio.RedisManager, "_redis_connect", ["self"], PUBSUB),
    (socketio.RedisManager, "_listen", ["self"], PUBSUB),
    (socketio.RedisManager, "_redis_listen_with_retries", ["self"], PUBSUB),
    (socketio.RedisManager, "_handle_emit", ["self", "message"], f"{PUBSUB}: publish_private"),
    (
        socketio.Manager,
        "basic_enter_room",
        ["self", "sid", "namespace", "room", "eio_sid"],
        f"{ROOMS}; {FANOUT}",
    ),
    (socketio.Manager, "basic_leave_room", ["self", "sid", "namespace", "room"], ROOMS),
    (socketio.Manager, "basic_disconnect", ["self", "sid", "namespace", "kwargs"], ROOMS),
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

# (function, its parameters as chainpulse calls it, who relies on it)
FUNCTIONS: list[tuple[Callable[..., Any], list[str], str]] = [
    (
        get_exponential_backoff_interval,
        ["factor", "retries", "maximum", "full_jitter"],
        "workers.runner: backoff with full jitter",
    ),
]

# (what to build, attribute, who relies on it)
ATTRIBUTES: list[tuple[str, str, str]] = [
    ("socketio.Server", "_binary_packet", f"{SOCKET_SERVER}: binary refusal"),
    ("socketio.Server", "reserved_events", SOCKET_SERVER),
    ("socketio.Server", "environ", f"{SOCKET_SERVER}: trims the WSGI environ"),
    ("socketio.Server", "manager_initialized", f"{FANOUT}: the pub/sub started by us"),
    ("socketio.Server", "packet_class", f"{SOCKET_SERVER}: a packet before CONNECT"),
    ("socketio.RedisManager", "redis", f"{PUBSUB}: publish_private"),
    ("socketio.RedisManager", "pubsub", f"{PUBSUB}: the listener"),
    ("socketio.RedisManager", "connected", f"{PUBSUB}: publish_private"),
    ("socketio.RedisManager", "channel", PUBSUB),
    ("socketio.RedisManager", "host_id", f"{PUBSUB}: the canary"),
    ("engineio.Client", "ws", f"{CLIENT}: closes a lost WebSocket"),
    ("engineio.Server", "_async", f"{ENGINE}: the websocket driver"),
    ("engineio.Server", "sockets", f"{ENGINE}; {SOCKET_SERVER}; {FANOUT}: drain"),
    ("engineio.Server", "start_service_task", f"{ENGINE}: the handshake"),
    ("engineio.Server", "service_task_handle", f"{ENGINE}: the handshake"),
    ("engineio.Server", "ping_interval_grace_period", f"{ENGINE}: the handshake"),
    ("socketio.Manager", "rooms", f"{FANOUT}: fan-out"),
    ("socketio.Manager", "callbacks", ROOMS),
    ("socketio.Manager", "pending_connect", ROOMS),
    ("socketio.Manager", "pending_disconnect", ROOMS),
    ("engineio.Socket", "queue", ENGINE),
    ("engineio.Socket", "upgraded", f"{ENGINE}: direct writes"),
    ("engineio.Socket", "upgrading", ENGINE),
    ("engineio.Socket", "connected", f"{ENGINE}: an upgrade from long-polling"),
    ("engineio.Socket", "closing", ENGINE),
    ("engineio.Socket", "closed", ENGINE),
    ("engineio.Socket", "last_ping", f"{ENGINE}: heartbeat timers"),
    ("engineio.Packet", "encode_cache", f"{ENGINE}: frames encoded once"),
    ("eventlet.Queue", "queue", f"{ENGINE}: pings first"),
    ("kombu.Channel", "supports_batch_publish", "follower.queue"),
    ("kombu.Channel", "create_publish_batch", "follower.queue"),
    ("kombu.Channel", "unacked_key", "chainpulse.backfill: lost jobs"),
]

SERVER_LIBRARIES = ("socketio.", "engineio.", "eventlet.")


def test_the_servers_library_internals_are_relied_on_under_transport_only() -> None:
    """python-socketio, python-engineio and eventlet's internals are the transport's
    business (realtime/transport/); the Python client keeps its own rows."""
    rows = [(c.__module__, user) for c, _, _, user in METHODS] + [
        (what, user) for what, _, user in ATTRIBUTES
    ]
    for library, user in rows:
        if library.startswith(SERVER_LIBRARIES) and user.split(":")[0] != CLIENT:
            places = [part.split(":")[0].strip() for part in user.split(";")]
            assert all(p.startswith("transport/") for p in places), (library, user)


def _build(what: str) -> Any:
    server = engineio.Server(async_mode="threading")
    makers: dict[str, Callable[[], Any]] = {
        "socketio.Server": lambda: socketio.Server(async_mode="threading"),
        "socketio.RedisManager": socketio.RedisManager,
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


@pytest.mark.parametrize(
    ("function", "params", "user"), FUNCTIONS, ids=lambda v: getattr(v, "__name__", str(v))
)
def test_a_function_we_rely_on_is_there_with_its_parameters(
    function: Callable[..., Any], params: list[str], user: str
) -> None:
    where = f"{function.__module__}.{function.__qualname__} (used by {user})"
    assert list(inspect.signature(function).parameters) == params, f"{where} changed signature"


def test_the_pubsub_message_shape_we_publish_is_the_one_the_listener_reads() -> None:
    """transport/pubsub.py publishes private messages as python-socketio's own emits:
    the listener dispatches `method == "emit"` from other hosts to `_handle_emit`,
    which reads these keys."""
    thread = inspect.getsource(socketio.PubSubManager._thread)
    assert "data['method'] == 'emit'" in thread and "self._handle_emit(data)" in thread
    assert "data.get('host_id') != self.host_id" in thread
    emit = inspect.getsource(socketio.PubSubManager._handle_emit)
    for key in ("data", "binary", "namespace", "room", "skip_sid", "callback", "event"):
        assert f"message['{key}']" in emit or f"message.get('{key}')" in emit, key
    connect = inspect.getsource(socketio.RedisManager._redis_connect)
    assert "self.redis = " in connect and "self.pubsub = " in connect


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
    (engine.POLL_BATCH_MAX); FanoutSocket lifts the same limit for what the
    server decodes, through the class attribute its decoder reads."""
    assert payload.Payload.max_decode_packets == 16
    assert "self.max_decode_packets" in inspect.getsource(payload.Payload.decode)
    source = inspect.getsource(engineio_socket.Socket.handle_post_request)
    assert "payload.Payload(encoded_payload=" in source and "self.receive(" in source


def test_the_websocket_handler_we_replace_is_reached_through_the_driver() -> None:
    """FanoutSocket replaces `Socket._websocket_handler` (python-engineio's reads, the
    upgrade probe and a writer green thread); `_upgrade_websocket` hands the session's
    handler (the FanoutSocket's, bound) to the WebSocket driver, and python-engineio's
    handler still ends a session by queueing None for its writer."""
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
