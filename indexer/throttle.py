"""A deployment-wide JSON-RPC call budget (`RPC_RATE_LIMIT`), shared through Redis.

Hosted nodes count every call of a batch against one per-second quota for the whole
deployment, so the budget is one generic cell rate algorithm (GCRA) state in Redis that
every process calling the node draws on: workers on every machine, the follower's
polls, the command line. One Lua script reserves `n` calls at once and says how long to
wait before sending them; waiting is done here, never inside Redis.

- The burst admits the largest batch a job sends (`burst` calls at once from idle).
- A caller never waits longer than `max_wait` seconds: past it nothing is reserved and
  `RateLimited` is raised (a job retries; Celery's backoff spreads it out). Workers pass
  half of `VISIBILITY_TIMEOUT`: a job held unacknowledged longer than that may be
  delivered again while its worker lives.
- The node's own word wins: on HTTP 429 or a rate-limit error, `slow_down` halves the
  shared rate (not below a twentieth of the limit) and, with a `Retry-After`, holds every
  caller until then; each granted batch then adds back a hundredth of the limit
  (additive increase, multiplicative decrease).
- With Redis unreachable, calls go through (with a warning every 10 s at most): the rest
  of the system is failing then anyway, and indexing must not stop for the budget.
"""

from __future__ import annotations

import logging
import time

import redis

from indexer.errors import RateLimited

log = logging.getLogger(__name__)

KEY = "chainpulse:rpc:budget"

# KEYS[1]: hash {tat, rate, hold}; ARGV: limit (calls/s), burst (calls), n, max_wait (s).
# Times are Redis's own clock, in microseconds, so every host agrees; they are stored
# with string.format, since Lua 5.1 would write them with 14 digits.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit, burst, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local max_wait = tonumber(ARGV[4]) * 1000000
local state = redis.call('HMGET', KEYS[1], 'tat', 'rate', 'hold')
local rate = tonumber(state[2]) or limit
local hold = tonumber(state[3]) or 0
local interval = 1000000 / rate
local new_tat = math.max(tonumber(state[1]) or now, now, hold) + n * interval
local allow_at = math.max(new_tat - burst * interval, hold)
local wait = math.max(allow_at - now, 0)
if wait > max_wait then return {-1, tostring(rate)} end
rate = math.min(rate + limit / 100, limit)
redis.call('HSET', KEYS[1], 'tat', string.format('%.0f', new_tat),
  'rate', string.format('%.6f', rate))
redis.call('EXPIRE', KEYS[1], 3600)
return {math.floor(wait), tostring(rate)}
"""

# ARGV: limit, hold (seconds to hold every caller, 0 for none)
_SLOW_DOWN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit, hold = tonumber(ARGV[1]), tonumber(ARGV[2]) * 1000000
local rate = tonumber(redis.call('HGET', KEYS[1], 'rate')) or limit
rate = math.max(rate / 2, limit / 20)
redis.call('HSET', KEYS[1], 'rate', string.format('%.6f', rate))
if hold > 0 then
  local until_ = now + hold
  local current = tonumber(redis.call('HGET', KEYS[1], 'hold')) or 0
  if until_ > current then
    redis.call('HSET', KEYS[1], 'hold', string.format('%.0f', until_))
  end
end
redis.call('EXPIRE', KEYS[1], 3600)
return tostring(rate)
"""


class CallBudget:
    """`limit` calls per second for the deployment, `burst` at once, waits ≤ `max_wait`."""

    def __init__(
        self, client: redis.Redis, limit: float, burst: int, max_wait: float, key: str = KEY
    ) -> None:
        self.client = client
        self.limit = limit
        self.burst = burst
        self.max_wait = max_wait
        self.key = key
        self.waited = 0.0  # seconds this process spent waiting for the budget
        self._acquire = client.register_script(_ACQUIRE)
        self._slow_down = client.register_script(_SLOW_DOWN)
        self._warned = 0.0

    def acquire(self, calls: int) -> None:
        """Wait until `calls` calls may be sent; RateLimited when that would take
        longer than `max_wait` (nothing is reserved then)."""
        try:
            wait_us, _rate = self._acquire(
                keys=[self.key], args=[self.limit, self.burst, calls, self.max_wait]
            )
        except redis.RedisError as exc:
            self._warn(f"the JSON-RPC budget is unreachable, calling without it: {exc}")
            return
        if int(wait_us) < 0:
            raise RateLimited(
                f"the JSON-RPC budget (RPC_RATE_LIMIT={self.limit:g}/s) has no room for "
                f"{calls} calls within {self.max_wait:g} s"
            )
        if int(wait_us):
            seconds = int(wait_us) / 1_000_000
            self.waited += seconds
            time.sleep(seconds)

    def slow_down(self, retry_after: float | None) -> None:
        """The node refused for its rate: halve the shared rate, hold for `retry_after`."""
        try:
            rate = self._slow_down(keys=[self.key], args=[self.limit, retry_after or 0])
        except redis.RedisError as exc:
            self._warn(f"could not slow the JSON-RPC budget down: {exc}")
            return
        log.warning(
            "the node is rate limiting: %s calls/s for the deployment%s",
            float(rate),
            f", holding {retry_after:g} s" if retry_after else "",
        )

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._warned >= 10:
            self._warned = now
            log.warning(message)


def retry_after(value: str | None) -> float | None:
    """A `Retry-After` header's seconds (the delay form; a date is ignored), at most 60."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return min(max(seconds, 0.0), 60.0) if seconds == seconds else None
