"""The node's head as the follower last saw it, shared through Redis.

The follower writes it on every round; readiness probes and metrics read it instead of
asking the node themselves (one node call per probe per web process adds up).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import redis

HEAD_KEY = "chainpulse:follower:head"


@dataclass(frozen=True)
class SeenHead:
    number: int
    seen_at: float  # seconds since the epoch


def record_head(client: redis.Redis, number: int, key: str = HEAD_KEY) -> None:
    client.set(key, json.dumps({"number": number, "seenAt": time.time()}))


def read_head(client: redis.Redis, key: str = HEAD_KEY) -> SeenHead | None:
    """The last head the follower saw (of the chain whose `key` it is), or None (no
    follower ran since Redis started)."""
    raw = client.get(key)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
        return SeenHead(int(value["number"]), float(value["seenAt"]))
    except (ValueError, KeyError, TypeError):
        return None
