"""The follower's `/metrics`: role and fencing token, the head, the lag in blocks and
seconds, queue depth, outbox backlog, reorgs by depth and failed rounds, each moving
when what it counts happens."""

from __future__ import annotations

import signal
from pathlib import Path

from chainpulse.devnet import RedisServer, free_port, wait_until
from follower.lease import Lease
from indexer.events import BlockIndexed
from tests.harness.metrics import Samples, scrape, total, value
from tests.harness.stack import FOLLOWING, stack

LAG = "chainpulse_indexing_lag_blocks"
MAIN = "main"  # the chain label of a deployment without a chains file


def test_follower_metrics_move(tmp_path: Path, redis_server: RedisServer) -> None:
    with stack("sqlite", tmp_path, redis_server, **FOLLOWING) as s:
        s.anvil.mine(3)
        held = Lease(s.client, ttl=60, owner="test")
        assert held.acquire()  # the follower starts as a standby
        running = s.follower()
        port = free_port()
        server = running.follower.metrics.process_metrics.serve(port)
        url = f"http://127.0.0.1:{port}/metrics"

        def now() -> Samples:
            return scrape(url)

        try:
            samples = now()
            assert value(samples, "chainpulse_follower_active", chain=MAIN) == 0
            assert value(samples, "chainpulse_follower_fencing_token", chain=MAIN) == 0
            assert value(samples, LAG, chain=MAIN) is None  # a standby reads no head
            assert value(samples, "chainpulse_queue_depth") == 0
            assert value(samples, "chainpulse_outbox_backlog") == 0

            # read when scraped: an event waiting in the outbox, a job waiting in the queue
            with s.store.writing() as conn:
                s.store.add_to_outbox(conn, BlockIndexed(1, "0x1", "0x0", 1, 0, "head"))
            assert s.cli("backfill", "1", "1").returncode == 0
            samples = now()
            assert value(samples, "chainpulse_outbox_backlog") == 1
            assert value(samples, "chainpulse_queue_depth") == 1

            # the lock passes to it: active, with the next token; it relays the outbox
            held.release()
            wait_until(
                lambda: value(now(), "chainpulse_follower_active", chain=MAIN) == 1, 20, "active"
            )
            assert value(now(), "chainpulse_follower_fencing_token", chain=MAIN) == (
                held_token := 2
            )
            wait_until(lambda: value(now(), "chainpulse_outbox_backlog") == 0, 20, "relayed")

            # a worker indexes up to the head the follower read
            worker = s.start_worker()
            head = s.anvil.head()
            wait_until(
                lambda: value(now(), "chainpulse_node_head_block", chain=MAIN) == head, 20, "head"
            )
            wait_until(lambda: value(now(), LAG, chain=MAIN) == 0, 60, "no lag")
            assert value(now(), "chainpulse_indexed_block", chain=MAIN) == head

            # with the worker held, the lag grows in blocks and in seconds, jobs wait
            worker.signal(signal.SIGSTOP)
            try:
                enqueued = total(now(), "chainpulse_heights_enqueued_total", source="head")
                for _ in range(4):
                    s.anvil.call("evm_increaseTime", 12)
                    s.anvil.mine(1)
                wait_until(
                    lambda: (value(now(), LAG, chain=MAIN) or 0) == 4, 20, "a lag of 4 blocks"
                )
                samples = now()
                assert (
                    total(samples, "chainpulse_heights_enqueued_total", source="head")
                    == enqueued + 4
                )
                assert (value(samples, "chainpulse_indexing_lag_seconds", chain=MAIN) or 0) >= 48
                assert (value(samples, "chainpulse_queue_depth") or 0) >= 3
            finally:
                worker.signal(signal.SIGCONT)
            wait_until(lambda: value(now(), LAG, chain=MAIN) == 0, 60, "caught up")
            samples = now()
            assert value(samples, "chainpulse_indexing_lag_seconds", chain=MAIN) == 0
            assert value(samples, "chainpulse_queue_depth") == 0

            # a reorg of depth 2 under the follower's cursor: it repairs and counts it
            worker.signal(signal.SIGSTOP)  # the follower, not a job, meets it
            try:
                s.anvil.call("anvil_reorg", 2, [])
                wait_until(
                    lambda: value(now(), "chainpulse_reorg_depth_blocks_count", chain=MAIN) == 1,
                    30,
                    "reorg",
                )
            finally:
                worker.signal(signal.SIGCONT)
            samples = now()
            assert value(samples, "chainpulse_reorg_depth_blocks_bucket", chain=MAIN, le="1.0") == 0
            assert value(samples, "chainpulse_reorg_depth_blocks_bucket", chain=MAIN, le="2.0") == 1

            # a frozen node: rounds fail, counted by reason
            with s.anvil.frozen():
                wait_until(
                    lambda: total(now(), "chainpulse_follower_rounds_failed_total") >= 1,
                    30,
                    "a failed round",
                )
            assert total(now(), "chainpulse_follower_rounds_failed_total", reason="NodeUnavailable")
            assert value(now(), "chainpulse_follower_fencing_token", chain=MAIN) == held_token
        finally:
            server.shutdown()
            server.server_close()
