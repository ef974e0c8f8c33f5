"""The worker's settings: retries, redelivery and its process count."""

from __future__ import annotations

from dataclasses import dataclass

from indexer.config import IndexerSettings, setting
from indexer.errors import ConfigError


@dataclass(frozen=True)
class WorkerSettings(IndexerSettings):
    task_max_retries: int = setting(
        "TASK_MAX_RETRIES", 8, "retries of a job on retryable errors before it fails for good"
    )
    retry_backoff_max: int = setting(
        "RETRY_BACKOFF_MAX",
        30,
        "seconds; cap of the exponential backoff (full jitter); below `VISIBILITY_TIMEOUT`",
        minimum=1,
    )
    visibility_timeout: int = setting(
        "VISIBILITY_TIMEOUT",
        60,
        "seconds before the Redis broker redelivers a job whose worker vanished",
        minimum=1,
    )
    # None: one more than the CPU count, since a job spends most of its time on the node
    worker_concurrency: int | None = setting(
        "WORKER_CONCURRENCY",
        None,
        "prefork processes per `celery ... worker` (`--concurrency` overrides)",
        minimum=1,
        shown="CPU count + 1",
    )

    worker_metrics_port: int = setting(
        "WORKER_METRICS_PORT",
        9101,
        "port of the worker's `/metrics` (its pool processes summed); one per worker on a "
        "host; 0: none",
    )
    worker_metrics_dir: str | None = setting(
        "WORKER_METRICS_DIR",
        None,
        "directory of the pool's metric files (`PROMETHEUS_MULTIPROC_DIR`), emptied at start",
        shown="$TMPDIR/chainpulse-worker-<port>",
    )

    chain_job_slots: int | None = setting(
        "CHAIN_JOB_SLOTS",
        None,
        "with two chains or more: jobs of one chain a worker runs at once (so that one "
        "chain's frozen node cannot hold every process); unset with one chain: no bound",
        minimum=1,
        shown="WORKER_CONCURRENCY - 1 (at least 1)",
    )

    def job_slots(self, concurrency: int) -> int | None:
        """The bound on one chain's jobs running at once on a worker of `concurrency`
        processes; None with one chain."""
        if len(self.chains()) < 2:
            return None
        return self.chain_job_slots or max(1, concurrency - 1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.retry_backoff_max >= self.visibility_timeout:
            raise ConfigError("RETRY_BACKOFF_MAX must stay below VISIBILITY_TIMEOUT")
        if self.worker_metrics_port > 65_535:
            raise ConfigError(
                f"WORKER_METRICS_PORT must be a port number, got {self.worker_metrics_port}"
            )
