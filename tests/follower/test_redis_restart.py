"""Redis killed and started again, empty, while a worker holds a job: the worker keeps
consuming and indexing goes on after every restart."""

from __future__ import annotations

import signal

import pytest

from chainpulse.devnet import Activity, RedisServer, wait_until
from tests.harness.stack import Stack
from workers.jobs import QUEUE, TASK, IndexBlocks


def restart(server: RedisServer) -> None:
    """kill -9 and start again on the same port, with nothing kept (no persistence)."""
    assert server.process is not None
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(10)
    server.start()


def hold_a_job(stack: Stack) -> None:
    """A job for a height the node does not have yet: it is retried (BlockNotFound), so
    the worker holds it unacknowledged, waiting for its countdown."""
    app = stack.worker_app()
    try:
        far = stack.anvil.head() + 1_000
        job = IndexBlocks(far, far, "head")
        app.send_task(TASK, kwargs=job.to_kwargs(), queue=QUEUE)
    finally:
        app.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("restarts", [3, pytest.param(20, marks=pytest.mark.slow)])
def test_the_worker_keeps_indexing_across_redis_restarts(
    stack: Stack, redis_server: RedisServer, restarts: int
) -> None:
    activity = Activity(stack.anvil)
    activity.block()
    stack.follower()
    wait_until(lambda: stack.start_block() is not None, 30, "the follower starting")
    stack.wait_consistent()
    for i in range(restarts):
        hold_a_job(stack)
        wait_until(lambda: stack.client.hlen("unacked") > 0, 30, "the worker holding a job")
        restart(redis_server)
        activity.block(count=2)
        try:
            stack.wait_consistent(timeout=90)
        except AssertionError as exc:
            raise AssertionError(f"after restart {i + 1}: {exc}") from None
        assert stack.workers[0].process is not None
    assert "Unrecoverable error" not in stack.logs(), stack.tails()
