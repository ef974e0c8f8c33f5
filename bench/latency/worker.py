"""The Celery app of `workers`, plus a `task_prerun` hook that records when each job
starts (Redis hash `bench:latency:started`, field = last height, value = epoch s).

Run as `celery -A bench.latency.worker worker -Q blocks` (bench/latency/run.py does).
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from celery.signals import task_prerun

from workers.app import app
from workers.jobs import IndexBlocks

__all__ = ["app"]

STARTED_KEY = "bench:latency:started"
_client: list[redis.Redis] = []


@task_prerun.connect
def _started(task: Any = None, args: Any = None, kwargs: Any = None, **_: Any) -> None:
    now = time.time()
    if not _client:
        _client.append(redis.Redis.from_url(os.environ["REDIS_URL"]))
    job = IndexBlocks.from_message(args, kwargs)
    _client[0].hsetnx(STARTED_KEY, str(job.last), repr(now))
