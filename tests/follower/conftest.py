"""The follower tests' stack: anvil, Redis, a database at the current schema, a real
Celery worker on the `blocks` queue, and followers in threads (`stack.follower()`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chainpulse.devnet import RedisServer
from tests.harness.stack import Stack
from tests.harness.stack import stack as make_stack

SETTINGS = {
    "ETH_RPC_TIMEOUT": "3",
    "POLL_INTERVAL": "0.1",
    "FOLLOWER_LOCK_TTL": "2",
    "VISIBILITY_TIMEOUT": "10",
    "RETRY_BACKOFF_MAX": "2",
    "TASK_MAX_RETRIES": "20",
}


@pytest.fixture
def stack(database_url: str, tmp_path: Path, redis_server: RedisServer) -> Iterator[Stack]:
    with make_stack(database_url, tmp_path, redis_server, **SETTINGS) as s:
        s.start_worker(wait=False, loglevel="info")
        yield s
