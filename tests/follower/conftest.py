"""The follower tests' stack: anvil, Redis, a database at the current schema, a real
Celery worker on the `blocks` queue, and followers in threads (`stack.follower()`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chainpulse.devnet import RedisServer
from tests.harness.stack import FOLLOWING, Stack
from tests.harness.stack import stack as make_stack


@pytest.fixture
def stack(database_url: str, tmp_path: Path, redis_server: RedisServer) -> Iterator[Stack]:
    with make_stack(database_url, tmp_path, redis_server, **FOLLOWING) as s:
        s.start_worker(wait=False, loglevel="info")
        yield s
