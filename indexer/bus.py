"""The event bus: the Redis stream `chainpulse:events`, fed from the database outbox.

Delivery is at least once: an event is written to the outbox in the same transaction
as the change it describes, appended to the stream afterwards, and only then deleted
from the outbox. If Redis or the process fails in between, the next `relay` appends it.
Each outbox row carries a random delivery id, and the append is a Lua script that
records it (for a day), so a row relayed twice by two processes is appended once.
The stream is capped near `stream_maxlen` entries (approximate trimming).
"""

from __future__ import annotations

import logging
from typing import Any

import redis

from indexer.config import mask_url
from indexer.errors import RetryableError
from indexer.events import Event, to_fields
from indexer.store import Store

log = logging.getLogger(__name__)

DELIVERED_TTL_S = 86_400

# Mark the delivery only after XADD succeeded: a script's writes before an error are not
# rolled back, so marking first would turn a failed XADD into an event never delivered.
_APPEND = """
if redis.call('EXISTS', KEYS[2]) == 1 then
  return false
end
local entry = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], '*',
                         'type', ARGV[1], 'id', ARGV[2], 'data', ARGV[3])
redis.call('SET', KEYS[2], '1', 'EX', ARGV[5])
return entry
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

    def append(self, type_: str, event_id: str, data: str, delivery_id: str) -> bool:
        """Append one entry unless this delivery id was appended before; True if appended."""
        try:
            result = self._append(
                keys=[self.stream_key, f"{self.stream_key}:delivered:{delivery_id}"],
                args=[type_, event_id, data, self.maxlen, DELIVERED_TTL_S],
            )
        except redis.RedisError as exc:
            raise BusUnavailable(f"Redis at {mask_url(self.url)} failed: {exc}") from exc
        return result is not None

    def publish(self, event: Event) -> None:
        """Append an event that has no database change behind it (tests, manual prices)."""
        fields = to_fields(event)
        try:
            self.client.xadd(self.stream_key, fields, maxlen=self.maxlen, approximate=True)  # type: ignore[arg-type]
        except redis.RedisError as exc:
            raise BusUnavailable(f"Redis at {mask_url(self.url)} failed: {exc}") from exc

    def relay(self, store: Store, batch: int = 500) -> int:
        """Append pending outbox rows in commit order, then delete them; returns how many.

        Stops at the first failure (keeping order); the rest stay for the next relay.
        """
        total = 0
        while True:
            rows: list[dict[str, Any]] = store.pending_outbox(batch)
            if not rows:
                return total
            done: list[int] = []
            try:
                for row in rows:
                    self.append(row["type"], row["event_id"], row["data"], row["delivery_id"])
                    done.append(row["id"])
            finally:
                store.delete_outbox(done)
            total += len(done)
            if len(rows) < batch:
                return total
