"""A deployment-wide JSON-RPC call budget (`RPC_RATE_LIMIT`), shared through Redis.

Hosted nodes count every call of a batch against one quota per second for the whole
deployment, so the budget is one sliding one-second window in Redis, the way providers
count, that every process calling the node draws on: workers on every machine, the
follower's polls, the command line. One Lua script reserves a request's `n` calls at
the first moment they fit and says how long to wait until then; waiting is done here,
never inside Redis. (A token bucket or GCRA lets `rate + burst` calls into some
second, and its burst must admit a whole batch: with 50-call batches under a 200/s
quota it either overruns the quota or wastes a quarter of it.)

- A whole batch fits in the window from idle, as long as it is not larger than the
  limit (a larger one is counted as the limit: the provider would refuse it anyway).
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
import uuid

import redis

from indexer.errors import RateLimited

log = logging.getLogger(__name__)

KEY = "chainpulse:rpc:budget"  # hash: rate (calls/s now), hold (no call before, µs)
WINDOW_KEY = "chainpulse:rpc:window"  # sorted set: one entry per request, score = its time

# The same sliding one-second window a provider counts with: a request of n calls is
# placed at the first moment T (not before now, the last request placed, or a hold)
# at which the calls in (T - 1 s, T] plus n stay within the rate; requests are placed
# in time order, so only the window that ends at T needs checking.
# KEYS: the hash, the window; ARGV: limit, n, max_wait (s). Redis's own clock, in µs,
# so every host agrees; times are written with string.format (Lua 5.1 would write 14
# digits).
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit, n = tonumber(ARGV[1]), tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3]) * 1000000
local state = redis.call('HMGET', KEYS[1], 'rate', 'hold')
local rate = tonumber(state[1]) or limit
n = math.min(n, math.floor(rate))
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', string.format('%.0f', now - 1000000))
local entries = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
local at = math.max(now, tonumber(state[2]) or 0)
local count = #entries / 2
if count > 0 then at = math.max(at, tonumber(entries[count * 2])) end
local sum, first = 0, 1
for i = 1, count do
  if tonumber(entries[i * 2]) > at - 1000000 then
    sum = sum + tonumber(string.match(entries[i * 2 - 1], '^(%d+):'))
  elseif i == first then
    first = i + 1
  end
end
while sum + n > rate and first <= count do
  at = math.max(at, tonumber(entries[first * 2]) + 1000000 + 1)
  sum = sum - tonumber(string.match(entries[first * 2 - 1], '^(%d+):'))
  first = first + 1
end
local wait = at - now
if wait > max_wait then return -1 end
redis.call('ZADD', KEYS[2], string.format('%.0f', at), n .. ':' .. ARGV[4])
redis.call('PEXPIRE', KEYS[2], math.floor(wait / 1000) + 2000)
if rate < limit then
  redis.call('HSET', KEYS[1], 'rate', string.format('%.6f', math.min(rate + limit / 100, limit)))
end
return math.floor(wait)
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
    """At most `limit` calls in any second for the deployment; waits ≤ `max_wait` s."""

    def __init__(self, client: redis.Redis, limit: float, max_wait: float, key: str = KEY) -> None:
        self.client = client
        self.limit = limit
        self.max_wait = max_wait
        self.key = key
        self.window_key = WINDOW_KEY if key == KEY else f"{key}:window"
        self.waited = 0.0  # seconds this process spent waiting for the budget
        self._acquire = client.register_script(_ACQUIRE)
        self._slow_down = client.register_script(_SLOW_DOWN)
        self._warned = 0.0

    def acquire(self, calls: int) -> None:
        """Wait until `calls` calls may be sent; RateLimited when that would take
        longer than `max_wait` (nothing is reserved then)."""
        try:
            wait_us = self._acquire(
                keys=[self.key, self.window_key],
                args=[self.limit, calls, self.max_wait, uuid.uuid4().hex],
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
