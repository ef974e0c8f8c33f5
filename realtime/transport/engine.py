"""Engine.IO transport tuned for fan-out: frames encoded once, no green thread per
idle WebSocket, heartbeats first, bounded per-client queues, no per-message deflate
unless asked, and refusal of frames that are not Engine.IO text packets.

- A broadcast is encoded once into a `Frame` (the Engine.IO text); the first WebSocket
  that sends it packs the RFC 6455 frame and every other recipient reuses those bytes.
- A WebSocket at rest holds no green thread (`realtime.transport.connection`): it is read when
  the hub says it is readable, and written at once when idle (`EngineServer.deliver`);
  a writer green thread runs only while the client's queue holds what the kernel did
  not take (`FanoutSocket`), and sends that backlog in batches.
- `EngineServer.corked` holds what is written to idle WebSockets while the pushes of
  one stream read are made, then writes each client's frames in one send: one TCP
  segment and one wake-up per client instead of one per event.
- `HeartbeatFirstQueue` puts Engine.IO PING packets ahead of any backlog, so a client
  behind on broadcasts is not dropped for a ping that waited in its own queue. It also
  hands engine.io at most `POLL_BATCH_MAX` packets per poll: a long-polling response
  carries no more than python-engineio clients accept (16; they drop the connection
  on a longer payload), and the rest go in the next response.
- `EngineServer.deliver` refuses to grow what a client has waiting (its queue and the
  answers held during a read) past `outbound_queue_max` packets or `outbound_bytes_max`
  bytes: the backlog is discarded, the client gets `exception` "Slow consumer: outbound
  queue full" and the transport is closed, so a slow client holds no server memory.
- Refusals of what a client sent are answered while it has room (less than half of
  either bound waiting); past that they are only counted, so a flood of bad frames
  costs a counter, not an answer each.
- The handshake: the OPEN packet advertises `pingInterval` and `pingTimeout` to the
  millisecond; a new session needs `transport` in its query (400 without); a second
  GET while one waits closes the session (the waiting GET gets CLOSE, the second 400);
  an upgrade's probe must finish within `upgrade_timeout` seconds.
- Inbound WebSocket frames above `max_http_buffer_size` close the connection with code
  1009 and a reason naming the limit; text that is not an Engine.IO packet closes it
  with 1003, as the protocol says; binary messages go to Socket.IO (which refuses
  them).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import engineio
import eventlet
from engineio import packet as eio_packet
from engineio import payload as eio_payload
from engineio import socket as engineio_socket
from eventlet.queue import Empty

from realtime import protocol
from realtime.transport import codec
from realtime.transport.connection import DEFLATE_MIN, Connection, WebSocketDriver
from realtime.transport.greenthreads import GreenThreads
from realtime.transport.websocket import BINARY, Frame, frame, text_frame

log = logging.getLogger(__name__)

# Packets per polling response: python-engineio clients refuse a longer one (their
# decoder's limit, `Payload.max_decode_packets`, 16). Our own constant: the server's
# inbound limit is another matter (see `FanoutSocket`).
POLL_BATCH_MAX = 16
WRITE_BATCH = 65_536  # bytes a writer sends at once from a backlog


EIO_TYPES = frozenset("0123456")  # the first character of every Engine.IO text packet


class Raw(bytes):
    """Bytes sent as they are: a control frame, or the unsent tail of a write."""


class RawPacket(eio_packet.Packet):
    """A queued `Raw`; `tail`: the rest of a frame already partly written, which nothing
    may overtake."""

    def __init__(self, data: bytes, tail: bool = False) -> None:
        super().__init__(eio_packet.NOOP)
        self.encode_cache = Raw(data)
        self.tail = tail


def wire(ws: Connection, pkt: Any) -> bytes:
    """An Engine.IO packet as the bytes `ws` sends for it: a frame packed once for every
    recipient (`Frame`), raw bytes, or the packet encoded now."""
    cached = pkt.encode_cache
    if type(cached) is Frame:
        return cached.frame(ws.compressed and len(cached) >= DEFLATE_MIN)
    if type(cached) is Raw:
        return cached
    data = pkt.encode()
    if pkt.binary:
        return frame(BINARY, data)
    return text_frame(data, ws.compressed and len(data) >= DEFLATE_MIN)


def encode_event(namespace: str, event: str, data: Any) -> eio_packet.Packet:
    """One Engine.IO MESSAGE carrying a Socket.IO EVENT, encoded once for any number of
    recipients. `data` must be JSON (no bytes): there is no binary scan."""
    text = f"2{namespace},{codec.dumps([event, data])}"
    pkt = eio_packet.Packet(eio_packet.MESSAGE, data=text)
    pkt.encode_cache = Frame("4" + text)
    return pkt


def encode_ack(namespace: str, ack_id: int, data: Any) -> eio_packet.Packet:
    text = f"3{namespace},{ack_id}{codec.dumps([data])}"
    pkt = eio_packet.Packet(eio_packet.MESSAGE, data=text)
    pkt.encode_cache = Frame("4" + text)
    return pkt


PING = eio_packet.Packet(eio_packet.PING)  # one for every client: its frame is packed once
PING.encode_cache = Frame(PING.encode())


def _heartbeat_first_queue() -> Any:
    from eventlet.queue import Empty, Queue

    class HeartbeatFirstQueue(Queue):
        # engine.io's Socket.poll takes one packet with a blocking get, then drains the
        # queue with non-blocking gets; "empty" after POLL_BATCH_MAX ends its batch.
        _batch = 0

        # called after each put (FanoutSocket wakes its WebSocket writer with it)
        on_put: Callable[[], None] | None = None
        bytes = 0  # what the queued packets weigh (`packet_size`)

        def take(self) -> Any:
            """The next packet, for the WebSocket writer (no batch); Empty when none."""
            if not self.queue:
                raise Empty
            return Queue.get(self, False)

        def get(self, block: bool = True, timeout: float | None = None) -> Any:
            if block:
                self._batch = 1
            else:
                if self._batch >= POLL_BATCH_MAX:
                    raise Empty
                self._batch += 1
            return super().get(block, timeout)

        def _get(self) -> Any:
            item = super()._get()
            self.bytes = max(0, self.bytes - packet_size(item))
            return item

        def clear(self) -> None:
            self.queue.clear()
            self.bytes = 0

        def _put(self, item: Any) -> None:
            self.bytes += packet_size(item)
            if isinstance(item, eio_packet.Packet) and item.packet_type == eio_packet.PING:
                # ahead of the backlog, but never inside a frame already half written
                at = 1 if self.queue and getattr(self.queue[0], "tail", False) else 0
                self.queue.insert(at, item)
                self._put_bookkeeping()
            else:
                super()._put(item)
            if self.on_put is not None:
                self.on_put()

        def put_first(self, item: Any) -> None:
            """Queue `item` ahead of everything (frames that were held for a socket)."""
            self.bytes += packet_size(item)
            self.queue.appendleft(item)
            self._put_bookkeeping()
            if self.on_put is not None:
                self.on_put()

    return HeartbeatFirstQueue


def packet_size(pkt: Any) -> int:
    """What a queued packet weighs, in bytes: its frame when encoded once, else its data."""
    if pkt is None:
        return 0
    cached = getattr(pkt, "encode_cache", None)
    if type(cached) is Frame:
        return cached.size
    if cached is not None:
        return len(cached)
    data = getattr(pkt, "data", None)
    if isinstance(data, str):
        return len(data.encode("utf-8", "surrogatepass"))
    return len(data) if isinstance(data, bytes) else 16


def _send_ping(sock: Any) -> None:
    if not sock.closing and not sock.closed:
        sock.last_ping = time.time()
        sock.server.deliver(sock, PING)


class _InboundPayload(eio_payload.Payload):
    max_decode_packets = 10**9  # bounded by the POST's size (max_http_buffer_size) instead


class FanoutSocket(engineio_socket.Socket):
    """An Engine.IO session with a WebSocket writer that runs only when needed, and
    long-polling POSTs taken whole.

    WebSocket: python-engineio starts a writer green thread per client that waits on the
    client's queue for the session's life. Here most packets never reach the queue
    (`EngineServer.deliver` writes to an idle socket directly); a writer is started when
    something is queued (the kernel did not take all of a frame, or the socket was busy)
    and ends once the queue is empty, sending what is queued in batches. Reading is the
    `Connection`'s.

    Long-polling POST: python-engineio refuses a POST of more than 16 packets and answers
    `200 OK`, silently dropping all of them; engine.io-client bounds a POST by bytes only,
    so a page subscribing to 18 tokens at once lost every subscribe. A body that cannot
    be decoded ends the session with 400 (the client sees a transport error and
    reconnects) instead of vanishing.
    """

    connected: bool  # set by python-engineio
    writing = False  # a writer is sending this WebSocket's queue
    writer: Any = None  # the last writer green thread started
    ws_conn: Connection | None = None  # the WebSocket, once the session is on it
    polling = False  # a long-polling GET waits for packets

    def handle_get_request(self, environ: dict[str, Any], start_response: Any) -> Any:
        """A second GET while one waits breaks the protocol: the session is closed (the
        waiting GET is answered CLOSE) and the second answered 400, as the reference
        server does; python-engineio would hold both."""
        connection = environ.get("HTTP_CONNECTION", "").lower()
        if "upgrade" in connection and environ.get("HTTP_UPGRADE", "").lower() == "websocket":
            return super().handle_get_request(environ, start_response)
        if self.polling:
            self.close(wait=False, abort=False, reason=self.server.reason.TRANSPORT_ERROR)
            raise engineio.exceptions.EngineIOError("a second GET while one waits")
        self.polling = True
        try:
            packets = super().handle_get_request(environ, start_response)
        finally:
            self.polling = False
        # a poll ended by the session's close gets a NOOP, as the reference's does,
        # not an empty body
        return packets if packets != [] else [eio_packet.Packet(eio_packet.NOOP)]

    def handle_post_request(self, environ: dict[str, Any]) -> None:
        length = int(environ.get("CONTENT_LENGTH", "0") or 0)
        if length > self.server.max_http_buffer_size:
            raise engineio.exceptions.ContentTooLongError()
        try:
            body = environ["wsgi.input"].read(length).decode("utf-8")
            packets = _InboundPayload(encoded_payload=body).packets
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            self.server.count_refusal("undecodable payload")
            raise engineio.exceptions.EngineIOError(f"undecodable payload: {exc}") from None
        for pkt in packets:
            self.receive(pkt)
            # let the writers run between inbound messages: a client flooding the server
            # must not starve its own (or anyone's) outbound queue into a slow-consumer
            # drop (a WebSocket's reader yields likewise, `Connection`)
            self.server.sleep(0)

    def _websocket_handler(self, ws: Connection) -> list[Any]:
        """python-engineio's handler without its green threads: the upgrade's probe
        from long-polling here, then the connection read from the hub and written by
        `deliver` or a writer while something is queued."""
        if self.connected:  # an upgrade from long-polling
            self.upgrading = True  # engine.io holds sends until the upgrade is done
            if not self._upgrade(ws):
                self.upgrading = False
                if ws.close_code is None:  # no WebSocket protocol error: the probe failed
                    ws.close_code, ws.close_reason = 1002, "Engine.IO upgrade failed"
                return []
            self.upgraded = True
            self.upgrading = False
        else:
            self.connected = True
            self.upgraded = True
        ws.listen(self)
        self.ws_conn = ws
        self.queue.on_put = self._wake_writer
        # what was queued before the WebSocket (the OPEN packet), with the 101 reply
        self._flush()
        return []

    # the WebSocket's `connection.Session` ------------------------------------------

    def take(self, data: str | bytes) -> bool:
        """Handle one inbound WebSocket message (text: an Engine.IO packet; bytes: a
        binary MESSAGE); False when the session must end."""
        if self.closing or self.closed:
            return False
        if len(data) > self.server.max_http_buffer_size:
            return False
        if isinstance(data, str) and (not data or data[0] not in EIO_TYPES):
            # not an Engine.IO packet: the protocol closes the session
            self.server.count_refusal("not an engine.io packet")
            if self.ws_conn is not None:
                self.ws_conn.close_code = 1003
                self.ws_conn.close_reason = "Invalid Engine.IO packet"
            return False
        try:
            if isinstance(data, str):
                self.receive(eio_packet.Packet(encoded_packet=data))
            else:
                self.receive(eio_packet.Packet(eio_packet.MESSAGE, data=data))
        except engineio.exceptions.UnknownPacketError:
            pass
        except engineio.exceptions.SocketIsClosedError:
            return False
        except Exception:
            log.exception("unexpected error handling a packet; closing the session")
            return False
        return True

    def answer(self, control: bytes) -> None:
        self.server.deliver(self, RawPacket(control))

    def hold(self) -> bool:
        return bool(self.server.hold(self))

    def release(self) -> None:
        self.server.release(self)

    def queued(self) -> int:
        return int(getattr(self.queue, "bytes", 0))

    def websocket_closed(self) -> None:
        self.ws_conn = None
        self.queue.on_put = None
        if not self.closed:
            self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)
        # python-engineio forgets a closed session when its WebSocket request returns;
        # that request returned at the hand-over
        if self.server.sockets.get(self.sid) is self:
            del self.server.sockets[self.sid]

    def end_websocket(self) -> None:
        """The client closed (or its socket failed): send what is queued, as
        python-engineio does, then close the WebSocket and the session."""
        self.queue.on_put = None
        self.queue.put(None)  # the writer closes the WebSocket after what is queued
        if self.writing:
            self.writer.wait()
        else:
            self._flush()
        if self.ws_conn is not None:
            self.ws_conn.close()
        self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)

    def _upgrade(self, ws: Connection) -> bool:
        """The probe of an upgrade from long-polling: PING "probe", PONG, UPGRADE, all
        within the server's `upgrade_timeout`."""
        deadline = time.monotonic() + self.server.upgrade_timeout
        try:
            probe = ws.wait(deadline)
            if probe != "2probe":
                return False
            ws.send(eio_packet.Packet(eio_packet.PONG, data="probe").encode())
            self.queue.put(eio_packet.Packet(eio_packet.NOOP))  # ends the pending poll
            upgrade = ws.wait(deadline)
        except OSError:  # the client went away, or said nothing in time
            return False
        if upgrade is None or upgrade[:1] != "5":
            self.upgraded = False
            return False
        return True

    def _wake_writer(self) -> None:
        if not self.writing and self.queue.queue:
            self.writing = True  # before it runs: the next put must not start another
            self.writer = eventlet.spawn(self._flush)

    def _flush(self) -> None:
        """Send the queue until it is empty, up to `WRITE_BATCH` bytes a send; None in
        it closes the WebSocket (as python-engineio's writer does), and so does a send
        that fails."""
        ws = self.ws_conn
        assert ws is not None
        self.writing = True
        try:
            while True:
                batch: list[bytes] = []
                size = 0
                closing = False
                while size < WRITE_BATCH:
                    try:
                        pkt = self.queue.take()
                    except Empty:
                        break
                    self.queue.task_done()
                    if pkt is None:
                        closing = True
                        break
                    data = wire(ws, pkt)
                    batch.append(data)
                    size += len(data)
                if batch:
                    ws.send(batch[0] if len(batch) == 1 else b"".join(batch))
                if closing:
                    self.queue.on_put = None  # what is queued after the close stays there
                    ws.close()
                    return
                if not batch:
                    if ws.greeting:  # nothing was queued with it
                        ws.send(b"")
                    return
        except Exception:  # noqa: BLE001 - the client is gone: end the session
            with contextlib.suppress(Exception):
                ws.close()
        finally:
            self.writing = False


