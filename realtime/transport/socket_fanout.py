"""`Fanout` over python-socketio, python-engineio and eventlet: the one implementation of
the seam (`realtime.transport.fanout`).

Under eventlet (`chainpulse serve`) jobs are green threads and a database read runs in
`eventlet.tpool` (a real OS thread), one at a time: SQLite calls and psycopg's waits
would block the whole hub, and the engine's pool and its locks (green after monkey
patching) are then never contended from real threads. In threading mode (tests that
drive a server in-process, without eventlet) jobs and reads run at once, in the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, TypeVar

import socketio

from realtime import protocol
from realtime.config import RealtimeSettings
from realtime.transport import codec
from realtime.transport.admission import Admission
from realtime.transport.engine import encode_event
from realtime.transport.fanout import Encoded, Handlers, Payload, Signal, Timer, Unavailable
from realtime.transport.pubsub import PubSub, PubSubUnavailable
from realtime.transport.rooms import LocalManager
from realtime.transport.socketio_server import SocketServer

NS = protocol.NAMESPACE
T = TypeVar("T")


class SocketFanout:
    """The push rules' view of one server process's clients (see `Fanout`)."""

    @classmethod
    def build(
        cls,
        settings: RealtimeSettings,
        count_refusal: Callable[[str], None],
        pubsub: PubSub | None,
        async_mode: str = "eventlet",
    ) -> SocketFanout:
        """The transport of `settings`: Engine.IO and Socket.IO servers tuned for fan-out,
        with `pubsub` carrying messages between processes (None: this process only)."""
        cors: Any = "*" if "*" in settings.cors_origins else list(settings.cors_origins)
        sio = SocketServer(
            max_message_bytes=settings.max_message_bytes,
            admission=Admission(
                settings.max_connections_per_address,
                settings.connect_rate,
                settings.trusted_proxy_header,
            ),
            count_refusal=count_refusal,
            connect_timeout=settings.connect_timeout,
            outbound_queue_max=settings.outbound_queue_max,
            outbound_bytes_max=settings.outbound_bytes_max,
            upgrade_timeout=settings.upgrade_timeout,
            ws_compression=settings.compression,
            async_mode=async_mode,
            # a client's events run in order in the green thread that read them (one
            # per read, `connection.Connection`), not in a green thread each
            async_handlers=False,
            serializer=codec.Packet,
            client_manager=pubsub if pubsub is not None else LocalManager(),
            cors_allowed_origins=cors,
            ping_interval=settings.ping_interval,
            ping_timeout=settings.ping_timeout,
            # frames above this are closed (1009); the smaller cap (max_message_bytes)
            # answers with an exception event instead
            max_http_buffer_size=4 * settings.max_message_bytes,
            http_compression=settings.compression,
            logger=False,
            engineio_logger=False,
        )
        return cls(sio, pubsub)

    def __init__(self, sio: SocketServer, pubsub: PubSub | None) -> None:
        self.sio = sio
        self.pubsub = pubsub
        self.green = sio.async_mode == "eventlet"
        self._reads: Any = None
        if self.green:
            from eventlet.semaphore import Semaphore

            self._reads = Semaphore(1)

    # messages ---------------------------------------------------------------------------

    def encode(self, event: str, data: Payload | Sequence[object]) -> Encoded:
        return Encoded(encode_event(NS, event, data))

    def send(self, sid: str, message: Encoded) -> bool:
        eio_sid = self.sio.manager.eio_sid_from_sid(sid, NS)
        if eio_sid is None:
            return False
        self.sio.eio.send_packet(eio_sid, message)
        return True

    def broadcast(self, room: str, message: Encoded) -> int:
        members = self.sio.manager.rooms.get(NS, {}).get(room)
        if not members:
            return 0
        targets = list(members.values())
        send = self.sio.eio.send_packet
        for eio_sid in targets:
            send(eio_sid, message)
        return len(targets)

    def publish(self, room: str, event: str, data: Payload) -> None:
        if self.pubsub is None:
            self.broadcast(room, self.encode(event, data))
            return
        try:
            self.pubsub.publish_private(event, data, room, NS)
        except PubSubUnavailable as exc:
            raise Unavailable(str(exc)) from None

    def corked(self) -> AbstractContextManager[None]:
        return self.sio.eio.corked()

    # clients and rooms ------------------------------------------------------------------

    def connected(self, sid: str) -> bool:
        return bool(self.sio.manager.is_connected(sid, NS))

    def join(self, sid: str, room: str) -> None:
        if self.sio.manager.eio_sid_from_sid(sid, NS) is not None:  # connected or connecting
            self.sio.manager.basic_enter_room(sid, NS, room)

    def leave(self, sid: str, room: str) -> None:
        self.sio.manager.basic_leave_room(sid, NS, room)

    def has_members(self, room: str) -> bool:
        return bool(self.sio.manager.rooms.get(NS, {}).get(room))

    def disconnect(self, sid: str) -> None:
        self.sio.disconnect(sid, namespace=NS)

    # concurrency ------------------------------------------------------------------------

    def spawn(self, job: Callable[[], object]) -> None:
        if self.green:
            self.sio.start_background_task(job)
        else:
            job()

    def call_later(self, delay: float, job: Callable[[], object]) -> Timer:
        timer: Timer = self.sio.eio.call_later(delay, job)
        return timer

    def sleep(self, seconds: float) -> None:
        self.sio.sleep(seconds)

    def signal(self) -> Signal:
        event: Signal = self.sio.eio.create_event()
        return event

    def offload(self, work: Callable[[], T]) -> T:
        if not self.green:
            return work()
        from eventlet import tpool

        with self._reads:
            result: T = tpool.execute(work)
            return result

    # the process's own: serving, starting, metrics and shutdown ---------------------

    def serve(self, handlers: Handlers) -> None:
        self.sio.serve(handlers)

    def wsgi(self, other: Callable[..., Any]) -> Any:
        """The WSGI application: Socket.IO at /socket.io/, `other` for the rest."""
        return socketio.WSGIApp(self.sio, other, socketio_path="socket.io")

    def start(self, service: Callable[[], object] | None = None) -> None:
        """Start the pub/sub listener (with its canary), when there is one, and
        `service` (the stream reader: it runs until the process ends) on its own."""
        if self.pubsub is not None:
            self.sio.manager_initialized = True
            self.pubsub.initialize()
        if service is not None:
            self.sio.start_background_task(service)

    def counters(self) -> dict[str, Callable[[], float]]:
        """Figures of the transport's own, for the metrics."""
        eio = self.sio.eio
        return {
            "direct_writes": lambda: float(eio.direct_writes),
            "partial_writes": lambda: float(eio.partial_writes),
            "peak_held": lambda: float(eio.peak_held),
        }

    def sizes(self) -> dict[str, Callable[[], int]]:
        """Entries of per-connection state the transport keeps, by kind (must return to
        0 when idle)."""
        sio = self.sio
        return {
            "environ": lambda: len(sio.environ),
            "engine.io sockets": lambda: len(sio.eio.sockets),
            "room index": sio.manager.tracked_sids,
            "sessions per address": lambda: len(sio.admission),
        }

    def close_sessions(self) -> int:
        return self.sio.close_sessions()

    def open_connections(self) -> int:
        """WebSockets and long-polling sessions still open."""
        return int(self.sio.eio.websockets) + len(self.sio.eio.sockets)
