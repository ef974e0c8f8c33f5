"""Reorgs met first by a worker: a head block whose parent changed under it, and a
backfill job overlapping the head. No follower runs here."""

from __future__ import annotations

import json

import pytest

from chainpulse.devnet import Activity, wait_until
from tests.harness.stack import Stack
from workers.jobs import QUEUE, TASK, IndexBlocks


def enqueue(stack: Stack, first: int, last: int, source: str) -> None:
    app = stack.worker_app()
    try:
        job = IndexBlocks(first, last, source)  # type: ignore[arg-type]
        app.send_task(TASK, kwargs=job.to_kwargs(), queue=QUEUE)
    finally:
        app.close()


def test_a_job_queued_in_the_older_positional_form_still_runs(stack: Stack) -> None:
    """Releases before the typed job sent (first, last, source, force) positionally."""
    Activity(stack.anvil).block(count=3)
    head = stack.anvil.head()
    app = stack.worker_app()
    try:
        app.send_task(TASK, args=(1, head, "backfill", False), queue=QUEUE)
    finally:
        app.close()
    wait_until(lambda: stack.store.missing(1, head) == [], 60, "the old-form job indexed")


@pytest.mark.parametrize("job", ["head", "backfill"])
def test_a_worker_repairs_the_reorg_it_meets(stack: Stack, job: str) -> None:
    activity = Activity(stack.anvil)
    for _ in range(8):
        activity.block(count=3)
    head = stack.anvil.head()
    enqueue(stack, 1, head, "backfill")
    wait_until(lambda: len(stack.store.missing(1, head)) == 0, 60, "blocks 1..head stored")
    stack.start = 1
    old = stack.node_hashes(head - 3, head)
    stack.anvil.call("anvil_reorg", 4, [])  # same height, four new blocks
    activity.block(count=2)
    new_head = stack.anvil.head()
    if job == "head":
        enqueue(stack, new_head, new_head, "head")  # its parent is not the stored block
    else:
        enqueue(stack, head - 5, new_head, "backfill")  # overlaps the changed blocks
    stack.wait_consistent()
    [reorg] = stack.reorgs()
    assert reorg["depth"] == 4 and reorg["ancestor_number"] == head - 4
    removed = {r["number"]: r["hash"] for r in json.loads(reorg["old_hashes"])}
    assert removed == old
    types = [(t, d.get("blockNumber")) for t, d in stack.events()]
    at = types.index(("block.reorged", None))
    assert types[at + 1] == ("block.indexed", head - 3)
