"""The Celery application: the `blocks` queue on the Redis broker.

Delivery settings follow from "a worker killed mid-job loses nothing": jobs are
acknowledged after they finish (`acks_late`), re-queued when the worker process dies
(`reject_on_worker_lost`), prefetched one at a time, and redelivered by the Redis
transport after `VISIBILITY_TIMEOUT` seconds when a whole worker vanishes (plus at most
a quarter of it, or 10 s, until the next sweep). Retry
countdowns stay below that timeout (checked in Settings).
"""

from __future__ import annotations

import os

from celery import Celery

from indexer.config import Settings

QUEUE = "blocks"


def make_app(settings: Settings) -> Celery:
    app = Celery("chainpulse", broker=settings.redis_url, include=["workers.tasks"])
    app.conf.update(
        task_default_queue=QUEUE,
        task_routes={"chainpulse.*": {"queue": QUEUE}},
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        worker_prefetch_multiplier=1,
        worker_concurrency=settings.worker_concurrency or default_concurrency(),
        worker_send_task_events=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            # kombu looks for jobs of vanished workers every interval x throttle seconds,
            # 10 x 10 by default: far longer than the timeout. Look often, and every time.
            "unacked_restore_interval": restore_interval(settings.visibility_timeout),
            "unacked_restore_throttle": 1,
            # The sweep holds a Redis mutex that expires after 300 s by default: a worker
            # killed while sweeping would stop every restore for five minutes.
            "unacked_mutex_expire": max(5, settings.visibility_timeout // 2),
        },
        broker_connection_timeout=5,
        worker_hijack_root_logger=False,
    )
    app.conf.chainpulse_settings = settings
    return app


def default_concurrency() -> int:
    """Prefork processes when WORKER_CONCURRENCY is unset: one job more than cores keeps
    the node busy while a job decodes and writes."""
    return (os.cpu_count() or 1) + 1


def restore_interval(visibility_timeout: int) -> int:
    """Seconds between sweeps for unacknowledged jobs: a quarter of the timeout, 1 to 10."""
    return max(1, min(10, visibility_timeout // 4))


app = make_app(Settings.from_env())
