"""A WebSocket session's connection: the socket taken from eventlet.wsgi at the
handshake, read when the hub says it is readable, written at once when it is idle.

- No green thread waits on a connection at rest. eventlet.wsgi would keep one per
  client for its whole life, parked in a read with the HTTP request's objects on its
  stack. Here the hub's listener hands the connection to one of the server's green
  threads when there is something to read (`Connection._readable`,
  `greenthreads.GreenThreads`), which parses every whole frame that arrived with one
  `recv` (`websocket.FrameParser`) and parks again when nothing is left; a writer runs
  only while a backlog waits (`engine.FanoutSocket`).
- `WebSocketDriver` is python-engineio's "websocket" driver: the opening handshake
  (`websocket.handshake`), then the session's handler with a `Connection`. The `101`
  reply goes out with the first frames (the Engine.IO OPEN): one segment.
- `first_request` serves a new connection's first request, when it is a Socket.IO
  WebSocket connect, without eventlet.wsgi's HTTP machinery (its buffered files, the
  standard library's header parser, the full WSGI environ): the request head is read
  with one peek, and anything that is not a plain connect is left to eventlet.wsgi.
"""

from __future__ import annotations

import _socket
import contextlib
import logging
import socket
import time
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import parse_qsl

import eventlet
from eventlet import patcher, wsgi
from eventlet.hubs import get_hub, trampoline

from realtime.transport.greenthreads import GreenThreads
from realtime.transport.websocket import (
    BINARY,
    CLOSE,
    PING,
    PONG,
    TEXT,
    Deflate,
    FrameParser,
    HandshakeError,
    Message,
    ProtocolError,
    close_frame,
    frame,
    handshake,
    text_frame,
)

log = logging.getLogger(__name__)

READ_SIZE = 65_536
# Every read lands here first and only what arrived is copied out: `recv(65536)` would
# allocate (and, above glibc's mmap threshold, map and unmap) 64 KB per read. One buffer
# serves every connection: a read never yields between the `recv_into` and the copy.
_buffer = bytearray(READ_SIZE)
_view = memoryview(_buffer)
READS_PER_WAKEUP = 16  # then the hub's other work runs before this client is read again
PROBE_FRAMES = 8  # frames other than text an upgrade's probe tolerates before it fails
PACKET_SLACK = 65_536  # one packet past the outbound bound (it is checked before a packet)


def held_bound(max_frame: int, outbound_bytes_max: int) -> int:
    """The most bytes one connection holds for its client, whatever it sends: an
    incomplete frame or fragmented message (`max_frame`, 4 x MAX_MESSAGE_BYTES, and a
    header), one read not parsed yet, the messages of one parse (they stop once they
    reach `max_frame`, and the last one is at most `max_frame`: inflated, they can
    outgrow the read), and what waits for it (`outbound_bytes_max`, then a packet)."""
    return 3 * max_frame + 14 + READ_SIZE + outbound_bytes_max + PACKET_SLACK


YIELD_EVERY = 16  # messages handled between yields to the other green threads
HEAD_MAX = 4_096  # a first request longer than this goes to eventlet.wsgi
# messages below this size are not worth deflating (the frame would barely shrink)
DEFLATE_MIN = 128


class Host(Protocol):
    """What a connection asks of the server it belongs to (`engine.EngineServer`, or
    any other server of WebSockets: the conformance suite's echo server)."""

    threads: GreenThreads  # where reads run
    websockets: int  # open connections
    peak_held: int  # the most bytes one connection held (`Connection.holding`)
    compression: bool  # permessage-deflate, with clients that offer it

    @property
    def max_frame(self) -> int:
        """Bytes: a frame or fragmented message above it fails with 1009."""
        ...

    @property
    def send_timeout(self) -> float:
        """Seconds a send may wait for a client that reads nothing."""
        ...


class Session(Protocol):
    """What a connection hands what it reads to (`engine.FanoutSocket`, an Engine.IO
    session; or an echo)."""

    closing: bool  # being closed: nothing more is read for it

    def take(self, data: str | bytes) -> bool:
        """One message (text or binary); False when the session must end (it may set
        the connection's close code first)."""
        ...

    def answer(self, control: bytes) -> None:
        """Send a control frame (a PONG) in order with what else is sent."""
        ...

    def hold(self) -> bool:
        """Hold what is sent until `release` (the answers to one read go out in one
        send); False when it cannot be held."""
        ...

    def release(self) -> None: ...

    def queued(self) -> int:
        """Bytes waiting to be written."""
        ...

    def end_websocket(self) -> None:
        """The client closed, or the socket failed: finish and close."""
        ...

    def websocket_closed(self) -> None:
        """The connection is closed: forget it."""
        ...


