"""How many of a worker's job slots one chain may hold at once.

One chain's frozen node holds every job of that chain for up to `ETH_RPC_TIMEOUT` per
attempt. Were all of a worker's prefork processes taken by such jobs (a backfill of
that chain, say), every other chain's blocks would wait behind them. So, with two
chains or more, each chain may run at most `CHAIN_JOB_SLOTS` jobs at once on one worker
(by default one less than its concurrency): a job over the bound goes back to the
queue and another chain's job takes the slot.

The count is kept in Redis, per worker (its Celery node name) and chain: a sorted set
of the running jobs' ids scored by when they expire (`VISIBILITY_TIMEOUT` later), so a
process killed mid-job frees its slot after that time at the latest.
"""

from __future__ import annotations

import contextlib
import time

import redis

KEY = "chainpulse:slots"  # :<worker node>:<chain id or "primary">

# KEYS: the set; ARGV: now (s), expiry (s), limit, job id. 1 when taken, 0 when full.
_TAKE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZSCORE', KEYS[1], ARGV[4]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('EXPIRE', KEYS[1], math.ceil(ARGV[2] - ARGV[1]) + 60)
return 1
"""


class ChainSlots:
    def __init__(self, client: redis.Redis, limit: int, hold: float) -> None:
        """`limit` jobs of one chain at once per worker; a slot lapses `hold` seconds
        after it was taken (a job running longer is redelivered anyway)."""
        self.client = client
        self.limit = limit
        self.hold = hold
        self._take = client.register_script(_TAKE)

    def take(self, worker: str, chain: int | None, job: str) -> bool:
        """Whether `job` may run now on `worker`; True when Redis cannot say (a worker
        without Redis has no jobs to run anyway)."""
        now = time.time()
        try:
            return bool(
                self._take(keys=[_key(worker, chain)], args=[now, now + self.hold, self.limit, job])
            )
        except redis.RedisError:
            return True

    def give_back(self, worker: str, chain: int | None, job: str) -> None:
        with contextlib.suppress(redis.RedisError):  # else it lapses on its own
            self.client.zrem(_key(worker, chain), job)


def _key(worker: str, chain: int | None) -> str:
    return f"{KEY}:{worker}:{chain if chain is not None else 'primary'}"
