"""The Celery application behind `celery -A workers worker -Q blocks`.

`-A workers` finds this module-level `app`; it is configured when Celery first reads its
configuration (`on_configure`), from `WorkerSettings.from_env()` unless `configure`
was called before with settings of the caller's. Importing it connects to nothing and
reads no environment.

Delivery settings follow from "a worker killed mid-job loses nothing": jobs are
acknowledged after they finish (`acks_late`), re-queued when the worker process dies
(`reject_on_worker_lost`), prefetched one at a time, and redelivered by the Redis
transport after `VISIBILITY_TIMEOUT` seconds when a whole worker vanishes (plus at most
a quarter of it, or 10 s, until the next sweep). Retry countdowns stay below that
timeout (checked in `WorkerSettings`).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from celery import Celery

from indexer.errors import ConfigError
from workers import transport
from workers.config import WorkerSettings
from workers.jobs import QUEUE, TASK, broker_options

SETTINGS_KEY = "chainpulse_settings"

app = Celery("chainpulse", include=["workers.tasks", "workers.main"], set_as_current=False)


def configure(target: Celery, settings: WorkerSettings) -> None:
    """Point `target` at the `blocks` queue on `settings.redis_url`, with its delivery
    and retry settings; a worker process reads `settings` back with `settings_of`."""
    target.conf.update(
        broker_url=settings.redis_url,
        broker_transport=transport.NAME,  # kombu's Redis transport, mended
        task_default_queue=QUEUE,
        task_routes={TASK: {"queue": QUEUE}},
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        worker_prefetch_multiplier=1,
        worker_concurrency=settings.worker_concurrency or default_concurrency(),
        worker_send_task_events=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options=broker_options(settings.visibility_timeout),
        broker_connection_timeout=5,
        worker_hijack_root_logger=False,
        # Celery's default, said explicitly (it warns otherwise): a job running when the
        # broker connection drops runs to its end; its message comes back after
        # VISIBILITY_TIMEOUT and finds the blocks stored (jobs are idempotent).
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    target.conf[SETTINGS_KEY] = settings


def settings_of(target: Celery) -> WorkerSettings:
    settings = target.conf[SETTINGS_KEY]
    assert isinstance(settings, WorkerSettings)
    return settings


def default_concurrency() -> int:
    """Prefork processes when WORKER_CONCURRENCY is unset: one job more than cores keeps
    the node busy while a job decodes and writes."""
    return (os.cpu_count() or 1) + 1


@app.on_configure.connect
def _from_environment(sender: Celery, **_: Any) -> None:
    # `in` asks the pending configuration without finalising it (which would recurse)
    if SETTINGS_KEY not in sender.conf:
        try:
            settings = WorkerSettings.from_env()
        except ConfigError as exc:
            # Celery reads its configuration inside handlers that would swallow the
            # error and start on its defaults: stop here with the one line instead.
            print(f"chainpulse: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
        configure(sender, settings)
