"""The job on the `blocks` queue. Thin: decode the job, run it, let Celery retry.

Retryable errors (node down, rate limited, database busy, a block that changed while
read) are retried with exponential backoff and full jitter, up to TASK_MAX_RETRIES;
fatal ones fail at once. A job that fails for good records its heights in `failures`,
which `chainpulse status` and `chainpulse backfill --wait` report.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task

from indexer import loglines
from indexer.errors import ChainpulseError, RetryableError
from workers import runner
from workers.app import app
from workers.jobs import DECODE_TASK, QUEUE, TASK, BadJob, DecodeLogs, IndexBlocks
from workers.main import metrics

log = logging.getLogger(__name__)

SLOT_WAIT_S = 0.5  # a job over its chain's share waits this long before it is tried again


class BlockJob(Task):
    acks_late = True
    reject_on_worker_lost = True

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        try:
            job = IndexBlocks.from_message(args, kwargs)
        except BadJob:
            return  # nothing to record: the message names no heights
        metrics().failed(type(exc).__name__)
        reason = f"{type(exc).__name__}: {exc}"
        try:
            current = runner.current()
        except ChainpulseError as build_exc:  # e.g. a malformed DATABASE_URL
            log.error(
                "blocks %s-%s failed (%s); not recorded: %s", job.first, job.last, reason, build_exc
            )
            return
        current.record_failure(job, reason)


@app.task(base=BlockJob, bind=True, name=TASK)
def index_blocks(self: Task, *args: Any, **kwargs: Any) -> int:
    """Index one `IndexBlocks` job; returns how many blocks were written."""
    job = IndexBlocks.from_message(args, kwargs)
    current = runner.current()
    worker, job_id = str(self.request.hostname or "worker"), str(self.request.id)
    if not current.take_slot(worker, job, job_id):
        # its chain holds its share of this worker's processes (a frozen node, say):
        # back to the queue, and the process takes another chain's job
        self.apply_async(
            kwargs=job.to_kwargs(),
            queue=QUEUE,
            countdown=SLOT_WAIT_S,
            retries=self.request.retries,  # its retries still count toward TASK_MAX_RETRIES
        )
        return 0
    last = job.last if job.last > job.first else None
    try:
        with (
            loglines.context(
                chain=current.chain_name(job), job=self.request.id, block=job.first, last_block=last
            ),
            metrics().job(),
        ):
            return _run(self, job)
    finally:
        current.give_slot(worker, job, job_id)


def _run(self: Task, job: IndexBlocks) -> int:
    current = runner.current()
    try:
        return len(current.run(job))
    except RetryableError as exc:
        policy = current.retry
        if self.request.retries < policy.max_retries:
            metrics().retried(type(exc).__name__)
        raise self.retry(
            exc=exc,
            countdown=policy.countdown(self.request.retries),
            max_retries=policy.max_retries,
        ) from exc


@app.task(bind=True, name=DECODE_TASK, acks_late=True, reject_on_worker_lost=True)
def decode_logs(self: Task, **kwargs: Any) -> int:
    """Decode one piece of a contract's history from the stored logs (no node calls);
    returns how many logs were read. Safe to run twice."""
    job = DecodeLogs.from_message(kwargs)
    current = runner.current()
    try:
        with loglines.context(job=self.request.id, block=job.first, last_block=job.last):
            return current.decode(job)
    except RetryableError as exc:
        policy = current.retry
        raise self.retry(
            exc=exc,
            countdown=policy.countdown(self.request.retries),
            max_retries=policy.max_retries,
        ) from exc
