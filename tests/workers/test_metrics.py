"""The worker's `/metrics`: its pool processes' counts summed (prometheus_client's
multiprocess mode), reorgs by depth, and a port that only one worker may hold."""

from __future__ import annotations

import json
from pathlib import Path

from chainpulse.devnet import Activity, RedisServer
from tests.harness.metrics import scrape, total, value
from tests.harness.stack import stack
from tests.harness.worker import Worker


def test_counts_of_every_pool_process_are_summed(tmp_path: Path, redis_server: RedisServer) -> None:
    with stack("sqlite", tmp_path, redis_server, BACKFILL_BATCH="1") as s:
        activity = Activity(s.anvil)
        for _ in range(8):
            activity.block(count=2, deploys=0)
        head = s.anvil.head()
        worker = s.start_worker(concurrency=2, LOG_FORMAT="json", LOG_LEVEL="info")

        result = s.cli("backfill", "1", str(head), "--wait")

        assert result.returncode == 0, result.stderr + s.tails()
        samples = scrape(worker.metrics_url)
        assert (
            value(samples, "chainpulse_blocks_indexed_total", chain="main", source="backfill")
            == head
        )
        txs = sum(s.node_rows_per_height(1, head)["transactions"].values())
        assert txs >= 16
        assert value(samples, "chainpulse_transactions_indexed_total", chain="main") == txs
        # one job per height (BACKFILL_BATCH=1), whichever pool process ran it
        assert value(samples, "chainpulse_job_duration_seconds_count") == head
        assert value(samples, "chainpulse_jobs_running") == 0
        files = list(Path(worker.env["WORKER_METRICS_DIR"]).glob("*.db"))
        assert files, "the pool writes its values in the worker's own directory"

        # a reorg of depth 2 met by a job: repaired by the worker, counted by depth
        s.anvil.call("anvil_reorg", 2, [])
        s.anvil.mine(1)
        new = s.anvil.head()
        result = s.cli("backfill", str(new), str(new), "--wait")
        assert result.returncode == 0, result.stderr + s.tails()
        assert [r["depth"] for r in s.reorgs()] == [2]
        samples = scrape(worker.metrics_url)
        assert value(samples, "chainpulse_reorg_depth_blocks_count", chain="main") == 1
        # LOG_FORMAT=json: one object per line; a job's lines name the job and its heights
        lines = [line for line in worker.log().splitlines() if line.strip()]
        # Celery prints its shutdown notices itself ("worker: Warm shutdown ...")
        records = [json.loads(line) for line in lines if not line.startswith("worker: ")]
        assert any(r["message"].endswith(" ready.") for r in records)
        met = [r for r in records if "checking the stored chain" in r["message"]]
        assert met and met[0]["block"] == new and len(met[0]["job"]) == 36, met
        assert value(samples, "chainpulse_reorg_depth_blocks_bucket", chain="main", le="1.0") == 0
        assert value(samples, "chainpulse_reorg_depth_blocks_bucket", chain="main", le="2.0") == 1


def test_a_second_worker_on_the_port_stops_and_leaves_the_first_alone(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    with stack("sqlite", tmp_path, redis_server) as s:
        first = s.start_worker(concurrency=1)
        s.anvil.mine(2)
        assert s.cli("backfill", "1", "2", "--wait").returncode == 0
        before = scrape(first.metrics_url)

        second = Worker(
            s.env(
                WORKER_METRICS_PORT=str(first.metrics_port),
                WORKER_METRICS_DIR=first.env["WORKER_METRICS_DIR"],
            ),
            tmp_path,
            concurrency=1,
        ).start()
        assert second.process is not None
        assert second.process.wait(60) == 2, second.tail()
        assert f"WORKER_METRICS_PORT {first.metrics_port} is taken" in second.log()

        after = scrape(first.metrics_url)
        assert total(after, "chainpulse_blocks_indexed_total") == 2
        assert total(after, "chainpulse_blocks_indexed_total") == total(
            before, "chainpulse_blocks_indexed_total"
        )
