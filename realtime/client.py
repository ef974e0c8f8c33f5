"""`RealtimeClient`: the Python counterpart of the reference's socket.io client.

It connects to `/realtime` with a token, reconnects by itself, resumes from the last
block it saw (`auth.lastBlock` and `lastBlockHash` on every reconnect), subscribes to
price channels again after a reconnect, and calls back on `new-block`,
`price-update`, `reorg`, `finalized`, `private-message` and `exception`.

Callbacks run one at a time, in the order the server sent the events
(python-engineio's client would otherwise run each message in its own thread, and
`new-block` 41 could be handled after 42). Callbacks must not block.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

import engineio
import socketio

NAMESPACE = "/realtime"
Callback = Callable[[dict[str, Any]], None]


class OrderedEngineClient(engineio.Client):
    """engineio.Client that handles messages in arrival order, on its read thread, and
    closes its WebSocket when the connection is lost.

    python-engineio's client, when the server goes away, resets its state and leaves the
    lost WebSocket open: a socket (and its descriptor) per reconnect, freed only by the
    garbage collector, since a websocket-client WebSocket refers to itself."""

    def _trigger_event(self, event: str, *args: Any, **kwargs: Any) -> Any:
        kwargs["run_async"] = False
        return super()._trigger_event(event, *args, **kwargs)

    def _reset(self) -> None:
        ws: Any = self.ws  # type: ignore[has-type]
        self.ws = None
        if ws is not None:
            ws.shutdown()  # closes the socket at once; a no-op after a clean close
        super()._reset()


class OrderedClient(socketio.Client):
    def _engineio_client_class(self) -> type[engineio.Client]:
        return OrderedEngineClient


class RealtimeClient:
    def __init__(
        self,
        url: str,
        token: str | Callable[[], str | None] | None = None,
        on_new_block: Callback | None = None,
        on_price_update: Callback | None = None,
        on_reorg: Callback | None = None,
        on_finalized: Callback | None = None,
        on_private_message: Callback | None = None,
        on_exception: Callback | None = None,
        reconnection: bool = True,
        reconnection_attempts: int = 0,
        reconnection_delay: float = 1.0,
        reconnection_delay_max: float = 5.0,
        transports: Iterable[str] = ("websocket",),
    ) -> None:
        self.url = url
        self.token = token
        self.transports = list(transports)
        self.last_block: int | None = None
        self.last_block_hash: str | None = None
        self.tokens: set[str] = set()
        self._lock = threading.Lock()
        self._callbacks = {
            "new-block": on_new_block,
            "price-update": on_price_update,
            "reorg": on_reorg,
            "finalized": on_finalized,
            "private-message": on_private_message,
            "exception": on_exception,
        }
        self.sio = OrderedClient(
            reconnection=reconnection,
            reconnection_attempts=reconnection_attempts,
            reconnection_delay=reconnection_delay,
            reconnection_delay_max=reconnection_delay_max,
        )
        self.sio.on("connect", self._on_connect, namespace=NAMESPACE)
        self.sio.on("new-block", self._on_new_block, namespace=NAMESPACE)
        self.sio.on("reorg", self._on_reorg, namespace=NAMESPACE)
        for event in ("price-update", "finalized", "private-message", "exception"):
            self.sio.on(event, self._forward(event), namespace=NAMESPACE)

    # connection ---------------------------------------------------------------------

    def connect(self, wait_timeout: float = 10) -> None:
        self.sio.connect(
            self.url,
            namespaces=[NAMESPACE],
            transports=self.transports,
            auth=self._auth,
            wait_timeout=wait_timeout,
        )

    def disconnect(self) -> None:
        self.sio.disconnect()

    @property
    def connected(self) -> bool:
        return bool(self.sio.connected)

    def _auth(self) -> dict[str, Any]:
        auth: dict[str, Any] = {}
        token = self.token() if callable(self.token) else self.token
        if token:
            auth["token"] = token
        with self._lock:
            if self.last_block is not None:
                auth["lastBlock"] = self.last_block
                if self.last_block_hash is not None:
                    auth["lastBlockHash"] = self.last_block_hash
        return auth

    def _on_connect(self) -> None:
        for token in sorted(self.tokens):  # resubscribe after a reconnect
            self.sio.emit("subscribe", {"channel": f"price:{token}"}, namespace=NAMESPACE)

    # channels -----------------------------------------------------------------------

    def subscribe_to_prices(self, tokens: Iterable[str]) -> None:
        for token in tokens:
            self.tokens.add(token)
            if self.sio.connected:
                self.sio.emit("subscribe", {"channel": f"price:{token}"}, namespace=NAMESPACE)

    def unsubscribe_from_prices(self, tokens: Iterable[str]) -> None:
        for token in tokens:
            self.tokens.discard(token)
            if self.sio.connected:
                self.sio.emit("unsubscribe", {"channel": f"price:{token}"}, namespace=NAMESPACE)

    def send_private(self, to: str, message: str, timeout: float = 10) -> Any:
        """Send a private message; returns the server's ack ({success: true} = accepted)."""
        return self.sio.call(
            "private-message", {"to": to, "message": message}, namespace=NAMESPACE, timeout=timeout
        )

    def ping(self) -> None:
        self.sio.emit("ping", namespace=NAMESPACE)

    # events -------------------------------------------------------------------------

    def _forward(self, event: str) -> Callable[[Any], None]:
        def forward(data: Any = None) -> None:
            callback = self._callbacks[event]
            if callback is not None:
                callback(data)

        return forward

    def _on_new_block(self, data: Any) -> None:
        with self._lock:
            self.last_block = int(data["number"])
            self.last_block_hash = str(data["hash"])
        if self._callbacks["new-block"] is not None:
            self._callbacks["new-block"](data)

    def _on_reorg(self, data: Any) -> None:
        ancestor = data["commonAncestor"]
        with self._lock:
            if self.last_block is not None and self.last_block > int(ancestor["number"]):
                self.last_block = int(ancestor["number"])
                self.last_block_hash = str(ancestor["hash"])
        if self._callbacks["reorg"] is not None:
            self._callbacks["reorg"](data)
