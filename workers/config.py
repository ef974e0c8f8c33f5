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

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.retry_backoff_max >= self.visibility_timeout:
            raise ConfigError("RETRY_BACKOFF_MAX must stay below VISIBILITY_TIMEOUT")
