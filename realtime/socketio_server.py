"""socketio.Server with the gateway's checks in front of every inbound packet.

Before any handler runs: the inbound size cap (`exception` "Message too large"),
binary packets refused, malformed packets answered instead of killing the
connection, and the per-connection rate limit ("Rate limit exceeded", the client
stays connected). Each refusal is an `exception` event plus, when the client asked
for an ack, `{success: false, error}`.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

import socketio
from engineio import packet as eio_packet

from realtime import protocol
from realtime.admission import Admission
from realtime.engineio_server import EngineServer, encode_ack, encode_event

log = logging.getLogger(__name__)


class GatewayServer(socketio.Server):
    """`allow(sid)` is asked before each event a client sends (the rate limit);
    `count_refusal(reason)` hears of every refusal. Other keyword arguments go to
    python-socketio's server and on to `EngineServer`."""

    def __init__(
        self,
        *,
        max_message_bytes: int,
        allow: Callable[[str], bool],
        count_refusal: Callable[[str], None],
        admission: Admission,
        **kwargs: Any,
    ) -> None:
        super().__init__(count_refusal=count_refusal, **kwargs)
        self.admission = admission
        self.max_message_bytes = max_message_bytes
        self.allow = allow
        self.count_refusal = count_refusal
        self._after_connect: list[Callable[[str], None]] = []
        self.draining = False  # shutting down: new sessions are refused (clients retry)

    def on_connected(self, handler: Callable[[str], None]) -> None:
        """Call `handler(sid)` once a client's CONNECT answer is queued, before anything
        can yield: what it sends reaches the client right after the CONNECT."""
        self._after_connect.append(handler)

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
        return super()._handle_eio_connect(eio_sid, environ)

    def _handle_eio_disconnect(self, eio_sid: str, reason: Any) -> None:
        self.admission.leave(eio_sid)
        super()._handle_eio_disconnect(eio_sid, reason)

    def _engineio_server_class(self) -> type[EngineServer]:
        return EngineServer

    def refuse(self, eio_sid: str, message: str, reason: str, ack_id: int | None = None) -> None:
        """Answer one client: an `exception` event, and an ack error if it asked for one."""
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
        text = f"4{ns},{json.dumps({'message': message})}"
        self.eio.send_packet(eio_sid, eio_packet.Packet(eio_packet.MESSAGE, data=text))

    def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        if isinstance(data, bytes | bytearray):
            if eio_sid not in self._binary_packet:
                self.refuse(eio_sid, protocol.BINARY_REFUSED, "binary")
                return
        elif isinstance(data, str):
            if len(data) > self.max_message_bytes // 4 and (
                len(data.encode("utf-8", "surrogatepass")) > self.max_message_bytes
            ):
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

    def _handle_connect(self, eio_sid: str, namespace: str | None, data: Any) -> None:
        ns = namespace or "/"
        if self.manager.sid_from_eio_sid(eio_sid, ns) is not None:
            # a second CONNECT on one Engine.IO session would make a second client that
            # the session's close never removes (a leak, and a connected-clients gauge
            # that stays too high)
            self.refuse(eio_sid, protocol.ALREADY_CONNECTED, "already connected")
            return
        super()._handle_connect(eio_sid, namespace, data)
        sid = self.manager.sid_from_eio_sid(eio_sid, ns)
        if ns == protocol.NAMESPACE and sid is not None and self.manager.is_connected(sid, ns):
            for handler in self._after_connect:
                handler(sid)

    def _handle_event(self, eio_sid: str, namespace: str | None, id: Any, data: Any) -> None:
        ns = namespace or "/"
        ack_id = id if isinstance(id, int) else None
        if ns != protocol.NAMESPACE:
            return
        sid = self.manager.sid_from_eio_sid(eio_sid, ns)
        if sid is None or not self.manager.is_connected(sid, ns):
            return
        if not isinstance(data, list) or not data or not isinstance(data[0], str):
            self.refuse(eio_sid, protocol.MALFORMED, "malformed", ack_id)
            return
        if data[0] in self.reserved_events or data[0] == "*":  # "*" names the catch-all
            self.refuse(eio_sid, f"{protocol.UNKNOWN_EVENT}: {data[0]}", "unknown event", ack_id)
            return
        if not self.allow(sid):
            # A long-polling POST can carry thousands of packets, all handled before the
            # client's next GET drains its queue: answering each refusal would overflow
            # the queue and drop the client as a slow consumer. Once the queue is half
            # full, further refusals are only counted.
            if self.eio.has_room(eio_sid):
                self.refuse(eio_sid, protocol.RATE_LIMITED, "rate limit", ack_id)
            else:
                self.count_refusal("rate limit, unanswered")
            return
        super()._handle_event(eio_sid, namespace, id, data)
