"""The follower against a real anvil, Redis, database and Celery worker."""

from __future__ import annotations

from chainpulse.devnet import Activity, wait_until
from tests.follower.conftest import Stack


def test_follows_the_head_and_repairs_a_same_height_reorg(stack: Stack) -> None:
    activity = Activity(stack.anvil)
    activity.block()
    stack.follower()
    wait_until(lambda: stack.start_block() is not None, 30, "the follower starting")
    for _ in range(5):
        activity.block(count=4)
    stack.wait_consistent()
    head = stack.anvil.head()
    old = stack.node_hashes(head - 2, head)
    stack.anvil.call("anvil_reorg", 3, [])
    assert stack.anvil.head() == head
    stack.wait_consistent()
    [reorg] = stack.reorgs()
    assert reorg["depth"] == 3 and reorg["ancestor_number"] == head - 3
    kinds = [(t, d.get("blockNumber")) for t, d in stack.events()]
    at = kinds.index(("block.reorged", None))
    assert kinds[at + 1 : at + 4] == [("block.indexed", head - 2 + i) for i in range(3)]
    assert old != stack.node_hashes(head - 2, head)
