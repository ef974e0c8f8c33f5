"""Jobs a worker refuses at once: its node serves another chain, or is down from the start.

The worker says so clearly in its log, writes nothing, and should record the failure so
that `chainpulse status` and `chainpulse backfill --wait` can report it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from chainpulse.devnet import Anvil, RedisServer, free_port, wait_until
from tests.harness.stack import Stack, stack
from tests.harness.worker import Worker


@dataclass
class Refused:
    stack: Stack
    worker: Worker
    reason: str  # what the worker's log names


@pytest.fixture(scope="module", params=["another chain", "node down"])
def refused(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    redis_server: RedisServer,
) -> Iterator[Refused]:
    with stack("sqlite", tmp_path_factory.mktemp("refused"), redis_server) as s:
        s.anvil.mine(3)
        result = s.cli("backfill", "2", "3")  # binds the database to chain 31337, enqueues 2-3
        assert result.returncode == 0, result.stderr
        other = Anvil(chain_id=4242).start()
        try:
            other.mine(5)
            if request.param == "another chain":
                url = other.url
                reason = (
                    f"ChainMismatch: the database at {s.database_url} indexes chain 31337, "
                    "but the node serves chain 4242"
                )
            else:
                url = f"http://127.0.0.1:{free_port()}"
                reason = f"NodeUnavailable: node at {url} is unreachable"
            worker = s.start_worker(
                concurrency=1, ETH_RPC_URL=url, TASK_MAX_RETRIES="0", ETH_RPC_TIMEOUT="1"
            )
            try:
                wait_until(lambda: "failed for good" in worker.log(), 30, "the job failing")
            except TimeoutError as exc:
                raise AssertionError(f"{exc}\n{worker.tail()}") from None
            yield Refused(s, worker, reason)
        finally:
            other.stop()


def test_worker_names_the_reason_and_writes_nothing(refused: Refused) -> None:
    log = refused.worker.log()
    assert f"blocks 2-3 failed for good: {refused.reason}" in log, refused.worker.tail()
    assert refused.stack.rows_per_height(0, 10) == {"blocks": {}, "transactions": {}, "logs": {}}


def test_status_shows_the_refused_blocks(refused: Refused) -> None:
    report = refused.stack.status()
    assert [f["number"] for f in report["failed"]] == [2, 3], refused.worker.tail()
    assert all(refused.reason in f["error"] for f in report["failed"])
