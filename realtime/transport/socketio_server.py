"""socketio.Server with the gateway's checks in front of every inbound packet.

Before a session has joined `/realtime`, the protocol's rules: a CONNECT to another
namespace is answered CONNECT_ERROR `{"message": "Invalid namespace"}`; a CONNECT the
gateway refuses is answered CONNECT_ERROR (the client then closes the session; one that
retries on it is closed after `REFUSED_CONNECTS_MAX`); a packet that is not Socket.IO
closes the session; any other packet (binary ones included) is ignored; a session that
has not connected within `connect_timeout` seconds is closed.

Once it has joined: the inbound size cap (`exception` "Message too large"), binary
packets refused, malformed packets answered instead of killing the connection (a
deliberate difference from the reference server, which closes it), and the
per-connection rate limit ("Rate limit exceeded", the client stays connected). Each
refusal is an `exception` event plus, when the client asked for an ack,
`{success: false, error}`, sent while the client has room for it (see
`EngineServer.has_room`); past that, refusals are only counted.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import socketio
from engineio import packet as eio_packet

from realtime import protocol
from realtime.transport import codec
from realtime.transport.admission import Admission
from realtime.transport.engine import EngineServer, encode_ack, encode_event
from realtime.transport.fanout import Handlers

log = logging.getLogger(__name__)

NS = protocol.NAMESPACE

REFUSED_CONNECTS_MAX = 3  # refused CONNECTs one session may send before it is closed
SWEEP_S = 1.0  # seconds between looks for sessions past CONNECT_TIMEOUT


class SocketServer(socketio.Server):
    """`/realtime` served to `Handlers` (`serve`); `count_refusal(reason)` hears of every
    refusal. Other keyword arguments go to python-socketio's server and on to
    `EngineServer`."""

    def __init__(
        self,
        *,
        max_message_bytes: int,
        count_refusal: Callable[[str], None],
        admission: Admission,
        connect_timeout: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(count_refusal=count_refusal, **kwargs)
        self.admission = admission
        self.connect_timeout = connect_timeout
        self._refused_connects: dict[str, int] = {}  # by Engine.IO session
        # sessions that have not joined yet, and when each must have: swept once a second
        # (a timer per session would cost a heap push and pop per connect)
        self._joining: dict[str, float] = {}
        self._sweeping = False
        self.max_message_bytes = max_message_bytes
        self.count_refusal = count_refusal
        self.application: Handlers | None = None
        self.draining = False  # shutting down: new sessions are refused (clients retry)

    def serve(self, handlers: Handlers) -> None:
        """Hand `/realtime`'s clients to `handlers`: their connects, events (each asked
        `allow` first) and disconnects."""
        self.application = handlers
        self.on("connect", self._on_connect, namespace=NS)
        self.on("disconnect", self._on_disconnect, namespace=NS)
        self.on("*", self._on_event, namespace=NS)

    def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> bool:
        assert self.application is not None
        refusal = self.application.connect(sid, auth)
        if refusal is not None:
            raise socketio.exceptions.ConnectionRefusedError(refusal)
        return True

    def _on_disconnect(self, sid: str, reason: Any = None) -> None:
        assert self.application is not None
        self.application.disconnected(sid)

    def _on_event(self, event: str, sid: str, *args: Any) -> Any:
        assert self.application is not None
        return self.application.event(sid, event, args)

    def _connected(self, eio_sid: str, sid: str) -> None:
        """A client joined: its CONNECT answer is queued, and nothing has yielded since
        (what the handlers send reaches it right after the CONNECT)."""
        self._joining.pop(eio_sid, None)
        environ = self.environ.get(eio_sid)
        if environ is not None:  # the WSGI environ is kilobytes; keep what is used
            self.environ[eio_sid] = {"REMOTE_ADDR": environ.get("REMOTE_ADDR")}
        if self.application is not None:
            self.application.connected(sid)

    def close_sessions(self) -> int:
        """Refuse new sessions and close every Engine.IO session by closing its
        transport (the WebSocket's close frame; a long poll's next request fails), so
        that every client reconnects. Neither a Socket.IO DISCONNECT (final for
        socket.io-client: "io server disconnect") nor an Engine.IO CLOSE packet (final
        for python-socketio's client) is sent. Returns how many were closed."""
        self.draining = True
        sessions = list(self.eio.sockets.values())
        for sock in sessions:
            with contextlib.suppress(Exception):  # a session that is going anyway
                sock.close(wait=False, abort=True, reason=self.eio.reason.SERVER_DISCONNECT)
        return len(sessions)

    def _handle_eio_connect(self, eio_sid: str, environ: dict[str, Any]) -> Any:
        if self.draining:
            self.count_refusal("shutting down")
            return {"message": protocol.SHUTTING_DOWN}
        refusal = self.admission.admit(eio_sid, environ)
        if refusal is not None:
            self.count_refusal(refusal)
            return {"message": refusal}  # the handshake is answered 401 with this
        if self.connect_timeout > 0:
            self._joining[eio_sid] = time.monotonic() + self.connect_timeout
            if not self._sweeping:
                self._sweeping = True
                self.eio.call_later(SWEEP_S, self._sweep)
        return super()._handle_eio_connect(eio_sid, environ)

    def _sweep(self) -> None:
        """Close the sessions that have not joined by their deadline (CONNECT_TIMEOUT)."""
        now = time.monotonic()
        late = [sid for sid, deadline in self._joining.items() if deadline <= now]
        for eio_sid in late:
            del self._joining[eio_sid]
            if eio_sid in self.eio.sockets and self._member(eio_sid) is None:
                self.count_refusal("connect timeout")
                self._close_session(eio_sid)
        if self._joining:
            self.eio.call_later(SWEEP_S, self._sweep)
        else:
            self._sweeping = False

    def _member(self, eio_sid: str) -> str | None:
        """The session's client in `/realtime` (the one namespace served), if it has
        joined."""
        sid = self.manager.sid_from_eio_sid(eio_sid, NS)
        return sid if sid is not None and self.manager.is_connected(sid, NS) else None

    def _too_large(self, data: str) -> bool:
        """A text packet over the inbound cap (its UTF-8 length is only measured when
        its length in characters could exceed it)."""
        return len(data) > self.max_message_bytes // 4 and (
            len(data.encode("utf-8", "surrogatepass")) > self.max_message_bytes
        )

    def _close_session(self, eio_sid: str) -> None:
        """End an Engine.IO session after what was sent to it: a WebSocket's writer
        sends its queue (CLOSE last) and closes; a long poll gets the CLOSE packet."""
        sock = self.eio.sockets.get(eio_sid)
        if sock is not None:
            sock.close(wait=False, abort=False, reason=self.eio.reason.SERVER_DISCONNECT)

    def _handle_eio_disconnect(self, eio_sid: str, reason: Any) -> None:
        self.admission.leave(eio_sid)
        self._refused_connects.pop(eio_sid, None)
        self._joining.pop(eio_sid, None)
        super()._handle_eio_disconnect(eio_sid, reason)

    def _engineio_server_class(self) -> type[EngineServer]:
        return EngineServer

    def refuse(self, eio_sid: str, message: str, reason: str, ack_id: int | None = None) -> None:
        """Answer one client: an `exception` event, and an ack error if it asked for one;
        only counted once half of what the client may have waiting is taken. (A
        long-polling POST can carry thousands of packets, all handled before the client's
        next GET drains its queue: answering each refusal would overflow the queue and
        drop the client as a slow consumer.)"""
        if not self.eio.has_room(eio_sid):
            self.count_refusal(f"{reason}, unanswered")
            return
        self.count_refusal(reason)
        ns = protocol.NAMESPACE
        self.eio.send_packet(eio_sid, encode_event(ns, "exception", protocol.exception(message)))
        if ack_id is not None:
            self.eio.send_packet(eio_sid, encode_ack(ns, ack_id, protocol.refused(message)))

    def _refuse_connect(self, eio_sid: str, data: str, message: str) -> None:
        """Answer a CONNECT that is not read with CONNECT_ERROR, so that the client
        fails at once with `message` instead of waiting for an answer."""
        head = data[1:256]
        ns = head[: head.index(",")] if head.startswith("/") and "," in head else "/"
        self._connect_error(eio_sid, ns, message)
        self._refused_connect(eio_sid)

    def _refused_connect(self, eio_sid: str) -> None:
        """Count a refused CONNECT of the session: clients close the session themselves
        after one (closing it here too races python-engineio's client into a
        traceback); one that keeps retrying on it is closed after a few."""
        refused = self._refused_connects[eio_sid] = self._refused_connects.get(eio_sid, 0) + 1
        if refused >= REFUSED_CONNECTS_MAX:
            self.count_refusal("connect retried")
            self._close_session(eio_sid)

    def _connect_error(self, eio_sid: str, namespace: str, message: str) -> None:
        prefix = "" if namespace == "/" else f"{namespace},"
        text = f"4{prefix}{codec.dumps({'message': message})}"
        self.eio.send_packet(eio_sid, eio_packet.Packet(eio_packet.MESSAGE, data=text))

    def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        if self._member(eio_sid) is None:
            self._before_connect(eio_sid, data)
            return
        if isinstance(data, bytes | bytearray):
            if eio_sid not in self._binary_packet:
                self.refuse(eio_sid, protocol.BINARY_REFUSED, "binary")
                return
        elif isinstance(data, str):
            if self._too_large(data):
                self.refuse(eio_sid, protocol.MESSAGE_TOO_LARGE, "too large")
                if data[:1] == "0":  # a CONNECT (a huge token): fail the connect at once
                    self._refuse_connect(eio_sid, data, protocol.MESSAGE_TOO_LARGE)
                return
            if data[:1] in ("5", "6"):
                self.refuse(eio_sid, protocol.BINARY_REFUSED, "binary")
                return
        try:
            super()._handle_eio_message(eio_sid, data)
        except (ValueError, TypeError, KeyError, IndexError):
            self.refuse(eio_sid, protocol.MALFORMED, "malformed")

    def _before_connect(self, eio_sid: str, data: Any) -> None:
        """A packet of a session that has not joined `/realtime`: a CONNECT is handled,
        anything that is not Socket.IO closes the session, the rest is ignored."""
        if isinstance(data, str) and data[:1] == "0":
            if self._too_large(data):
                self.count_refusal("too large")
                self._refuse_connect(eio_sid, data, protocol.MESSAGE_TOO_LARGE)
                return
            try:
                super()._handle_eio_message(eio_sid, data)
            except (ValueError, TypeError, KeyError, IndexError):
                self.count_refusal("malformed before connect")
                self._close_session(eio_sid)
            return
        if isinstance(data, str):
            try:
                self.packet_class(encoded_packet=data)
            except (ValueError, TypeError, KeyError, IndexError):
                self.count_refusal("malformed before connect")
                self._close_session(eio_sid)
                return
        self.count_refusal("before connect, ignored")

    def _handle_connect(self, eio_sid: str, namespace: str | None, data: Any) -> None:
        ns = namespace or "/"
        if ns != protocol.NAMESPACE:
            # the protocol's answer, an object (python-socketio sends the string "Unable
            # to connect", which leaves socket.io-client's error message undefined)
            self.count_refusal("invalid namespace")
            self._connect_error(eio_sid, ns, protocol.INVALID_NAMESPACE)
            self._refused_connect(eio_sid)
            return
        if self.manager.sid_from_eio_sid(eio_sid, ns) is not None:
            # a second CONNECT on one Engine.IO session would make a second client that
            # the session's close never removes (a leak, and a connected-clients gauge
            # that stays too high)
            self.refuse(eio_sid, protocol.ALREADY_CONNECTED, "already connected")
            self._refused_connect(eio_sid)
            return
        super()._handle_connect(eio_sid, namespace, data)
        sid = self._member(eio_sid)
        if sid is not None:
            self._connected(eio_sid, sid)
        else:
            self._refused_connect(eio_sid)  # the handlers refused it (CONNECT_ERROR sent)

    def _handle_event(self, eio_sid: str, namespace: str | None, id: Any, data: Any) -> None:
        ns = namespace or "/"
        ack_id = id if isinstance(id, int) else None
        if ns != protocol.NAMESPACE:
            return
        sid = self._member(eio_sid)
        if sid is None:
            return
        if not isinstance(data, list) or not data or not isinstance(data[0], str):
            self.refuse(eio_sid, protocol.MALFORMED, "malformed", ack_id)
            return
        if data[0] in self.reserved_events or data[0] == "*":  # "*" names the catch-all
            self.refuse(eio_sid, f"{protocol.UNKNOWN_EVENT}: {data[0]}", "unknown event", ack_id)
            return
        if self.application is not None and not self.application.allow(sid):
            self.refuse(eio_sid, protocol.RATE_LIMITED, "rate limit", ack_id)
            return
        super()._handle_event(eio_sid, namespace, id, data)
