"""The cross-process message bus: python-socketio's RedisManager, plus

- a canary: every `canary_interval` seconds this process publishes a message to
  itself on the Socket.IO channel; if it is not heard back within three intervals the
  pub/sub listener has gone silent (python-socketio #1581) and `healthy` turns false
  (reported in /readyz and the metrics). The canary also keeps the subscription busy,
  so the listener's socket timeout (three intervals) only fires on a dead connection,
  and the manager then reconnects and subscribes again;
- `publish_private`: the publish happens first and raises `PubSubUnavailable` if Redis
  does not take it, so a private message is acknowledged only when Redis accepted it.
  Redis pub/sub is at most once: a recipient that is not connected at that moment (or
  whose process is cut off from Redis) does not get it later.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import socketio

from realtime.transport.rooms import IndexedRooms

log = logging.getLogger(__name__)

CANARY = "chainpulse-canary"


class PubSubUnavailable(Exception):
    """Redis did not accept the publish."""


class PubSub(IndexedRooms, socketio.RedisManager):
    def __init__(self, url: str, canary_interval: float = 5.0) -> None:
        self.canary_interval = canary_interval
        super().__init__(
            url,
            channel="chainpulse:socketio",
            redis_options={
                "socket_timeout": canary_interval * 3,
                "socket_connect_timeout": 5,
                "socket_keepalive": True,
            },
        )
        self.canary_heard: float | None = None  # time.monotonic()
        self.started = time.monotonic()

    def initialize(self) -> None:
        super().initialize()
        self.server.start_background_task(self._canary)

    def canary_age(self) -> float:
        since = self.canary_heard if self.canary_heard is not None else self.started
        return time.monotonic() - since

    @property
    def healthy(self) -> bool:
        return self.canary_heard is not None and self.canary_age() < 3 * self.canary_interval

    def _canary(self) -> None:
        while True:
            try:
                self._publish({"method": CANARY, "host_id": self.host_id})
            except Exception:  # noqa: BLE001 - the canary must outlive any Redis error
                log.exception("canary publish failed")
            self.server.sleep(self.canary_interval)

    def _redis_listen_with_retries(self) -> Any:
        # The library backs off up to 60 s between attempts; after a Redis restart that
        # leaves private messages undelivered long after Redis is back. Cap it at 5 s.
        delay = 0.5
        while True:
            try:
                self._redis_connect()
                self.pubsub.subscribe(self.channel)
                delay = 0.5
                yield from self.pubsub.listen()
            except Exception as exc:  # noqa: BLE001 - redis raises many types
                log.warning("pub/sub listener lost Redis (%s); retrying in %.1f s", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _listen(self) -> Any:
        marker = CANARY.encode()
        for message in super()._listen():
            if isinstance(message, bytes) and marker in message[:64]:
                try:
                    if json.loads(message).get("host_id") == self.host_id:
                        self.canary_heard = time.monotonic()
                except ValueError:
                    pass
                continue
            yield message

    def publish_private(self, event: str, data: Any, room: str, namespace: str) -> None:
        """Emit to `room` on every process; raises PubSubUnavailable if Redis refused it."""
        message = {
            "method": "emit",
            "event": event,
            "data": [data],
            "binary": False,
            "namespace": namespace,
            "room": room,
            "skip_sid": None,
            "callback": None,
            "host_id": self.host_id,
        }
        payload = json.dumps(message)
        for attempt in (1, 2):
            try:
                if not self.connected:  # type: ignore[has-type]
                    self._redis_connect()
                self.redis.publish(self.channel, payload)
                break
            except Exception as exc:  # noqa: BLE001 - redis raises many types
                self.connected = False
                if attempt == 2:
                    raise PubSubUnavailable(str(exc)) from None
        self._handle_emit(message)  # this process's own recipients
