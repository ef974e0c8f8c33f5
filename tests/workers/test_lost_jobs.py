"""A job the broker lost (kombu pops it, then records it as unacknowledged: a worker
killed in between drops it) is enqueued again by `backfill --wait`."""

from __future__ import annotations

import json
import subprocess
from base64 import b64decode
from pathlib import Path

import pytest

from chainpulse.devnet import RedisServer, wait_until
from tests.harness.environment import CHAINPULSE
from tests.harness.stack import stack
from workers.jobs import IndexBlocks


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def test_backfill_wait_enqueues_a_lost_job_again(
    kind: str, tmp_path: Path, redis_server: RedisServer
) -> None:
    with stack(kind, tmp_path, redis_server, BACKFILL_BATCH="2") as s:
        s.anvil.mine(10)
        client = s.redis()
        with open(tmp_path / "backfill.err", "w+") as err:
            backfill = subprocess.Popen(
                [CHAINPULSE, "backfill", "1", "10", "--wait"],
                env=s.env(),
                cwd=tmp_path,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
            try:
                wait_until(lambda: client.llen("blocks") == 5, 30, "the five jobs queued")
                # What a worker dying right after BRPOP leaves: the job is nowhere.
                lost = json.loads(client.rpop("blocks"))
                args, kwargs, _ = json.loads(b64decode(lost["body"]))
                job = IndexBlocks.from_message(args, kwargs)
                assert (job.first, job.last) == (1, 2)
                s.start_worker()
                code = backfill.wait(90)
            finally:
                if backfill.poll() is None:
                    backfill.kill()
            err.seek(0)
            output = err.read()
        assert code == 0, output + s.tails()
        assert "no job holds 1-2 any more" in output
        store = s.store
        assert store.missing(1, 10) == []
