"""A sliding-window rate limiter keyed by connection (or client address).

At most `limit` accepted calls in any `window` seconds. Each key holds the times of its
last `limit` accepted calls in a bounded deque: a call is accepted when fewer than
`limit` are recorded or the oldest of them left the window. Refused calls are not
recorded (as in the reference), so a client over the limit recovers as soon as its
oldest call ages out. State for a key exists only after its first call and is freed by
`forget` (on disconnect) or `prune`; the reference's limiter never frees it.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Hashable


class SlidingWindowLimiter:
    def __init__(
        self, limit: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("limit must be at least 1 and window positive")
        self.limit = limit
        self.window = window  # seconds
        self._clock = clock
        self._calls: dict[Hashable, deque[float]] = {}

    def allow(self, key: Hashable) -> bool:
        """Record a call for `key` and say whether it is within the limit."""
        now = self._clock()
        calls = self._calls.get(key)
        if calls is None:
            calls = self._calls[key] = deque(maxlen=self.limit)
        elif len(calls) == self.limit and now - calls[0] < self.window:
            return False
        calls.append(now)
        return True

    def forget(self, key: Hashable) -> None:
        self._calls.pop(key, None)

    def prune(self) -> int:
        """Free the keys whose newest call left the window; returns how many."""
        now = self._clock()
        stale = [
            k for k, calls in self._calls.items() if not calls or now - calls[-1] >= self.window
        ]
        for key in stale:
            del self._calls[key]
        return len(stale)

    def __len__(self) -> int:
        return len(self._calls)


class LogThrottle:
    """At most one log line per key every `interval` seconds; the next line says how many
    were held back. A flood of bad input then costs a counter, not a line each."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval = interval  # seconds
        self._clock = clock
        self._last: dict[Hashable, float] = {}
        self._held: dict[Hashable, int] = {}

    def info(self, key: Hashable, message: str) -> bool:
        """Log `message` unless `key` was logged within the interval; True if logged."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        held = self._held.pop(key, 0)
        self._last[key] = now
        self.logger.info("%s%s", message, f" ({held} more held back)" if held else "")
        return True
