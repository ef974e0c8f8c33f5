"""Who may open a connection: a cap on open Engine.IO sessions per client address and a
connect rate per address, both off by default (behind a load balancer, and in the
benchmarks, every client shares one address).

The address is the peer's (`REMOTE_ADDR`), or, with `TRUSTED_PROXY_HEADER` set, the
last entry of that header: the one the trusted proxy in front of us added (entries
before it are the client's word, and can be forged).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from realtime.ratelimit import SlidingWindowLimiter

TOO_MANY_CONNECTIONS = "Too many connections from this address"
CONNECTING_TOO_FAST = "Too many connection attempts from this address"


def client_address(environ: dict[str, Any], header: str | None) -> str:
    """The address a request is counted against (see the module's docstring)."""
    if header:
        forwarded = environ.get("HTTP_" + header.upper().replace("-", "_"), "")
        last = forwarded.rsplit(",", 1)[-1].strip()
        if last:
            return last
    return str(environ.get("REMOTE_ADDR", "?"))


class Admission:
    """Counts open sessions per address; `admit` says why a new one is refused, if so.

    `max_per_address` 0 and `connect_rate` 0 turn each check off.
    """

    def __init__(
        self,
        max_per_address: int,
        connect_rate: float,  # connects per second per address
        header: str | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_per_address = max_per_address
        self.header = header
        self.open: dict[str, int] = {}
        self._session_address: dict[str, str] = {}
        self._rate = (
            SlidingWindowLimiter(max(1, round(connect_rate * 10)), 10.0, clock)
            if connect_rate > 0
            else None
        )
        self._clock = clock
        self._last_prune = clock()

    def admit(self, session: str, environ: dict[str, Any]) -> str | None:
        """Count `session` against its address and return None, or return the refusal."""
        address = client_address(environ, self.header)
        if self.max_per_address and self.open.get(address, 0) >= self.max_per_address:
            return TOO_MANY_CONNECTIONS
        if self._rate is not None:
            now = self._clock()
            if now - self._last_prune > self._rate.window:
                self._rate.prune()
                self._last_prune = now
            if not self._rate.allow(address):
                return CONNECTING_TOO_FAST
        self.open[address] = self.open.get(address, 0) + 1
        self._session_address[session] = address
        return None

    def leave(self, session: str) -> None:
        address = self._session_address.pop(session, None)
        if address is None:
            return
        left = self.open.get(address, 1) - 1
        if left > 0:
            self.open[address] = left
        else:
            self.open.pop(address, None)

    def __len__(self) -> int:
        return len(self._session_address)
