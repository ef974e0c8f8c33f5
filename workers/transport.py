"""kombu's Redis transport, with one fault mended: a broker lost mid-job no longer ends
the worker.

When Redis goes away, Celery closes the consumer's channel and kombu tears its
connection down. Two things still reach for that channel afterwards: closing it puts the
jobs this worker holds (prefetched, or waiting for a retry countdown) back on the queue,
and a job that finishes later acknowledges its message on it. Either builds a Redis
client from the torn-down connection and fails with an AttributeError
(`'NoneType' object has no attribute 'hostname'` from `_connparams`), which Celery
treats as unrecoverable: the worker exits and indexing stops. No kombu release fixes
it. Here the restore is skipped and the acknowledgement fails as a connection error,
which Celery logs and survives.

Neither loses anything: each held job is still recorded in Redis's
unacknowledged set, and the Redis transport delivers it again after
`VISIBILITY_TIMEOUT`; if Redis lost everything (no persistence), the follower enqueues
the missing heights again. Jobs are idempotent.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from kombu.transport import redis as kombu_redis

log = logging.getLogger(__name__)


class QoS(kombu_redis.QoS):
    def restore_unacked(self, client: Any = None) -> Any:
        transport = self.channel.connection
        if client is None and (transport is None or transport.client is None):
            held = len(self._delivered)
            self._delivered.clear()
            if held:
                log.warning(
                    "the broker connection is gone; %d held job(s) will be delivered again "
                    "after the visibility timeout",
                    held,
                )
            return None
        return super().restore_unacked(client)


class MendedChannel(kombu_redis.Channel):
    QoS = QoS

    def _connparams(self, asynchronous: bool = False) -> Any:
        if self.connection is None or self.connection.client is None:
            raise redis.ConnectionError("the broker connection of this channel was closed")
        return super()._connparams(asynchronous)


class Transport(kombu_redis.Transport):
    Channel = MendedChannel  # the attribute kombu looks up


NAME = f"{__name__}:Transport"  # what `broker_transport` names
