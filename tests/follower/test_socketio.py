"""End to end: a mined block and a reorg, as a Socket.IO client of `chainpulse serve`
sees them (docs/protocol.md's ordering rule)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chainpulse.devnet import Activity, wait_until
from tests.harness.realtime import Client, Server
from tests.harness.stack import Stack


@pytest.fixture
def server(stack: Stack) -> Iterator[Server]:
    server = Server(stack.settings.redis_url, stack.settings.database_url)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_client_receives_the_reorg_before_the_replacement_blocks(
    stack: Stack, server: Server
) -> None:
    client = Client(server).connect()
    activity = Activity(stack.anvil)
    activity.block()
    stack.follower()
    wait_until(lambda: stack.start_block() is not None, 30, "the follower starting")
    for _ in range(5):
        activity.block(count=2)
    stack.wait_consistent()
    head = stack.anvil.head()
    wait_until(
        lambda: any(b["number"] == head for b in client.of("new-block")), 30, "new-block head"
    )
    stack.anvil.call("anvil_reorg", 3, [])
    activity.block(count=2)
    stack.wait_consistent()
    canonical = stack.node_hashes(head - 2, head + 1)
    wait_until(
        lambda: any(b["hash"] == canonical[head + 1] for b in client.of("new-block")),
        30,
        "the block after the reorg pushed",
    )
    client.close()

    seen = [(e, d) for e, d in client.events if e in ("new-block", "reorg")]
    [at] = [i for i, (e, _) in enumerate(seen) if e == "reorg"]
    reorg = seen[at][1]
    assert reorg["commonAncestor"]["number"] == head - 3 and reorg["depth"] == 3
    assert [r["hash"] for r in reorg["added"]] == [canonical[n] for n in range(head - 2, head + 1)]
    before = [d["number"] for _, d in seen[:at]]
    after = [(d["number"], d["hash"]) for _, d in seen[at + 1 :]]
    assert before == list(range(before[0], head + 1))  # rising by exactly 1
    assert after == [(n, canonical[n]) for n in range(head - 2, head + 2)]
