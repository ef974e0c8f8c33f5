"""A WebSocket echo server on chainpulse's own WebSocket code, for Autobahn|Testsuite:
the handshake (`websocket.handshake`), the connection read from the hub in the server's
kept green threads (`connection.Connection`, `greenthreads`), the frame parser and
permessage-deflate (`websocket`), exactly as `chainpulse serve` runs them, under
eventlet.wsgi's accept loop. Only the session differs: it sends back what it reads.

    .venv/bin/python -m tests.conformance.echo PORT [MAX_FRAME]
"""

from __future__ import annotations

import eventlet

eventlet.monkey_patch()

import sys  # noqa: E402
from typing import Any  # noqa: E402

import eventlet.wsgi  # noqa: E402

from realtime.transport.connection import Connection, WebSocketDriver  # noqa: E402
from realtime.transport.greenthreads import GreenThreads, RequestPool  # noqa: E402
from realtime.transport.websocket import BINARY, frame  # noqa: E402

# Autobahn's largest messages are 16 MiB (cases 9.*), some in 64-byte fragments
MAX_FRAME = 32 * 1024 * 1024


class EchoHost:
    """The `connection.Host` of the echo server."""

    def __init__(self, max_frame: int) -> None:
        self.threads = GreenThreads()
        self.websockets = 0
        self.peak_held = 0
        self.compression = True
        self._max_frame = max_frame

    @property
    def max_frame(self) -> int:
        return self._max_frame

    @property
    def send_timeout(self) -> float:
        return 60.0


class Echo:
    """The `connection.Session` that sends each message back as it came."""

    closing = False

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def take(self, data: str | bytes) -> bool:
        if isinstance(data, str):
            self.conn.send(data)
        else:
            self.conn.sendall(frame(BINARY, data))
        return True

    def answer(self, control: bytes) -> None:
        self.conn.sendall(control)

    def hold(self) -> bool:
        return False

    def release(self) -> None:
        pass

    def queued(self) -> int:
        return 0

    def end_websocket(self) -> None:
        self.conn.close()

    def websocket_closed(self) -> None:
        pass


def main(port: int, max_frame: int = MAX_FRAME) -> None:
    host = EchoHost(max_frame)

    def echo(conn: Connection) -> None:
        conn.sendall(b"")  # the 101 reply: nothing else goes with it
        conn.listen(Echo(conn))

    driver = WebSocketDriver(echo, host)

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        return driver(environ, start_response)

    listener = eventlet.listen(("127.0.0.1", port))
    print(f"echo on ws://127.0.0.1:{port}", flush=True)
    eventlet.wsgi.server(
        listener,
        app,
        custom_pool=RequestPool(host.threads, 10_000),
        log_output=False,
        debug=False,
    )


if __name__ == "__main__":
    main(int(sys.argv[1]), *(int(a) for a in sys.argv[2:3]))