class EngineServer(engineio.Server):
    """engineio.Server with bounded queues, heartbeats first and fan-out frames.

    `outbound_queue_max`: packets queued per client before it is dropped as too slow;
    `ws_compression`: per-message deflate on WebSocket frames; `count_refusal(reason)`
    hears of every refusal. The rest goes to engineio.Server.
    """

    namespace = protocol.NAMESPACE

    def __init__(
        self,
        *args: Any,
        outbound_queue_max: int = 1_000,
        outbound_bytes_max: int = 1_048_576,
        upgrade_timeout: float = 10.0,
        ws_compression: bool = False,
        count_refusal: Callable[[str], None] = lambda reason: None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.outbound_queue_max = outbound_queue_max
        self.outbound_bytes_max = outbound_bytes_max
        self.upgrade_timeout = upgrade_timeout
        self.peak_held = 0  # the most bytes one connection held (`Connection.holding`)
        self.compression = ws_compression
        self.count_refusal = count_refusal
        self.direct_writes = 0  # frames written without the queue (since start-up)
        self.partial_writes = 0  # of which the kernel took only a part; the writer sends the rest
        self.websockets = 0  # WebSocket connections open
        self._held: dict[Any, list[bytes]] | None = None  # frames held while corked
        self.threads = GreenThreads()  # read WebSockets, serve first requests
        if self.async_mode == "eventlet":
            self._queue_class = _heartbeat_first_queue()
            drivers: dict[str, Any] = dict(self._async)  # type: ignore[has-type]
            drivers["websocket"] = WebSocketDriver
            self._async = drivers
        else:
            self._queue_class = None

    # the WebSocket connections' `connection.Host` ------------------------------------

    @property
    def max_frame(self) -> int:
        return int(self.max_http_buffer_size)

    @property
    def send_timeout(self) -> float:
        return float(self.ping_interval + self.ping_timeout)

    def disconnect(self, sid: str | None = None) -> None:
        """As python-engineio's, but a long-polling session is closed without waiting
        for its queue to drain: with no GET pending nothing ever drains it, and the
        request that asked (an oversized or undecodable POST) would hang with its file
        descriptor until the client went away. A later GET is told the session is gone."""
        sock = self.sockets.get(sid) if sid is not None else None
        if sock is None or sock.upgraded:
            super().disconnect(sid)
            return
        sock.close(wait=False, reason=self.reason.SERVER_DISCONNECT)
        self.sockets.pop(sid, None)

    def handle_request(self, environ: dict[str, Any], start_response: Any) -> Any:
        query = environ.get("QUERY_STRING", "")
        if "sid=" not in query and "transport=" not in query:
            # the protocol requires it; python-engineio would assume polling
            start_response("400 BAD REQUEST", [("Content-Type", "application/json")])
            return [b'{"code":0,"message":"Transport unknown"}']
        return super().handle_request(environ, start_response)

    def _handle_connect(
        self,
        environ: dict[str, Any],
        start_response: Any,
        transport: str,
        jsonp_index: int | None = None,
    ) -> Any:
        """python-engineio's, with a `FanoutSocket` from the start and the heartbeat
        advertised to the millisecond (it sends whole seconds: 2.5 s as 2000 ms)."""
        if self.start_service_task:  # type: ignore[has-type]
            self.start_service_task = False
            self.service_task_handle = self.start_background_task(self._service_task)
        sid = self.generate_id()
        sock = FanoutSocket(self, sid)
        self.sockets[sid] = sock
        interval = self.ping_interval + self.ping_interval_grace_period
        opened = {
            "sid": sid,
            "upgrades": self._upgrades(sid, transport),
            "pingTimeout": round(self.ping_timeout * 1000),
            "pingInterval": round(interval * 1000),
            "maxPayload": self.max_http_buffer_size,
        }
        sock.send(eio_packet.Packet(eio_packet.OPEN, opened))
        answer = self._trigger_event("connect", sid, environ, run_async=False)
        if answer is not None and answer is not True:
            del self.sockets[sid]
            return self._unauthorized(answer or None)
        sock.schedule_ping()
        if transport == "websocket":
            result = sock.handle_get_request(environ, start_response)
            if sock.closed and sid in self.sockets:
                del self.sockets[sid]
            return result
        sock.connected = True
        try:
            return self._ok(sock.poll(), jsonp_index=jsonp_index)
        except engineio.exceptions.QueueEmpty:
            return self._bad_request()

    def call_later(self, delay: float, callback: Callable[[], object]) -> Any:
        """Run `callback` in `delay` seconds, from the hub (a timer, no green thread);
        returns the timer (its `cancel()` stops it)."""
        if self._queue_class is not None:
            from eventlet.hubs import get_hub

            return get_hub().schedule_call_global(delay, callback)
        import threading

        timer = threading.Timer(delay, callback)
        timer.daemon = True
        timer.start()
        return timer

    def start_background_task(self, target: Any, *args: Any, **kwargs: Any) -> Any:
        # Engine.IO parks one green thread per client in `sleep(ping_interval)` between
        # pings; a hub timer does the same job without a green thread (and its stack).
        if self._queue_class is not None and getattr(target, "__name__", "") == "_send_ping":
            from eventlet.hubs import get_hub

            return get_hub().schedule_call_global(self.ping_interval, _send_ping, target.__self__)
        return super().start_background_task(target, *args, **kwargs)

    def create_queue(self, *args: Any, **kwargs: Any) -> Any:
        if self._queue_class is not None:
            return self._queue_class(*args, **kwargs)
        return super().create_queue(*args, **kwargs)

    def send_packet(self, sid: str, pkt: Any) -> None:
        sock = self.sockets.get(sid)
        if sock is None or sock.closed:
            return
        self.deliver(sock, pkt)

    def deliver(self, sock: Any, pkt: Any) -> None:
        """Send `pkt` to one session: written at once when its WebSocket is idle, else
        queued (a client with too much waiting is dropped as a slow consumer). Nothing
        is sent to a session that is closing."""
        if sock.closing or sock.closed:
            return
        if self._write_directly(sock, pkt):  # bounded there when it holds the frame
            return
        count, size = self.waiting(sock)
        if count >= self.outbound_queue_max or size >= self.outbound_bytes_max:
            self.drop_slow(sock)
            return
        sock.send(pkt)
        queued = sock.queued()
        if queued > self.peak_held:
            self.peak_held = queued

    def waiting(self, sock: Any) -> tuple[int, int]:
        """Packets and bytes waiting for a client: its queue, and what is held for it
        while its messages are handled."""
        count, size = sock.queue.qsize(), sock.queued()
        ws = getattr(sock, "ws_conn", None)
        if ws is not None and ws.held is not None:
            count += len(ws.held)
            size += ws.held_bytes
        corked = self._held.get(sock) if self._held is not None else None
        if corked:
            count += len(corked)
            size += sum(len(frame) for frame in corked)
        return count, size

    def _write_directly(self, sock: Any, pkt: Any) -> bool:
        """Write a packet straight to an idle WebSocket, skipping the queue and the
        writer. Only when nothing is queued and no send is in progress (so order is
        kept), and only as far as the kernel takes it without waiting: the rest goes to
        the queue, in front, for the writer."""
        ws = getattr(sock, "ws_conn", None)
        if (
            ws is None
            or not sock.upgraded
            or sock.upgrading
            or sock.closing
            or sock.writing
            or sock.queue.qsize()
            or ws.sending
            or ws.closed
        ):
            return False
        if not sock.check_ping_timeout():
            return True
        data = wire(ws, pkt)
        held = ws.held
        if held is not None:  # a read of this client's is being handled: its answers
            if len(held) >= self.outbound_queue_max or ws.held_bytes >= self.outbound_bytes_max:
                self.drop_slow(sock)
                return True
            held.append(data)
            ws.held_bytes += len(data)
            self.direct_writes += 1
            return True
        if self._held is not None:  # a stream read's pushes (at most CORK_ENTRIES each)
            self._held.setdefault(sock, []).append(data)
            self.direct_writes += 1
            return True
        if not self._send_nowait(sock, ws, data):
            return False  # the kernel took nothing (or the writer meets the same error)
        self.direct_writes += 1
        return True

    @contextlib.contextmanager
    def corked(self) -> Iterator[None]:
        """Hold what is written to idle WebSockets until the block ends, then write each
        socket's frames in one send: a client gets a batch of events in one TCP segment,
        one wake-up and one read, instead of one per event (and the server makes one
        system call per client instead of one per event). Frames stay in order: while a
        socket has frames held, what else it is sent is held behind them."""
        if self._held is not None:
            yield
            return
        self._held = {}
        try:
            yield
        finally:
            held, self._held = self._held, None
            for sock, frames in held.items():
                self._release(sock, frames[0] if len(frames) == 1 else b"".join(frames))

    def hold(self, sock: Any) -> bool:
        """Hold what is written to `sock` while its client's messages are handled, until
        `release`: the answers to one read (a CONNECT's and the `connected` event, say)
        go out in one send. False when it cannot be held (already held, or it has frames
        held by `corked`, which must go first)."""
        ws = getattr(sock, "ws_conn", None)
        if ws is None or ws.held is not None or (self._held is not None and sock in self._held):
            return False
        ws.held, ws.held_bytes = [], 0
        return True

    def release(self, sock: Any) -> None:
        ws = getattr(sock, "ws_conn", None)
        if ws is None or ws.held is None:
            return
        frames, ws.held, ws.held_bytes = ws.held, None, 0
        if not frames:
            return
        if self._held is not None:  # a stream read is corked: its release sends these
            self._held[sock] = frames
            return
        self._release(sock, frames[0] if len(frames) == 1 else b"".join(frames))

    def _release(self, sock: Any, data: bytes) -> None:
        ws = getattr(sock, "ws_conn", None)
        if ws is None or ws.closed:
            return  # the client is gone
        if sock.closing or sock.writing or sock.queue.qsize() or ws.sending:
            # behind a close under way too: its writer sends these before it closes
            # (a PONG to a PING that came with the client's CLOSE, a CONNECT_ERROR)
            sock.queue.put_first(RawPacket(data, tail=True))  # something bypassed the hold
            return
        if self._send_nowait(sock, ws, data) == 0:  # the kernel took nothing yet
            self.partial_writes += 1
            sock.queue.put(RawPacket(data, tail=True))

    def _send_nowait(self, sock: Any, ws: Connection, data: bytes) -> int | None:
        """Send as much of `data` as the kernel takes without waiting and queue the rest
        for the writer; returns how much it took, None when the socket failed (the
        writer or the reader meets the same error and ends the session)."""
        sent = ws.send_nowait(data)
        if sent and sent < len(data):
            self.partial_writes += 1
            sock.queue.put(RawPacket(data[sent:], tail=True))
        return sent

    def has_room(self, sid: str) -> bool:
        """True while less than half of either bound waits for the client."""
        sock = self.sockets.get(sid)
        if sock is None:
            return False
        count, size = self.waiting(sock)
        return count < self.outbound_queue_max // 2 and size < self.outbound_bytes_max // 2

    def drop_slow(self, sock: Any) -> None:
        if sock.closing or sock.closed:
            return
        self.count_refusal("slow consumer")
        log.warning(
            "outbound queue full, disconnecting a slow consumer", extra={"client": sock.sid}
        )
        ws = getattr(sock, "ws_conn", None)
        if ws is not None and ws.held is not None:
            ws.held, ws.held_bytes = [], 0
        if self._held is not None:
            self._held.pop(sock, None)
        # free the backlog now, but for the rest of a frame already half written: cut
        # there, the client would read the next frame as garbage
        queue = sock.queue.queue
        head = queue[0] if queue else None
        if hasattr(sock.queue, "clear"):
            sock.queue.clear()
        else:  # threading mode's queue.Queue
            queue.clear()
        if head is not None and getattr(head, "tail", False) and hasattr(sock.queue, "put_first"):
            sock.queue.put_first(head)
        sock.queue.put(
            encode_event(self.namespace, "exception", protocol.exception(protocol.SLOW_CONSUMER))
        )
        sock.close(wait=False, abort=False, reason="slow consumer")
