"""A hosted provider on loopback: a proxy in front of anvil that behaves like one.

- every request waits `rtt` seconds first (the round trip to a provider far away);
- every call of a batch counts against `quota` calls per second, over a sliding
  one-second window; a request whose calls would pass it is answered, whole, with
  HTTP 429 and `Retry-After: 1`, and counts nothing;
- a batch of more than `max_batch` calls is refused (HTTP 413).

It counts what it forwarded and what it refused, for the benchmark's report.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests


@dataclass
class Counts:
    calls: int = 0  # forwarded
    requests: int = 0
    refused_calls: int = 0  # in requests answered 429
    refused_requests: int = 0
    too_large: int = 0
    busiest: int = 0  # the most calls forwarded within one second (sliding), wall clock
    first: float = 0.0  # monotonic time of the first and last forwarded request
    last: float = 0.0

    def calls_per_s(self) -> float:
        span = self.last - self.first
        return self.calls / span if span > 0 else 0.0


class Provider:
    def __init__(
        self, upstream: str, rtt: float = 0.040, quota: int = 200, max_batch: int = 100
    ) -> None:
        self.upstream = upstream
        self.rtt = rtt
        self.quota = quota
        self.max_batch = max_batch
        self.counts = Counts()
        self._window: collections.deque[tuple[float, int]] = collections.deque()
        self._in_window = 0
        self._lock = threading.Lock()
        self._local = threading.local()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._server.request_queue_size = 128
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def snapshot(self) -> Counts:
        """The counts until now (calls per second over first call .. now)."""
        with self._lock:
            return dataclasses.replace(self.counts, last=time.monotonic())

    def reset(self) -> None:
        with self._lock:
            self.counts = Counts()
            self._window.clear()
            self._in_window = 0

    def _admit(self, calls: int) -> bool:
        now = time.monotonic()
        with self._lock:
            while self._window and self._window[0][0] <= now - 1.0:
                self._in_window -= self._window.popleft()[1]
            if self._in_window + calls > self.quota:
                self.counts.refused_calls += calls
                self.counts.refused_requests += 1
                return False
            self._window.append((now, calls))
            self._in_window += calls
            self.counts.busiest = max(self.counts.busiest, self._in_window)
            self.counts.calls += calls
            self.counts.requests += 1
            if not self.counts.first:
                self.counts.first = now
            self.counts.last = now
            return True

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as clients of providers use

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    parsed = json.loads(body)
                except ValueError:
                    parsed = None
                calls = len(parsed) if isinstance(parsed, list) else 1
                time.sleep(provider.rtt)
                if calls > provider.max_batch:
                    with provider._lock:
                        provider.counts.too_large += 1
                    self._send(413, b'{"error":"batch too large"}')
                elif not provider._admit(calls):
                    self._send(429, b"Too Many Requests", {"Retry-After": "1"})
                else:
                    reply = provider._session().post(
                        provider.upstream,
                        data=body,
                        headers={"Content-Type": "application/json"},
                        timeout=30,
                    )
                    self._send(reply.status_code, reply.content)

            def _send(self, status: int, content: bytes, extra: Any = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                for key, value in (extra or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def __enter__(self) -> Provider:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
