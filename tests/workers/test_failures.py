"""Failure paths with a real worker: a frozen node, failover, HTTP 429.

The worker reaches the node through ETH_RPC_URL="<closed port>,<proxy>": the first
endpoint refuses every connection, the second is a loopback proxy in front of anvil
that can answer HTTP 429 first. The command line talks to anvil directly.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chainpulse.devnet import RedisServer, free_port
from chainpulse.status import render_status
from tests.harness.metrics import scrape, total, value
from tests.harness.proxy import RpcProxy
from tests.harness.stack import Backfill, Stack, stack
from tests.harness.worker import Worker


@dataclass
class Failing:
    stack: Stack
    proxy: RpcProxy
    worker: Worker


@pytest.fixture(scope="module")
def failing(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer
) -> Iterator[Failing]:
    directory = tmp_path_factory.mktemp("failures")
    settings = {"TASK_MAX_RETRIES": "2", "RETRY_BACKOFF_MAX": "1", "ETH_RPC_TIMEOUT": "1"}
    with stack("sqlite", directory, redis_server, **settings) as s, RpcProxy(s.anvil.url) as proxy:
        closed = f"http://127.0.0.1:{free_port()}"
        worker = s.start_worker(concurrency=1, ETH_RPC_URL=f"{closed},{proxy.url}")
        yield Failing(s, proxy, worker)


def catch_up(s: Stack) -> None:
    head = s.anvil.head()
    result = s.cli("backfill", "1", str(head), "--wait")
    assert result.returncode == 0, result.stderr + s.tails()


def test_worker_fails_over_past_an_unreachable_endpoint(failing: Failing) -> None:
    s = failing.stack
    first, last = s.new_blocks(3)
    forwarded = failing.proxy.forwarded

    result = s.cli("backfill", "1", str(last), "--wait")

    assert result.returncode == 0, result.stderr + s.tails()
    assert s.rows_per_height(1, last) == s.node_rows_per_height(1, last)
    assert failing.proxy.forwarded > forwarded
    assert "is unreachable (ConnectionError)); failing over" in s.logs()


def test_http_429_is_retried_until_the_job_succeeds(failing: Failing) -> None:
    s = failing.stack
    catch_up(s)
    first, last = s.new_blocks(2)
    failing.proxy.answer_next(2)  # each of the first two attempts meets a 429
    before = scrape(failing.worker.metrics_url)

    result = s.cli("backfill", str(first), str(last), "--wait")

    assert result.returncode == 0, result.stderr + s.tails()
    assert failing.proxy.answered_canned == 2 and not failing.proxy.canned
    after = scrape(failing.worker.metrics_url)
    retries = "chainpulse_job_retries_total"
    # two retries; the reason is the last endpoint's error (the closed one, or the 429)
    assert total(after, retries) == total(before, retries) + 2
    assert {dict(labels)["reason"] for name, labels in after if name == retries} <= {
        "RateLimited",
        "NodeUnavailable",
    }
    indexed = "chainpulse_blocks_indexed_total"
    assert total(after, indexed, source="backfill") == total(before, indexed) + 2
    assert s.rows_per_height(first, last) == s.node_rows_per_height(first, last)
    limited = [line for line in s.logs().splitlines() if "answered HTTP 429" in line]
    assert limited and f"chain=main block={first} last_block={last} job=" in limited[0], limited
    assert s.failed() == []


def test_frozen_node_fails_the_job_for_good_and_writes_nothing(
    failing: Failing, tmp_path: Path
) -> None:
    s = failing.stack
    worker = failing.worker
    catch_up(s)
    first, last = s.new_blocks(3)
    worker.signal(signal.SIGSTOP)  # hold the job until the node is frozen
    try:
        with Backfill(s, tmp_path, str(first), str(last)) as backfill:
            backfill.wait_for("enqueued 3 blocks")
            with s.anvil.frozen():
                worker.signal(signal.SIGCONT)
                code = backfill.wait()
    finally:
        worker.signal(signal.SIGCONT)

    output = backfill.output()
    assert code == 1, output + s.tails()
    samples = scrape(worker.metrics_url)
    assert total(samples, "chainpulse_job_failures_total", reason="NodeUnavailable") >= 1
    assert value(samples, "chainpulse_jobs_running") == 0
    assert f"3 blocks failed: {first}-{last}" in output
    assert "first error: NodeUnavailable: node at" in output

    report = s.status()
    assert [f["number"] for f in report["failed"]] == [first, first + 1, last]
    assert all("NodeUnavailable" in f["error"] for f in report["failed"])
    assert report["indexed"] == first - 1 and report["lag"] == 3
    assert s.rows_per_height(first, last) == {"blocks": {}, "transactions": {}, "logs": {}}
    assert report["outbox"] == 0
    text = render_status(report)
    assert f"failed       {first}-{last}" in text
    assert "last error   NodeUnavailable" in text


def test_backfill_of_failed_blocks_waits_for_the_new_jobs(failing: Failing, tmp_path: Path) -> None:
    """Failures left by an earlier run must not count as failures of this run."""
    s = failing.stack
    failed = s.failed()
    assert failed, "the frozen-node test leaves failed blocks behind"
    failing.worker.signal(signal.SIGSTOP)  # the new jobs wait in the queue for a while
    try:
        with Backfill(s, tmp_path, str(failed[0]), str(failed[-1])) as backfill:
            backfill.wait_for("blocks/s")  # the first progress line
            assert f"0/{len(failed)} blocks" in backfill.output(), backfill.output()
            failing.worker.signal(signal.SIGCONT)
            assert backfill.wait() == 0, backfill.output() + s.tails()
    finally:
        failing.worker.signal(signal.SIGCONT)
    assert s.rows_per_height(failed[0], failed[-1]) == s.node_rows_per_height(failed[0], failed[-1])
    assert s.failed() == []
