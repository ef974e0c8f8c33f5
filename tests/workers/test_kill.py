"""A worker killed with kill -9 mid-backfill loses nothing: its jobs are delivered again
(acks_late, VISIBILITY_TIMEOUT) and every block ends up indexed once."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest

from chainpulse.devnet import Activity, RedisServer, wait_until
from tests.harness.environment import CHAINPULSE
from tests.harness.stack import stack
from workers.runner import RELAY_INTERVAL_S

VISIBILITY_TIMEOUT = 10  # longer than a worker takes to start, so a restart alone won't do


# with live clients watching, the fault suite (tests/faults) kills the worker in a backfill
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_kill_9_mid_backfill_leaves_no_gap_and_no_duplicate(
    kind: str, tmp_path: Path, redis_server: RedisServer
) -> None:
    settings = {
        "BACKFILL_BATCH": "2",
        "VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
        "RETRY_BACKOFF_MAX": "2",
    }
    with stack(kind, tmp_path, redis_server, **settings) as s:
        activity = Activity(s.anvil)
        for _ in range(30):
            activity.block(count=3, log_share=0.5, reverts=1, deploys=0)
            s.anvil.mine(4)
        head = s.anvil.head()
        first = s.start_worker()
        store = s.store
        client = s.redis()
        with open(tmp_path / "backfill.err", "w+") as err:
            backfill = subprocess.Popen(
                [CHAINPULSE, "backfill", "1", str(head), "--wait"],
                env=s.env(),
                cwd=tmp_path,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
            try:
                # kill mid-job: both prefork processes can be between jobs for a moment
                wait_until(
                    lambda: head - len(store.missing(1, head)) >= 20 and client.hlen("unacked") > 0,
                    60,
                    "the first 20 blocks stored and a job in flight",
                    interval=0.02,
                )
                first.kill()
                stored_at_kill = head - len(store.missing(1, head))
                in_flight = client.hlen("unacked")
                assert stored_at_kill < head, "the backfill finished before the kill"
                assert in_flight > 0, "no job was in flight when the worker died"

                s.start_worker()
                try:
                    code = backfill.wait(90)
                except subprocess.TimeoutExpired:
                    err.seek(0)
                    raise AssertionError(
                        f"backfill still waiting; missing {store.missing(1, head)}; "
                        f"unacked {client.hgetall('unacked')}, "
                        f"index {client.zrange('unacked_index', 0, -1, withscores=True)}, "
                        f"queued {client.lrange('blocks', 0, -1)}\n"
                        f"{err.read()[-2000:]}\n{s.tails()}"
                    ) from None
                err.seek(0)
                output = err.read()
                assert code == 0, output + s.tails()
                assert f"indexed {head} blocks" in output

                assert store.missing(1, head) == []
                assert s.rows_per_height(1, head) == s.node_rows_per_height(1, head)
                # a block the killed worker committed but did not announce is appended by
                # a relay (every RELAY_INTERVAL_S in each worker process); repeats are
                # allowed, with the same id
                node_ids = s.node_ids(1, head)
                with contextlib.suppress(TimeoutError):
                    wait_until(
                        lambda: set(s.stream_ids()) == node_ids,
                        RELAY_INTERVAL_S * 3,
                        "every block's event on the stream",
                    )
                assert set(s.stream_ids()) == node_ids
                wait_until(
                    lambda: client.hlen("unacked") == 0 and client.llen("blocks") == 0,
                    30,
                    "every job acknowledged",
                )
            finally:
                if backfill.poll() is None:
                    backfill.kill()
                    backfill.wait()
                client.close()
