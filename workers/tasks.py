"""Jobs on the `blocks` queue. Thin: validate, call the indexer, let Celery retry.

Retryable errors (node down, rate limited, database busy, a block that changed while
read) are retried with exponential backoff and full jitter, up to TASK_MAX_RETRIES;
fatal ones fail at once. A job that fails for good records its heights in `failures`,
which `chainpulse status` and `chainpulse backfill --wait` report.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task

from indexer.errors import ChainpulseError, FatalError, RetryableError
from indexer.events import BlockSource
from workers import context
from workers.app import app

log = logging.getLogger(__name__)
settings = app.conf.chainpulse_settings


class BlockJob(Task):
    autoretry_for = (RetryableError,)
    retry_backoff = 1
    retry_backoff_max = settings.retry_backoff_max
    retry_jitter = True
    max_retries = settings.task_max_retries
    acks_late = True
    reject_on_worker_lost = True

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        first, last = _bounds(args, kwargs)
        reason = f"{type(exc).__name__}: {exc}"
        log.error("blocks %s-%s failed for good: %s", first, last, reason)
        try:
            context.store(settings).record_failure(list(range(first, last + 1)), reason)
        except ChainpulseError as record_exc:
            log.error("could not record the failure: %s", record_exc)


def _bounds(args: Any, kwargs: Any) -> tuple[int, int]:
    values = list(args or ()) + [kwargs.get("first"), kwargs.get("last")]
    first = int(values[0])
    last = int(values[1]) if len(values) > 1 and values[1] is not None else first
    return first, last


@app.task(base=BlockJob, bind=True, name="chainpulse.index_blocks")
def index_blocks(
    self: Task, first: int, last: int, source: BlockSource = "backfill", force: bool = False
) -> int:
    """Index heights first..last (inclusive); returns how many blocks were written."""
    if not (isinstance(first, int) and isinstance(last, int)) or first < 0 or last < first:
        raise FatalError(f"bad job range {first!r}..{last!r}")
    if source not in ("head", "backfill"):
        raise FatalError(f"bad job source {source!r}")
    events = context.indexer(settings).index(first, last, source, force)
    return len(events)
