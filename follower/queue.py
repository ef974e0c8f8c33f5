"""Fenced enqueueing: the follower's jobs reach the `blocks` queue only while it holds
the follower lock, checked atomically in Redis.

Celery builds each job message as usual (through a kombu publish batch, so the bytes
are exactly what its Redis transport would push); instead of pushing them, the batch
hands them to one Lua script that compares the follower lock's value with this
follower's, and only then pushes every message and records the follower's cursor
(the last height enqueued, with the hash it had). A deposed follower's push is
refused as a whole: `Deposed` is raised and nothing reaches the queue.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery
from kombu import Producer
from kombu.exceptions import OperationalError

from follower.fence import Deposed
from follower.lease import Lease
from indexer.errors import RetryableError
from workers.jobs import QUEUE, TASK, IndexBlocks

CURSOR_KEY = "chainpulse:follower:cursor"

_PUSH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local n = (#KEYS - 2)
for i = 1, n do redis.call('LPUSH', KEYS[i + 2], ARGV[i + 2]) end
if ARGV[2] ~= '' then redis.call('SET', KEYS[2], ARGV[2]) end
return 1
"""


@dataclass(frozen=True)
class Cursor:
    """The last height the follower enqueued and the node's hash for it then."""

    number: int
    hash: str

    def dump(self) -> str:
        return json.dumps({"number": self.number, "hash": self.hash})


def read_cursor(client: redis.Redis, key: str = CURSOR_KEY) -> Cursor | None:
    raw = client.get(key)
    if raw is None:
        return None
    data = json.loads(raw)
    return Cursor(int(data["number"]), str(data["hash"]))


class BrokerUnavailable(RetryableError):
    """Redis (the broker) did not take the jobs; nothing was enqueued."""


class _Batch:
    """A kombu publish batch that collects the Redis commands instead of running them."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.commands: list[tuple[str, tuple[Any, ...]]] = []

    def publish(self, message: Any, **kwargs: Any) -> Any:
        return self.channel.basic_publish(message, _publish_batch=self, **kwargs)

    def add(self, name: str, *args: Any) -> None:
        if name != "lpush":
            raise RuntimeError(f"fenced enqueue cannot replay Redis command {name!r}")
        self.commands.append((name, args))

    def flush(self) -> None:
        pass  # the caller pushes the collected commands through the fenced script

    def discard(self) -> None:
        self.commands.clear()

    def close(self) -> None:
        pass


class FencedQueue:
    """Pushes `IndexBlocks` jobs while `lease` holds the follower lock.

    `app` is the broker app of `workers.jobs.broker`; the jobs go by task name.
    """

    def __init__(
        self,
        app: Celery,
        client: redis.Redis,
        lease: Lease,
        cursor_key: str = CURSOR_KEY,
    ) -> None:
        """`cursor_key`: the chain's (`IndexerSettings.chain_key`)."""
        self.app = app
        self.cursor_key = cursor_key
        self.client = client
        self.lease = lease
        self._push = client.register_script(_PUSH)
        self._connection = app.connection_for_write()
        self._channel: Any = None

    def _producer(self) -> tuple[Producer, _Batch]:
        if self._channel is None:
            self._channel = self._connection.default_channel
            if not getattr(self._channel, "supports_batch_publish", False):
                raise RuntimeError("the broker transport cannot collect messages for fencing")
        batch = _Batch(self._channel)
        # Each enqueue gets a fresh collector; kombu asks the channel for it.
        self._channel.create_publish_batch = lambda max_size: batch
        return Producer(self._channel, auto_declare=False), batch

    def enqueue(self, jobs: Sequence[IndexBlocks], cursor: Cursor | None) -> None:
        """Push `jobs` (in order) and set the cursor, atomically, if still the holder.

        Raises Deposed (and pushes nothing) when the lock holds another token.
        """
        try:
            pushed = self._enqueue(jobs, cursor)
        except (OperationalError, redis.RedisError, OSError) as exc:
            self._reset()
            raise BrokerUnavailable(f"could not enqueue jobs: {exc}") from exc
        if not pushed:
            raise Deposed(f"follower token {self.lease.token} no longer holds the lock")

    def _enqueue(self, jobs: Sequence[IndexBlocks], cursor: Cursor | None) -> bool:
        producer, batch = self._producer()
        with producer.batch():
            for job in jobs:
                self.app.send_task(
                    TASK, kwargs=job.to_kwargs(), queue=QUEUE, producer=producer, retry=False
                )
        if len(batch.commands) != len(jobs):  # kombu changed how batches are collected
            raise RuntimeError("jobs were published around the fencing batch; check kombu")
        keys = [self.lease.lock_key, self.cursor_key] + [str(args[0]) for _, args in batch.commands]
        values = [self.lease.value, cursor.dump() if cursor else ""]
        values += [args[1] for _, args in batch.commands]
        return bool(self._push(keys=keys, args=values))

    def _reset(self) -> None:
        self._channel = None
        with contextlib.suppress(Exception):  # the old connection is broken anyway
            self._connection.release()
        self._connection = self.app.connection_for_write()

    def close(self) -> None:
        self._connection.release()
        self.app.close()