class Connection:
    """A WebSocket over a non-blocking socket, read for `host`'s `Session`."""

    __slots__ = (
        "sock",
        "fd",
        "server",
        "parser",
        "compressed",
        "session",
        "listener",
        "closed",
        "sending",
        "greeting",
        "timeout",
        "close_code",
        "close_reason",
        "inbox",
        "held",
        "held_bytes",
        "reading",
    )

    def __init__(self, sock: socket.socket, host: Host, deflate: Deflate | None, greeting: bytes):
        self.sock = sock  # non-blocking: eventlet made it so (see `take_socket`)
        self.fd = sock.fileno()
        self.server = host
        self.parser = FrameParser(host.max_frame, deflate)
        self.compressed = deflate is not None
        self.session: Session | None = None  # once listening
        self.listener: Any = None
        self.closed = False
        self.sending = False  # a blocking send is under way (a writer, or a handshake)
        self.greeting = greeting  # the 101 reply, sent with the first frames
        # bounds a send that the client does not read
        self.timeout = host.send_timeout
        self.close_code: int | None = None
        self.close_reason = ""
        self.inbox: list[Message] = []  # read by `wait` after the message it returned
        self.held: list[bytes] | None = None  # frames held while a read is handled
        self.held_bytes = 0  # their size (bounded with the queue's, `EngineServer.deliver`)
        self.reading = False  # a reader green thread is handling what arrived

    # writing -------------------------------------------------------------------------

    def send(self, message: str | bytes) -> None:
        """Send a text message, or wire bytes (`Raw`, a joined batch), blocking this
        green thread until the kernel has taken all of it."""
        if isinstance(message, str):
            data = text_frame(message, self.compressed and len(message) >= DEFLATE_MIN)
        else:
            data = message
        self.sendall(data)

    def sendall(self, data: bytes) -> None:
        if self.greeting:
            data, self.greeting = self.greeting + data, b""
        view = memoryview(data)
        self.sending = True
        try:
            while view:
                try:
                    view = view[self.sock.send(view) :]
                except BlockingIOError:
                    trampoline(self.fd, write=True, timeout=self.timeout, timeout_exc=TimeoutError)
        finally:
            self.sending = False

    def send_nowait(self, data: bytes) -> int | None:
        """Send what the kernel takes of `data` without waiting; how much it took, or
        None when the socket failed (the reader or a writer meets the same error)."""
        try:
            return self.sock.send(data)
        except BlockingIOError:
            return 0
        except OSError:
            return None

    # reading -------------------------------------------------------------------------

    def wait(self, deadline: float) -> str | None:
        """The next text message, waiting for it until `deadline` (`time.monotonic()`),
        only before `listen`: an upgrade's probe. Pings are answered; None when the
        connection ends, the deadline passes, or `PROBE_FRAMES` other frames come first.
        A client that keeps sending cannot hold the hub: the wait yields after each read."""
        if self.greeting:
            self.sendall(b"")
        frames = 0
        while not self.closed:
            while self.inbox:
                opcode, payload = self.inbox.pop(0)
                if opcode == TEXT:
                    return str(payload)
                frames += 1
                if opcode == CLOSE:
                    self.close_code = payload  # echoed in our closing frame
                    return None
                if frames > PROBE_FRAMES:
                    return None
                if opcode == PING:
                    self.sendall(frame(PONG, payload))
            if self.parser.ready:
                messages = self._parse(b"")
                if messages is None:
                    return None
                self.inbox += messages
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                data = _recv(self.sock)
            except BlockingIOError:
                try:
                    trampoline(self.fd, read=True, timeout=remaining, timeout_exc=TimeoutError)
                except TimeoutError:
                    return None
                continue
            except OSError:
                return None
            if not data:
                return None
            eventlet.sleep(0)  # let the rest of the server run between reads
            messages = self._parse(data)
            if messages is None:
                return None
            self.inbox += messages
        return None

    def _parse(self, data: bytes) -> list[Message] | None:
        """The messages `data` completes; None after a protocol error (its code kept)."""
        try:
            return self.parser.feed(data)
        except ProtocolError as exc:
            self.close_code, self.close_reason = exc.code, exc.reason
            return None

    def holding(self) -> int:
        """Bytes this connection holds for its client: what the parser keeps (an
        incomplete frame, a fragmented message, the inflater's input), messages read and
        not yet handled, answers held during a read, and its session's queue."""
        inbox = _size(self.inbox)
        queued = self.session.queued() if self.session is not None else 0
        return self.parser.pending + inbox + self.held_bytes + queued

    def listen(self, session: Session) -> None:
        """Hand the connection to `session` and read it from the hub (after what `wait`
        read beyond the message it returned)."""
        self.session = session
        self.server.websockets += 1
        self._listen()
        if self.inbox or self.parser.ready:
            self.reading = True
            self.server.threads.run(self.read)

    def _listen(self) -> None:
        hub = get_hub()
        self.listener = hub.add(hub.READ, self.fd, self._readable, self._lost, None)

    def _unlisten(self) -> None:
        if self.listener is not None:
            get_hub().remove(self.listener)
            self.listener = None

    def _readable(self, fileno: int) -> None:  # in the hub: must not block or raise
        if self.reading:
            # more arrived while a reader handles what came before (and waits on
            # something): stop listening, or the hub would call this on every turn;
            # the reader listens again when it is done
            self._unlisten()
            return
        self.reading = True
        self.server.threads.run(self.read)

    def _lost(self, exc: BaseException) -> None:  # in the hub: the descriptor went away
        self.listener = None
        eventlet.spawn_n(self._end)

    def read(self) -> None:
        """Handle every whole message that has arrived (in one of the server's
        `GreenThreads`). The listener stays in the hub meanwhile (no system call to
        remove and add it per read); what the server sends this client meanwhile goes
        out in one write (`EngineServer.hold`)."""
        try:
            self._read()
        except Exception:
            log.exception("reading a WebSocket failed; closing it")
            with contextlib.suppress(Exception):
                self.close()

    def _read(self) -> None:
        session = self.session
        assert session is not None
        held = session.hold()
        try:
            self._read_messages()
        finally:
            self.reading = False
            self._note([])
            if held:
                session.release()
            if not self.closed and self.listener is None:
                self._listen()

    def _note(self, messages: list[Message]) -> None:
        """Count a parse's messages, not handled yet, in the server's peak."""
        holding = self.holding() + _size(messages)
        if holding > self.server.peak_held:
            self.server.peak_held = holding

    def _read_messages(self) -> None:
        messages, self.inbox = self.inbox, []
        handled = reads = 0
        data = b""
        self._note(messages)
        while True:
            for opcode, payload in messages:
                if handled and not handled % YIELD_EVERY:
                    eventlet.sleep(0)  # a flooding client must not starve the others
                handled += 1
                if not self._handle(opcode, payload):
                    self._end()
                    return
                if self.closed or (self.session is not None and self.session.closing):
                    return  # dropped (a slow consumer), or being closed: read no more
            if self.parser.ready:  # whole frames wait in the parser's buffer
                parsed = self._parse(b"")
                if parsed is None:
                    self._end()
                    return
                messages = parsed
                self._note(messages)
                continue
            if reads == READS_PER_WAKEUP or (reads and len(data) < READ_SIZE):
                # a read shorter than asked took everything there was: the hub says
                # when more comes (no read that would only say EAGAIN)
                return
            reads += 1
            try:
                data = _recv(self.sock)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._end()
                return
            parsed = self._parse(data)
            if parsed is None:
                self._end()
                return
            messages = parsed
            self._note(messages)

    def _handle(self, opcode: int, payload: Any) -> bool:
        """One inbound message; False when the session must end."""
        session = self.session
        assert session is not None
        if opcode in (TEXT, BINARY):
            return session.take(payload)
        if opcode == PING:
            session.answer(frame(PONG, payload))
            return True
        if opcode == CLOSE:
            self.close_code = payload  # echoed in our closing frame
            return False
        return True  # a PONG

    def _end(self) -> None:
        if not self.closed and self.session is not None:
            self.session.end_websocket()

    # closing -------------------------------------------------------------------------

    def close(self) -> None:
        """Send the closing frame (what the kernel takes of it) and close the socket;
        once listening, end the session too. Idempotent."""
        if self.closed:
            return
        self.closed = True
        self._unlisten()
        # answers held during the read that ends here go first (RFC 6455 5.5.2: a PONG
        # for each PING that came before the client's CLOSE)
        held = b"".join(self.held) if self.held else b""
        self.held, self.held_bytes = None, 0
        with contextlib.suppress(OSError):
            self.sock.send(self.greeting + held + close_frame(self.close_code, self.close_reason))
            self.sock.shutdown(socket.SHUT_WR)
        self.sock.close()
        if self.session is not None:
            self.server.websockets -= 1
            self.session.websocket_closed()


