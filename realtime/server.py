"""`chainpulse serve`: the eventlet Socket.IO server, its stream reader and its HTTP.

The entry point (`chainpulse.cli`) has already monkey patched eventlet. Nothing here
connects at import time: `build` wires the parts, `run` starts the background green
threads and serves until SIGTERM or SIGINT.

Shutting down, the server refuses new sessions and closes every Engine.IO session's
transport (`GatewayServer.close_sessions`): clients see the transport close and
reconnect, through a load balancer to another process, where they resume with
`lastBlock`. It exits once those connections are gone, or after `SHUTDOWN_TIMEOUT`
seconds.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import resource
import signal
import time
from dataclasses import dataclass
from typing import Any

import socketio

from indexer import logs, queries
from realtime import protocol
from realtime.config import RealtimeSettings
from realtime.db import Database
from realtime.gateway import Gateway, Schedule
from realtime.http import HttpApp
from realtime.metrics import Metrics
from realtime.push.feed import Feed
from realtime.push.stream import StreamReader
from realtime.ratelimit import SlidingWindowLimiter
from realtime.transport import codec
from realtime.transport.admission import Admission
from realtime.transport.connection import first_request
from realtime.transport.greenthreads import RequestPool
from realtime.transport.pubsub import Bus
from realtime.transport.rooms import LocalManager
from realtime.transport.socketio_server import GatewayServer

log = logging.getLogger("chainpulse.realtime")

LISTEN_BACKLOG = 4_096  # the kernel caps it at net.core.somaxconn
MAX_CONNECTIONS = 100_000  # requests served at once (eventlet.wsgi's max_size: 1,024)


@dataclass
class Realtime:
    settings: RealtimeSettings
    sio: GatewayServer
    app: Any  # the WSGI application
    gateway: Gateway
    feed: Feed
    db: Database
    metrics: Metrics
    bus: Bus | None
    stream: StreamReader | None

    def start_background(self) -> None:
        """Start the stream reader and the pub/sub listener with its canary."""
        if self.bus is not None:
            self.sio.manager_initialized = True
            self.bus.initialize()
        if self.stream is not None:
            self.sio.start_background_task(self.stream.run)


def _eventlet_schedule(delay: float, callback: Any) -> Any:
    from eventlet.hubs import get_hub

    return get_hub().schedule_call_global(delay, callback)


def _thread_schedule(delay: float, callback: Any) -> Any:
    import threading

    timer = threading.Timer(delay, callback)
    timer.daemon = True
    timer.start()
    return timer


def build(settings: RealtimeSettings, async_mode: str = "eventlet", redis: bool = True) -> Realtime:
    """Wire the server. `async_mode="threading"` with `redis=False` gives an in-process
    server without Redis, for driving the handlers directly in tests."""
    metrics = Metrics()
    bus = Bus(settings.redis_url, canary_interval=settings.canary_interval) if redis else None
    cors: Any = "*" if "*" in settings.cors_origins else list(settings.cors_origins)
    manager: Any = bus if bus is not None else LocalManager()
    limiter = SlidingWindowLimiter(settings.rate_limit, settings.rate_window)
    sio = GatewayServer(
        max_message_bytes=settings.max_message_bytes,
        allow=limiter.allow,
        admission=Admission(
            settings.max_connections_per_address,
            settings.connect_rate,
            settings.trusted_proxy_header,
        ),
        count_refusal=metrics.refuse,
        connect_timeout=settings.connect_timeout,
        outbound_queue_max=settings.outbound_queue_max,
        outbound_bytes_max=settings.outbound_bytes_max,
        upgrade_timeout=settings.upgrade_timeout,
        ws_compression=settings.compression,
        async_mode=async_mode,
        # a client's events run in order in the green thread that read them (one per
        # read, `connection.Connection`), not in a green thread each
        async_handlers=False,
        serializer=codec.Packet,
        client_manager=manager,
        cors_allowed_origins=cors,
        ping_interval=settings.ping_interval,
        ping_timeout=settings.ping_timeout,
        # frames above this are closed by eventlet (1009); the gateway's own, smaller cap
        # (max_message_bytes) answers with an exception event instead
        max_http_buffer_size=4 * settings.max_message_bytes,
        http_compression=settings.compression,
        logger=False,
        engineio_logger=False,
    )
    metrics.direct_writes.set_function(lambda: float(sio.eio.direct_writes))
    metrics.partial_writes.set_function(lambda: float(sio.eio.partial_writes))
    metrics.peak_held.set_function(lambda: float(sio.eio.peak_held))
    if bus is not None:
        bus_ = bus
        metrics.pubsub_healthy.set_function(lambda: 1.0 if bus_.healthy else 0.0)
        metrics.pubsub_canary_age.set_function(bus_.canary_age)
    db = Database(settings.database_url, offload=async_mode == "eventlet")
    feed = Feed(sio, settings, db, metrics)
    schedule: Schedule = _eventlet_schedule if async_mode == "eventlet" else _thread_schedule
    gateway = Gateway(sio, settings, feed, db, bus, metrics, schedule, limiter)
    stream = (
        StreamReader(
            settings.redis_url,
            settings.stream_key,
            handle=feed.handle,
            tick=feed.tick,
            catch_up=feed.catch_up,
            metrics=metrics,
            sleep=sio.sleep,
            corked=sio.eio.corked,
        )
        if redis
        else None
    )
    http = HttpApp(settings, db, metrics, bus, stream)
    app = socketio.WSGIApp(sio, http, socketio_path="socket.io")
    return Realtime(settings, sio, app, gateway, feed, db, metrics, bus, stream)


def _raise_open_files_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open files limit: %s", exc)


def run(settings: RealtimeSettings) -> None:
    import eventlet
    import eventlet.event
    import eventlet.wsgi

    logs.configure(settings.log_format, settings.log_level)
    _raise_open_files_limit()
    realtime = build(settings)
    try:
        realtime.feed.start_at(realtime.db.read(queries.latest_block_number))
    except Exception as exc:  # noqa: BLE001 - an unreachable database must not stop pushes
        log.warning("database unreachable at start-up (%s); pushing from the stream's end", exc)
    realtime.start_background()
    listener = eventlet.listen(("0.0.0.0", settings.port), backlog=LISTEN_BACKLOG)

    app = realtime.app

    class Protocol(eventlet.wsgi.HttpProtocol):
        # A Socket.IO WebSocket connect is served without eventlet.wsgi's HTTP machinery
        # (`connection.first_request`); every other request goes through it. HTTP_TIMEOUT
        # bounds reading a request; a WebSocket then lives as long as its heartbeats say.
        rbufsize = 1024
        wbufsize = 1024

        def __init__(self, conn_state: Any, server: Any) -> None:
            if not first_request(conn_state, app):
                super().__init__(conn_state, server)

    # Thousands of long-lived objects per client make full collections slow and
    # frequent; collect young objects less often and leave start-up state out of it.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    log.info("serving %s on port %d", protocol.NAMESPACE, settings.port)
    server = eventlet.spawn(
        eventlet.wsgi.server,
        listener,
        realtime.app,
        custom_pool=RequestPool(realtime.sio.eio.threads, MAX_CONNECTIONS),
        log_output=False,
        debug=False,
        protocol=Protocol,
        socket_timeout=settings.http_timeout,  # a half-sent request is closed after it
    )
    stopping: eventlet.event.Event = eventlet.event.Event()

    def stop(signum: int, _: Any = None) -> None:
        if not stopping.ready():
            stopping.send(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.link(lambda _: stop(signal.SIGTERM) if not stopping.ready() else None)
    why = stopping.wait()
    drain(realtime, server, settings.shutdown_timeout, why)


def drain(realtime: Realtime, server: Any, timeout: float, why: str) -> None:
    """Close every session, wait (at most `timeout` seconds) for their WebSockets to
    send the CLOSE and end, then stop accepting and let the open requests finish."""
    import eventlet
    from greenlet import GreenletExit

    started = time.monotonic()
    deadline = started + timeout
    closed = realtime.sio.close_sessions()
    log.info("%s: closing %d session(s) so that their clients reconnect", why, closed)
    eio = realtime.sio.eio
    while (eio.websockets or eio.sockets) and time.monotonic() < deadline:
        eventlet.sleep(0.02)
    # the accept loop's exit cuts idle connections (HTTP keep-alive) and waits for the
    # requests under way; WebSockets left past the deadline are cut with them
    server.kill()
    with (
        eventlet.Timeout(max(deadline - time.monotonic(), 0.5), False),
        contextlib.suppress(GreenletExit),  # how a killed green thread ends
    ):
        server.wait()
    log.info(
        "stopped in %.1f s%s",
        time.monotonic() - started,
        f"; {eio.websockets} WebSocket(s) cut at SHUTDOWN_TIMEOUT" if eio.websockets else "",
    )
