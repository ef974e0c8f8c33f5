"""The follower lease: one active follower per deployment, with a fencing token.

A Redis key holds `<token>:<owner>` with an expiry (`FOLLOWER_LOCK_TTL`). Taking it
increments a counter, so every holder gets a larger token than the one before. An
expiring lock alone cannot stop a holder that stalled (paused, swapped out, cut off)
past its expiry and then resumes; so the token is checked atomically where the
follower acts: a Lua script that pushes jobs only while the lock still holds this
token (`follower.queue`), and the reorg repair's database transaction, which refuses
a token older than one it has seen (`follower.fence.claim_fence`).

If Redis loses its data (no persistence), the counter restarts; `acquire` raises it
to the database's newest token first so that tokens keep increasing (the follower
records every token it takes in the database before it acts with it).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from dataclasses import dataclass

import redis

log = logging.getLogger(__name__)

LOCK_KEY = "chainpulse:follower:lock"
TOKEN_KEY = "chainpulse:follower:token"

_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if current < tonumber(ARGV[3]) then redis.call('SET', KEYS[2], ARGV[3]) end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token .. ':' .. ARGV[1], 'PX', ARGV[2])
return token
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Lease:
    """The follower lock. `token` is set while held; `valid()` is this process's view.

    A renewal thread extends the expiry every third of the TTL, so a follower busy
    with a slow node call keeps its lease; a process that stops (kill -9, SIGSTOP)
    stops renewing, and a standby acquires the lock once it expires.
    """

    def __init__(
        self,
        client: redis.Redis,
        ttl: float,
        owner: str | None = None,
        lock_key: str = LOCK_KEY,
        token_key: str = TOKEN_KEY,
    ) -> None:
        """`lock_key` and `token_key`: the chain's (`IndexerSettings.chain_key`)."""
        self.client = client
        self.lock_key = lock_key
        self.token_key = token_key
        self.ttl = ttl
        self.owner = owner or uuid.uuid4().hex[:12]
        self.token: int | None = None
        self._valid_until = 0.0
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def value(self) -> str:
        """The lock's value while this process holds it (what fenced scripts compare)."""
        return f"{self.token}:{self.owner}"

    def acquire(self, floor: int = 0) -> bool:
        """Take the lock if it is free; tokens stay above `floor`. True when taken."""
        started = time.monotonic()
        token = self._acquire(
            keys=[self.lock_key, self.token_key], args=[self.owner, int(self.ttl * 1000), floor]
        )
        if token is None:
            return False
        self.token = int(token)
        self._valid_until = started + self.ttl
        self._stop.clear()
        self._thread = threading.Thread(target=self._keep, name="follower-lease", daemon=True)
        self._thread.start()
        return True

    def valid(self) -> bool:
        """True while the lock is held as far as this process knows (a safety margin
        before expiry; the fenced scripts are the authority)."""
        return self.token is not None and time.monotonic() < self._valid_until - 0.1 * self.ttl

    def renew(self) -> bool:
        started = time.monotonic()
        if self.token is None:
            return False
        try:
            renewed = self._renew(keys=[self.lock_key], args=[self.value, int(self.ttl * 1000)])
        except redis.RedisError as exc:
            log.warning("could not renew the follower lock: %s", exc)
            return self.valid()
        if not renewed:
            log.error("the follower lock (token %s) moved on; standing down", self.token)
            self.token = None
            return False
        self._valid_until = started + self.ttl
        return True

    def release(self) -> None:
        self._stop.set()
        if self.token is not None:
            with contextlib.suppress(redis.RedisError):  # else it expires on its own
                self._release(keys=[self.lock_key], args=[self.value])
        self.token = None

    def _keep(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            if not self.renew() and self.token is None:
                return


@dataclass(frozen=True)
class Holder:
    token: int
    owner: str
    ttl: float  # seconds left before the lock expires


def holder(client: redis.Redis, lock_key: str = LOCK_KEY) -> Holder | None:
    """Who holds the follower lock (of the chain whose `lock_key` it is), or None."""
    raw = client.get(lock_key)
    if raw is None:
        return None
    token, _, owner = (raw.decode() if isinstance(raw, bytes) else str(raw)).partition(":")
    ttl_ms = client.pttl(lock_key)
    return Holder(int(token), owner, max(int(ttl_ms), 0) / 1000)
