"""A deployment-wide JSON-RPC call budget (`RPC_RATE_LIMIT`), shared through Redis.

Hosted nodes count every call of a batch against one quota per second for the whole
deployment, so the budget lives in Redis and every process calling the node draws on
it: workers on every machine, the follower's polls, the command line. `RPC_RATE_LIMIT`
is the provider's quota; no second, as the provider counts it, may hold more calls.

- Calls are paced by one generic cell rate algorithm (one Lua script, Redis's clock):
  at `PACE` of the limit, in pieces of at most `BURST` of it. A request of `n` calls
  is granted its first piece at the first moment the piece conforms, and the caller
  sends the rest as further pieces (`indexer.rpc.Node` splits its batches so).
  Any interval of `w` seconds then holds at most `BURST * limit + PACE * limit * w`
  calls: a provider's one-second window holds at most the limit even when requests
  reach it up to 20 ms apart from the moments they were granted (scheduling on a busy
  host, the network). Whole batches would not fit: a 50-call batch under a 200/s limit
  needs a burst a quarter of the limit, and a sliding window counted here fills the
  provider's window to the call, so a request that arrives a little early is refused.
- A caller never waits longer than `max_wait` seconds for a piece: past it nothing is
  reserved and `RateLimited` is raised (a job retries; Celery's backoff spreads it out).
  Workers pass half of `VISIBILITY_TIMEOUT`: a job held unacknowledged longer than that
  may be delivered again while its worker lives.
- The node's own word wins: on HTTP 429 or a rate-limit error, `slow_down` halves the
  shared rate (not below a twentieth of the limit) and, with a `Retry-After`, holds every
  caller until then; the rate then climbs back by `RECOVER_PER_S` of the limit each
  second (additive increase, multiplicative decrease).
- With Redis unreachable, calls go through (with a warning every 10 s at most): the rest
  of the system is failing then anyway, and indexing must not stop for the budget.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import redis

from indexer.errors import RateLimited

log = logging.getLogger(__name__)

KEY = "chainpulse:rpc:budget"  # hash: tat, rate, seen, hold (times in µs of Redis's clock)

PACE = 0.95  # calls per second, as a share of the limit
BURST = 0.03  # the largest piece, as a share of the limit (at least one call)
FLOOR = 0.05  # the lowest rate slow_down goes to, as a share of the limit
RECOVER_PER_S = 0.05  # what the rate regains each second, as a share of the limit

# GCRA: `tat` is the theoretical arrival time, the moment the bucket is full again. A
# piece of k calls conforms at `at` once tat - at <= (burst - k) / rate; granting it
# moves tat to max(tat, at) + k / rate. The rate climbs back with time since `seen`.
# KEYS: the hash; ARGV: limit, n, max_wait (s), PACE, BURST, RECOVER_PER_S.
# Returns {calls granted, µs to wait, the grant's moment in µs}, or {0, -1, 0} when the
# wait would pass max_wait.
# Times are written with string.format (Lua 5.1 would write 14 digits).
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit, n = tonumber(ARGV[1]), tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3]) * 1000000
local full = limit * tonumber(ARGV[4])
local burst = math.max(1, math.floor(limit * tonumber(ARGV[5])))
local s = redis.call('HMGET', KEYS[1], 'tat', 'rate', 'seen', 'hold')
local rate = tonumber(s[2]) or full
if rate < full then
  local since = now - (tonumber(s[3]) or now)
  rate = math.min(full, rate + limit * tonumber(ARGV[6]) * since / 1000000)
end
local k = math.min(n, burst)
local interval = 1000000 / rate
local tat = tonumber(s[1]) or now
local at = math.max(now, tonumber(s[4]) or 0, tat - (burst - k) * interval)
local wait = at - now
if wait > max_wait then return {0, -1, 0} end
tat = math.max(tat, at) + k * interval
redis.call('HSET', KEYS[1], 'tat', string.format('%.0f', tat),
  'rate', string.format('%.6f', rate), 'seen', string.format('%.0f', now))
redis.call('PEXPIRE', KEYS[1], math.floor((tat - now) / 1000) + 60000)
return {k, math.floor(wait), string.format('%.0f', at)}
"""

# ARGV: limit, hold (seconds to hold every caller, 0 for none), PACE, FLOOR
_SLOW_DOWN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit, hold = tonumber(ARGV[1]), tonumber(ARGV[2]) * 1000000
local rate = tonumber(redis.call('HGET', KEYS[1], 'rate')) or limit * tonumber(ARGV[3])
rate = math.max(rate / 2, limit * tonumber(ARGV[4]))
redis.call('HSET', KEYS[1], 'rate', string.format('%.6f', rate),
  'seen', string.format('%.0f', now))
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


@dataclass(frozen=True)
class Grant:
    """A piece of the budget: `calls` calls that may be sent `wait` seconds from now,
    at the moment `at` of Redis's clock (µs), as the shared schedule holds it."""

    calls: int
    wait: float
    at: int


class CallBudget:
    """At most `limit` calls in any second for the deployment, granted piece by piece;
    a caller waits at most `max_wait` seconds for a piece."""

    def __init__(self, client: redis.Redis, limit: float, max_wait: float, key: str = KEY) -> None:
        self.client = client
        self.limit = limit
        self.max_wait = max_wait
        self.key = key
        self.waited = 0.0  # seconds this process spent waiting for the budget
        self._acquire = client.register_script(_ACQUIRE)
        self._slow_down = client.register_script(_SLOW_DOWN)
        self._warned = 0.0

    @property
    def burst(self) -> int:
        """The most calls one request may carry."""
        return max(1, int(self.limit * BURST))

    def acquire(self, calls: int) -> int:
        """Wait until the first piece of `calls` calls may be sent; returns its size
        (all of `calls` when the budget is unreachable). RateLimited when the wait would
        pass `max_wait` (nothing is reserved then)."""
        grant = self.reserve(calls)
        if grant.wait:
            self.waited += grant.wait
            time.sleep(grant.wait)
        return grant.calls

    def reserve(self, calls: int) -> Grant:
        """Reserve the first piece of `calls` calls without waiting for it: what
        `acquire` waits for. With the budget unreachable, every call at once."""
        try:
            granted, wait_us, at = self._acquire(
                keys=[self.key], args=[self.limit, calls, self.max_wait, PACE, BURST, RECOVER_PER_S]
            )
        except redis.RedisError as exc:
            self._warn(f"the JSON-RPC budget is unreachable, calling without it: {exc}")
            return Grant(calls, 0.0, 0)
        if int(wait_us) < 0:
            raise RateLimited(
                f"the JSON-RPC budget (RPC_RATE_LIMIT={self.limit:g}/s) has no room for "
                f"{min(calls, self.burst)} calls within {self.max_wait:g} s"
            )
        return Grant(int(granted), int(wait_us) / 1_000_000, int(at))

    def slow_down(self, retry_after: float | None) -> None:
        """The node refused for its rate: halve the shared rate, hold for `retry_after`."""
        try:
            rate = self._slow_down(
                keys=[self.key], args=[self.limit, retry_after or 0, PACE, FLOOR]
            )
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