def _size(messages: list[Message]) -> int:
    """The bytes of the messages' text and binary payloads."""
    return sum(len(p) for _, p in messages if isinstance(p, str | bytes))


def _recv(sock: socket.socket) -> bytes:
    n = sock.recv_into(_buffer)
    return bytes(_view[:n])


def take_socket(environ: dict[str, Any]) -> socket.socket:
    """The connection's socket, taken from eventlet.wsgi: its own socket object is left
    detached, so that closing it when its green thread ends closes nothing. The
    descriptor stays non-blocking, as eventlet set it (O_NONBLOCK belongs to the open
    file, not to the socket object)."""
    green = environ["eventlet.input"].get_socket().fd
    # the plain values (the socket module's properties convert them to enums, slowly);
    # given, they spare the constructor the system calls that would find them out
    family, kind, proto = (d.__get__(green) for d in _PLAIN)
    raw: socket.socket = patcher.original("socket").socket(
        family, kind, proto, fileno=green.detach()
    )
    return raw


_PLAIN = (_socket.socket.family, _socket.socket.type, _socket.socket.proto)


class WebSocketDriver:
    """The opening handshake, then `handler` with a `Connection` (the 101 reply goes out
    with its first frames). With python-engineio it is the "websocket" driver, and the
    handler a session's `_websocket_handler`."""

    def __init__(self, handler: Callable[[Connection], object], host: Host) -> None:
        self.handler = handler
        self.server = host

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        try:
            greeting, deflate = handshake(environ, self.server.compression)
        except HandshakeError as exc:
            start_response(exc.status, [("Connection", "close"), *exc.headers])
            return [b""]
        conn = Connection(take_socket(environ), self.server, deflate, greeting)
        self.handler(conn)
        if not conn.closed and conn.session is None:  # the upgrade failed
            conn.close()
        if "eventlet.set_idle" in environ:  # under eventlet.wsgi: no response to write
            wsgi.WSGI_LOCAL.already_handled = True
        return []


