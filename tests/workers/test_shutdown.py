"""SIGTERM on a worker loses no job.

- To the main process only (systemd, Kubernetes): a warm shutdown; the job running
  finishes, the worker exits 0 and removes its metrics directory.
- To the whole process group (honcho, Ctrl-C in a terminal): Celery's pool processes
  reset SIGTERM to its default and stop mid-job; the job was not acknowledged
  (`acks_late`), so it is delivered again and another worker indexes it.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from chainpulse.devnet import RedisServer, wait_until
from tests.harness.proxy import RpcProxy
from tests.harness.stack import Stack, stack


def start_slow_job(s: Stack, proxy: RpcProxy, first: int, last: int) -> None:
    """Enqueue `first`..`last` and return once a worker is inside the job."""
    forwarded = proxy.forwarded
    proxy.delay = 3.0
    result = s.cli("backfill", str(first), str(last))
    assert result.returncode == 0, result.stderr
    wait_until(lambda: proxy.forwarded > forwarded, 30, "the job reaching the node")


def test_sigterm_to_the_main_process_finishes_the_job(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    with stack("sqlite", tmp_path, redis_server) as s, RpcProxy(s.anvil.url) as proxy:
        s.anvil.mine(4)
        worker = s.start_worker(concurrency=1, ETH_RPC_URL=proxy.url)
        assert s.cli("backfill", "1", "2", "--wait").returncode == 0  # the chain is bound
        start_slow_job(s, proxy, 3, 4)

        assert worker.process is not None
        os.kill(worker.process.pid, signal.SIGTERM)
        assert worker.process.wait(60) == 0, worker.tail()

        assert sorted(s.store.stored_hashes(1, 4)) == [1, 2, 3, 4], worker.tail()
        assert s.failed() == []
        assert not Path(worker.env["WORKER_METRICS_DIR"]).exists()


def test_sigterm_to_the_group_leaves_the_job_to_another_worker(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    with (
        stack(
            "sqlite", tmp_path, redis_server, VISIBILITY_TIMEOUT="10", RETRY_BACKOFF_MAX="2"
        ) as s,
        RpcProxy(s.anvil.url) as proxy,
    ):
        s.anvil.mine(4)
        worker = s.start_worker(concurrency=1, ETH_RPC_URL=proxy.url)
        assert s.cli("backfill", "1", "2", "--wait").returncode == 0
        start_slow_job(s, proxy, 3, 4)

        worker.signal(signal.SIGTERM)  # the main process and its pool process
        assert worker.process is not None
        worker.process.wait(60)
        assert sorted(s.store.stored_hashes(1, 4)) == [1, 2], "the job was cut short"

        s.start_worker(concurrency=1)  # straight to the node
        wait_until(
            lambda: sorted(s.store.stored_hashes(1, 4)) == [1, 2, 3, 4],
            60,
            "the job delivered again and indexed",
        )
        assert s.failed() == []
