"""New heads over a websocket (`eth_subscribe` `newHeads`), when `ETH_WS_URL` is set.

A background thread keeps one subscription open and hands each header to the
follower, waking it at once. When the socket drops it reconnects with backoff; while
it is down (or quiet), the follower falls back to polling.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from websockets.exceptions import WebSocketException
from websockets.sync.client import connect

from indexer.urls import mask_url

log = logging.getLogger(__name__)

Header = dict[str, Any]

RECONNECT_MAX_S = 5.0


class HeadSubscription:
    """Calls `on_head(header)` for every `newHeads` notification from `url`."""

    def __init__(self, url: str, on_head: Callable[[Header], None], timeout: float = 10.0) -> None:
        self.url = url
        self.on_head = on_head
        self.timeout = timeout
        self.connected = False
        self.last_message = 0.0  # monotonic time of the last notification
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="new-heads", daemon=True)
        self._socket: Any = None

    def start(self) -> HeadSubscription:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        sock = self._socket
        if sock is not None:
            with contextlib.suppress(Exception):  # already broken; closing is best effort
                sock.close()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        delay = 0.1
        while not self._stop.is_set():
            try:
                self._listen()
                delay = 0.1
            except (OSError, WebSocketException, ValueError, TimeoutError) as exc:
                if not self._stop.is_set():
                    log.warning("newHeads socket %s failed: %s", mask_url(self.url), exc)
            self.connected = False
            self._stop.wait(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    def _listen(self) -> None:
        with connect(self.url, open_timeout=self.timeout, close_timeout=1, max_size=2**22) as sock:
            self._socket = sock
            sock.send(
                json.dumps(
                    {"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]}
                )
            )
            reply = json.loads(sock.recv(timeout=self.timeout))
            if "error" in reply or "result" not in reply:
                raise ValueError(f"eth_subscribe refused: {reply.get('error')}")
            self.connected = True
            log.info("subscribed to newHeads at %s", mask_url(self.url))
            while not self._stop.is_set():
                message = json.loads(sock.recv())
                header = message.get("params", {}).get("result")
                if isinstance(header, dict) and "number" in header:
                    self.last_message = time.monotonic()
                    self.on_head(header)