class _Input:
    """`environ["eventlet.input"]` for a request served by `first_request`."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock

    def get_socket(self) -> Any:
        return self.sock


def upgrade_environ(head: bytes, address: tuple[str, int]) -> tuple[dict[str, Any], int] | None:
    """The WSGI environ of a request head that is a plain Socket.IO WebSocket connect
    (`GET /socket.io/?EIO=4&transport=websocket`, no session, no body), and the head's
    length; None for anything else, which eventlet.wsgi then serves (and refuses)."""
    end = head.find(b"\r\n\r\n")
    if end < 0:
        return None
    try:
        text = head[:end].decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes any byte
        return None
    request_line, *lines = text.split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or parts[0] != "GET" or parts[2] != "HTTP/1.1":
        return None
    path, _, query = parts[1].partition("?")
    if path != "/socket.io/":
        return None
    if "%" in query or "+" in query:
        params = dict(parse_qsl(query, keep_blank_values=True))
    else:  # the common case, without the general parser
        params = dict(pair.partition("=")[::2] for pair in query.split("&"))
    if params.get("EIO") != "4" or params.get("transport") != "websocket":
        return None
    if "sid" in params or "j" in params:
        return None
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": address[0],
        "REMOTE_PORT": str(address[1]),
        "wsgi.url_scheme": "http",
    }
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip() or " " in name:
            return None  # folded or malformed: eventlet.wsgi answers it
        if "_" in name:
            # dropped, as eventlet.wsgi does: `X_Forwarded_For` would otherwise land in
            # HTTP_X_FORWARDED_FOR beside (or instead of) what a trusted proxy wrote
            continue
        key = "HTTP_" + name.upper().replace("-", "_")
        if key in ("HTTP_CONTENT_LENGTH", "HTTP_TRANSFER_ENCODING"):
            return None
        value = value.strip()
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    if environ.get("HTTP_UPGRADE", "").lower() != "websocket":
        return None
    return environ, end + 4


def first_request(conn_state: list[Any], app: Any) -> bool:
    """Serve a new connection's first request when it is a Socket.IO WebSocket connect
    (see `upgrade_environ`); True when it was served (or the connection is gone), False
    to leave it, unread, to eventlet.wsgi. Waits for the request up to the socket's
    timeout (HTTP_TIMEOUT)."""
    address, sock = conn_state[0], conn_state[1]
    try:
        head = sock.recv(HEAD_MAX, socket.MSG_PEEK)
    except TimeoutError:
        sock.close()  # a half-sent request (slowloris): closed, as eventlet.wsgi would
        return True
    except OSError:
        return False
    parsed = upgrade_environ(head, address) if head else None
    if parsed is None:
        return False
    environ, length = parsed
    sock.recv(length)  # the head, which the peek showed is there
    environ["eventlet.input"] = _Input(sock)
    answer: list[Any] = []
    result = app(environ, lambda status, headers, exc_info=None: answer.append((status, headers)))
    try:
        if answer:  # refused: write the response and close
            status, headers = answer[0]
            body = b"".join(result)
            lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers)]
            lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
            with contextlib.suppress(OSError):
                sock.sendall("\r\n".join(lines).encode("latin-1") + body)
            sock.close()
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return True
