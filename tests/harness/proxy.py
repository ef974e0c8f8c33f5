"""A loopback HTTP proxy in front of a real node, for failure paths a node cannot stage.

It forwards every request to the node, except that it can first answer a number of
requests with a canned reply (e.g. HTTP 429), and can hold each request for `delay`
seconds first (a slow node: a job that is still running when a test needs one).
Used by the RPC and worker tests.
"""

from __future__ import annotations

import collections
import contextlib
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

# (request JSON, the node's reply JSON) -> the reply to send instead
Rewrite = Callable[[Any, Any], Any]


class RpcProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.canned: collections.deque[tuple[int, bytes]] = collections.deque()
        self.forwarded = 0
        self.answered_canned = 0
        self.rewrite: Rewrite | None = None
        self.delay = 0.0  # seconds each forwarded request waits first
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def answer_next(
        self, count: int, status: int = 429, body: bytes = b"Too Many Requests"
    ) -> None:
        """Answer the next `count` requests with `status` and `body` instead of forwarding."""
        with self._lock:
            self.canned.extend([(status, body)] * count)

    def _next(self) -> tuple[int, bytes] | None:
        with self._lock:
            if self.canned:
                self.answered_canned += 1
                return self.canned.popleft()
            self.forwarded += 1
            return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                with contextlib.suppress(OSError):
                    body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                    canned = proxy._next()
                    if canned is None:
                        time.sleep(proxy.delay)
                        try:
                            reply = requests.post(
                                proxy.upstream,
                                data=body,
                                headers={"Content-Type": "application/json"},
                                timeout=10,
                            )
                            content = reply.content
                            if proxy.rewrite is not None and reply.ok:
                                new = proxy.rewrite(json.loads(body), reply.json())
                                content = json.dumps(new).encode()
                            canned = (reply.status_code, content)
                        except requests.RequestException:
                            canned = (502, b"upstream failed")
                    status, content = canned
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def __enter__(self) -> RpcProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


# Garbage a node might answer: rewrites of a reply (`RpcProxy.rewrite`) ---------------


def swapped(first: int, second: int) -> Callable[[Any], Any]:
    """Two replies of a batch answer each other's calls (their ids kept)."""

    def swap(reply: Any) -> Any:
        if isinstance(reply, list) and len(reply) > max(first, second):
            a, b = reply[first], reply[second]
            a["result"], b["result"] = b["result"], a["result"]
        return reply

    return swap


def receipt_without_block_hash(reply: Any) -> Any:
    """The first receipt list of a batch loses its first receipt's `blockHash`."""
    for item in reply if isinstance(reply, list) else [reply]:
        result = item.get("result")
        if isinstance(result, list) and result and isinstance(result[0], dict):
            del result[0]["blockHash"]
            return reply
    return reply


def receipts_missing(reply: Any) -> Any:
    """The first receipt list of a batch comes back empty, as from a node that has the
    block but not yet its receipts."""
    for item in reply if isinstance(reply, list) else [reply]:
        result = item.get("result")
        if isinstance(result, list) and result and isinstance(result[0], dict):
            item["result"] = []
            return reply
    return reply


def wrong_parent(reply: Any) -> Any:
    for item in reply if isinstance(reply, list) else [reply]:
        result = item.get("result")
        if isinstance(result, dict) and "parentHash" in result:
            result["parentHash"] = "0x" + "de" * 32
            return reply
    return reply
