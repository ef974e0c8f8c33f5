"""The event stream reader: one green thread per server process.

It reads `chainpulse:events` with XREAD from the last id it handled, starting at the
end of the stream when the process starts (a restarted server's clients catch up from
the database with `lastBlock`). When Redis goes away it reconnects (within a second of
Redis answering again) and continues after the last id, so connected clients miss
nothing that Redis still holds; what a Redis restart lost is read from the database
(the feed's `catch_up`). Entries are
delivered at least once by the producers; a repeated entry carries the same `id` field
and is dropped here (the last `dedup_size` ids are remembered).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import redis

from indexer.events import Event, from_fields
from realtime.metrics import Metrics

log = logging.getLogger(__name__)

BLOCK_MS = 1_000  # XREAD BLOCK; the socket timeout must stay above it (redis-py: 5 s)
BATCH = 500
RECONNECT_MAX_S = 1.0  # the longest wait between attempts to reach Redis again
# entries whose pushes are written together (see EngineServer.corked): a client gets a
# block and its prices in one TCP segment; more would delay a backlog's first push
CORK_ENTRIES = 32


class StreamReader:
    def __init__(
        self,
        redis_url: str,
        keys: Sequence[str],
        handle: Callable[[Event], None],
        tick: Callable[[], None],
        metrics: Metrics,
        sleep: Callable[[float], Any] = time.sleep,
        dedup_size: int = 10_000,
        corked: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
        catch_up: Callable[[], None] = lambda: None,
    ) -> None:
        """`corked()` wraps the handling of up to CORK_ENTRIES entries (the server's
        `EngineServer.corked`: their pushes written together); `catch_up()` is called
        when the stream is back after an outage. `keys`: every chain's stream, read
        together (one XREAD)."""
        self.keys = list(keys)
        self.corked = corked
        self.handle = handle
        self.tick = tick
        self.catch_up = catch_up
        self.metrics = metrics
        self.sleep = sleep
        self.dedup_size = dedup_size
        self.redis = redis.Redis.from_url(
            redis_url, socket_timeout=BLOCK_MS / 1000 + 5, socket_connect_timeout=5
        )
        self.last_ids: dict[str, str] | None = None  # where each stream was read up to
        self.connected = False
        self.running = True
        self._seen: OrderedDict[str, None] = OrderedDict()

    def run(self) -> None:
        backoff = 0.1
        while self.running:
            try:
                if self.last_ids is None:
                    self.last_ids = {key: self._end_of_stream(key) for key in self.keys}
                    self._set_connected(True)
                after: dict[Any, Any] = dict(self.last_ids)
                reply: Any = self.redis.xread(after, count=BATCH, block=BLOCK_MS)
                if not self.connected:
                    self._set_connected(True)
                    self.catch_up()
                backoff = 0.1
                for raw_key, entries in reply or []:
                    key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
                    for at in range(0, len(entries), CORK_ENTRIES):
                        with self.corked() if len(entries) > 1 else contextlib.nullcontext():
                            for entry_id, fields in entries[at : at + CORK_ENTRIES]:
                                last = (
                                    entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                                )
                                self.last_ids[key] = last
                                self._entry(last, fields)
                                self.sleep(0)  # let inbound messages and writers run
            except redis.RedisError as exc:
                if self.connected:
                    log.warning(
                        "event stream unreachable (%s); retrying from %s", exc, self.last_ids
                    )
                self._set_connected(False)
                self.sleep(backoff)
                backoff = min(backoff * 2, RECONNECT_MAX_S)
            except Exception:
                log.exception("event stream reader error")
                self.sleep(backoff)
            self.tick()

    def _end_of_stream(self, key: str) -> str:
        last = self.redis.xrevrange(key, count=1)
        if not last:
            return "0-0"
        entry_id = last[0][0]
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    def _set_connected(self, value: bool) -> None:
        self.connected = value
        self.metrics.stream_connected.set(1 if value else 0)

    def _entry(self, entry_id: str, fields: dict[Any, Any]) -> None:
        event_id = fields.get(b"id") or fields.get("id")
        key = event_id.decode() if isinstance(event_id, bytes) else str(event_id or entry_id)
        if key in self._seen:
            self.metrics.stream_entries.labels("duplicate").inc()
            return
        self._seen[key] = None
        if len(self._seen) > self.dedup_size:
            self._seen.popitem(last=False)
        try:
            event = from_fields(fields)
        except (ValueError, KeyError, TypeError) as exc:
            self.metrics.stream_entries.labels("malformed").inc()
            log.warning("dropping malformed stream entry %s: %s", entry_id, exc)
            return
        self.metrics.stream_entries.labels("handled").inc()
        with contextlib.suppress(ValueError):
            self.metrics.stream_lag.set(max(0.0, time.time() - int(entry_id.split("-")[0]) / 1000))
        self.handle(event)
