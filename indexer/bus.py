"""The event bus: appends to the Redis stream `chainpulse:events`.

Each entry comes from the database outbox (`indexer.outbox` moves them) and carries a
random delivery id; the append is a Lua script that records that id (for a day), so a
row appended twice (by its writer and a relay, or by two relays) is on the stream once.
The stream is capped near `maxlen` entries (approximate trimming).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import redis

from indexer.errors import RetryableError
from indexer.events import Pending
from indexer.urls import mask_url

log = logging.getLogger(__name__)

DELIVERED_TTL_S = 86_400

# Append each entry unless its delivery id is marked, in order, in one round trip.
# KEYS: the stream, then one delivery mark per entry; ARGV: maxlen, the marks' TTL, then
# type, event id and data per entry. Each mark is set only after its XADD succeeded: a
# script's writes before an error are not rolled back, so marking first would turn a
# failed XADD into an event never delivered.
_APPEND = """
local appended = 0
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    local j = 3 * i - 3
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',
               'type', ARGV[j], 'id', ARGV[j + 1], 'data', ARGV[j + 2])
    redis.call('SET', KEYS[i], '1', 'EX', ARGV[2])
    appended = appended + 1
  end
end
return appended
"""


class BusUnavailable(RetryableError):
    """Redis did not take the event; it stays in the outbox for the next relay."""


class EventBus:
    def __init__(self, client: redis.Redis, stream_key: str, maxlen: int, url: str = "") -> None:
        self.client = client
        self.stream_key = stream_key
        self.maxlen = maxlen
        self.url = url
        self._append = client.register_script(_APPEND)

    @classmethod
    def from_url(cls, url: str, stream_key: str, maxlen: int) -> EventBus:
        client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        return cls(client, stream_key, maxlen, url)

    def append(self, rows: Sequence[Pending]) -> int:
        """Append outbox rows in order, skipping delivery ids appended before; returns
        how many were appended. On BusUnavailable a prefix may have been appended."""
        if not rows:
            return 0
        keys = [self.stream_key]
        args: list[str | int] = [self.maxlen, DELIVERED_TTL_S]
        for row in rows:
            keys.append(f"{self.stream_key}:delivered:{row.delivery_id}")
            args += [row.entry.type, row.entry.id, row.entry.data]
        try:
            return int(self._append(keys=keys, args=args))
        except redis.RedisError as exc:
            raise BusUnavailable(f"Redis at {mask_url(self.url)} failed: {exc}") from exc

    def close(self) -> None:
        self.client.close()
