"""Serving a process's clients: eventlet.wsgi's accept loop on `PORT`, until SIGTERM or
SIGINT, then a drain.

A Socket.IO WebSocket connect is served without eventlet.wsgi's HTTP machinery
(`connection.first_request`); every other request goes through it, in the server's
kept green threads (`greenthreads.RequestPool`). `HTTP_TIMEOUT` bounds reading a
request; a WebSocket then lives as long as its heartbeats say.

Shutting down, the server refuses new sessions and closes every Engine.IO session's
transport (`SocketServer.close_sessions`): clients see the transport close and
reconnect, through a load balancer to another process, where they resume with
`lastBlock`. It exits once those connections are gone, or after `SHUTDOWN_TIMEOUT`
seconds.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
from typing import Any

import eventlet
import eventlet.event
import eventlet.wsgi
from greenlet import GreenletExit

from realtime.transport.connection import first_request
from realtime.transport.greenthreads import RequestPool
from realtime.transport.socket_fanout import SocketFanout

log = logging.getLogger("chainpulse.realtime")

LISTEN_BACKLOG = 4_096  # the kernel caps it at net.core.somaxconn
MAX_CONNECTIONS = 100_000  # requests served at once (eventlet.wsgi's max_size: 1,024)


def serve(
    fanout: SocketFanout, app: Any, port: int, http_timeout: float, shutdown_timeout: float
) -> None:
    """Serve `app` on `port` until a signal (or the accept loop's end), then drain."""
    listener = eventlet.listen(("0.0.0.0", port), backlog=LISTEN_BACKLOG)

    class Protocol(eventlet.wsgi.HttpProtocol):
        rbufsize = 1024
        wbufsize = 1024

        def __init__(self, conn_state: Any, server: Any) -> None:
            if not first_request(conn_state, app):
                super().__init__(conn_state, server)

    server = eventlet.spawn(
        eventlet.wsgi.server,
        listener,
        app,
        custom_pool=RequestPool(fanout.sio.eio.threads, MAX_CONNECTIONS),
        log_output=False,
        debug=False,
        protocol=Protocol,
        socket_timeout=http_timeout,  # a half-sent request is closed after it
    )
    stopping: eventlet.event.Event = eventlet.event.Event()

    def stop(signum: int, _: Any = None) -> None:
        if not stopping.ready():
            stopping.send(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.link(lambda _: stop(signal.SIGTERM) if not stopping.ready() else None)
    why = stopping.wait()
    drain(fanout, server, shutdown_timeout, why)


def drain(fanout: SocketFanout, server: Any, timeout: float, why: str) -> None:
    """Close every session, wait (at most `timeout` seconds) for their WebSockets to
    send the CLOSE and end, then stop accepting and let the open requests finish."""
    started = time.monotonic()
    deadline = started + timeout
    closed = fanout.close_sessions()
    log.info("%s: closing %d session(s) so that their clients reconnect", why, closed)
    while fanout.open_connections() and time.monotonic() < deadline:
        eventlet.sleep(0.02)
    # the accept loop's exit cuts idle connections (HTTP keep-alive) and waits for the
    # requests under way; WebSockets left past the deadline are cut with them
    server.kill()
    with (
        eventlet.Timeout(max(deadline - time.monotonic(), 0.5), False),
        contextlib.suppress(GreenletExit),  # how a killed green thread ends
    ):
        server.wait()
    cut = fanout.sio.eio.websockets
    log.info(
        "stopped in %.1f s%s",
        time.monotonic() - started,
        f"; {cut} WebSocket(s) cut at SHUTDOWN_TIMEOUT" if cut else "",
    )
