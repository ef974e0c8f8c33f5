"""The follower against a real anvil, Redis, database and Celery worker."""

from __future__ import annotations

import time
from typing import Any

import pytest

from chainpulse.devnet import Activity, free_port, wait_until
from indexer.events import BlockRef
from indexer.finality import Marks
from tests.harness.stack import Stack

# Tests of the follower's own behaviour; the database adds nothing to them.
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


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


@SQLITE_ONLY
def test_catches_up_after_the_node_froze_for_ten_seconds(stack: Stack) -> None:
    activity = Activity(stack.anvil)
    activity.block()
    running = stack.follower()
    wait_until(lambda: stack.start_block() is not None, 30, "the follower starting")
    activity.block(count=3)
    stack.anvil.mine(2)
    token = running.follower.lease.token
    stack.anvil.pause()
    try:
        time.sleep(10)  # node unreachable: calls time out, jobs retry
    finally:
        stack.anvil.resume()
    for _ in range(3):
        activity.block(count=3)
    stack.wait_consistent()
    assert running.follower.lease.token == token  # the lease survived the stall


@pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)], indirect=True
)
def test_a_reorg_deeper_than_allowed_halts_and_is_reported(stack: Stack) -> None:
    from chainpulse.status import collect_status, render_status
    from indexer.reorg import clear_halt

    activity = Activity(stack.anvil)
    activity.block()
    halted = stack.follower(max_reorg_depth=3)
    wait_until(lambda: stack.start_block() is not None, 30, "the follower starting")
    for _ in range(6):
        activity.block(count=2)
    stack.wait_consistent()
    head = stack.anvil.head()
    before = stack.store.stored_hashes(0, head)
    stack.anvil.call("anvil_reorg", 5, [])
    wait_until(lambda: stack.store.get_meta("halted") is not None, 30, "the halt recorded")
    report = collect_status(stack.settings)
    assert "deeper than allowed" in report["halted"]["reason"]
    assert any("halted" in e for e in report["errors"])
    assert "HALTED" in render_status(report)
    cursor = stack.client.get("chainpulse:follower:cursor")
    stack.anvil.mine(3)
    time.sleep(3)  # give a runaway follower time to advance; it must not
    assert stack.store.stored_hashes(0, head + 3) == before
    assert stack.client.get("chainpulse:follower:cursor") == cursor
    assert stack.reorgs() == []
    # The operator's way out: raise MAX_REORG_DEPTH, clear the halt, restart the follower.
    halted.stop()
    clear_halt(stack.store)
    stack.follower(max_reorg_depth=10)
    stack.wait_consistent()
    [reorg] = stack.reorgs()
    assert reorg["depth"] == 5
    assert collect_status(stack.settings)["halted"] is None


@SQLITE_ONLY
def test_new_heads_over_a_websocket(stack: Stack) -> None:
    activity = Activity(stack.anvil)
    activity.block()
    running = stack.follower(ws_url=stack.anvil.ws_url, poll_interval=1.0)
    wait_until(lambda: stack.start_block() is not None, 30, "the follower starting")
    for _ in range(4):
        activity.block(count=2)
    stack.wait_consistent()
    heads = running.follower._heads
    assert heads is not None and heads.connected and heads.last_message > 0
    stack.anvil.call("anvil_reorg", 2, [])
    stack.wait_consistent()
    assert len(stack.reorgs()) == 1


@SQLITE_ONLY
def test_falls_back_to_polling_when_the_websocket_is_down(stack: Stack) -> None:
    activity = Activity(stack.anvil)
    activity.block()
    running = stack.follower(ws_url=f"ws://127.0.0.1:{free_port()}")
    wait_until(lambda: stack.start_block() is not None, 30, "the follower starting")
    for _ in range(3):
        activity.block(count=2)
    stack.wait_consistent()
    assert running.follower._heads is not None and not running.follower._heads.connected


@SQLITE_ONLY
def test_honours_confirmations(stack: Stack) -> None:
    activity = Activity(stack.anvil)
    activity.block()
    stack.follower(confirmations=2)
    wait_until(lambda: stack.start_block() is not None, 30, "the follower starting")
    for _ in range(4):
        activity.block(count=2)
    stack.wait_consistent(confirmations=2)  # up to head - 2, nothing above
    stack.anvil.call("anvil_reorg", 2, [])  # only blocks the follower has not indexed
    activity.block()
    stack.wait_consistent(confirmations=2)
    assert stack.reorgs() == []


@SQLITE_ONLY
def test_no_repair_reaches_below_the_finalized_block(stack: Stack) -> None:
    from indexer.reorg import clear_halt

    stack.anvil.mine(80)  # anvil finalizes head - 64
    follower = stack.follower(start_block=1, max_reorg_depth=200)
    stack.wait_consistent()
    finalized = int(stack.anvil.block("finalized")["number"], 16)
    assert finalized > 0
    stack.anvil.call("anvil_reorg", stack.anvil.head() - finalized + 2, [])
    wait_until(lambda: stack.store.get_meta("halted") is not None, 30, "the halt recorded")
    assert stack.reorgs() == []
    # the operator's way out forgets the marks with the halt (the follower reads them again)
    follower.stop()
    assert stack.store.get_meta("finality") is not None
    clear_halt(stack.store)
    assert stack.store.get_meta("halted") is None and stack.store.get_meta("finality") is None


def test_nothing_is_lost_when_redis_loses_its_data(stack: Stack) -> None:
    activity = Activity(stack.anvil)
    activity.block()
    running = stack.follower()
    wait_until(lambda: stack.start_block() is not None, 30, "the follower starting")
    activity.block(count=2)
    stack.wait_consistent()
    token = running.follower.lease.token
    assert token is not None
    stack.client.flushall()  # the lock, the token counter, the cursor and the queue
    for _ in range(3):
        activity.block(count=2)
    stack.wait_consistent()
    wait_until(
        lambda: (t := running.follower.lease.token) is not None and t > token,
        30,
        "the follower taking a newer token",
    )


@SQLITE_ONLY
def test_events_left_in_the_outbox_reach_the_stream_with_no_worker_running(
    stack: Stack,
) -> None:
    """A worker that committed a block and died (or lost Redis) before appending its
    event: the follower's sweep appends it."""
    from indexer.events import BlockIndexed
    from indexer.seen_head import read_head

    for worker in stack.workers:
        worker.stop()
    event = BlockIndexed(7, "0x" + "77" * 32, "0x" + "66" * 32, 1_700_000_007, 0, "head")
    with stack.store.writing() as conn:
        stack.store.add_to_outbox(conn, event)
    stack.anvil.mine(1)
    stack.follower()
    wait_until(lambda: event.id in stack.stream_ids(), 30, "the outbox relayed")
    assert stack.store.pending_outbox() == []
    seen = read_head(stack.client)
    assert seen is not None and seen.number == stack.anvil.head()


@SQLITE_ONLY
def test_the_finality_marks_are_recorded_and_announced_as_they_move(stack: Stack) -> None:
    stack.anvil.mine(70)  # anvil: safe = head - 32, finalized = head - 64
    stack.follower(start_block=1)

    def announced() -> list[dict[str, Any]]:
        return [data for kind, data in stack.events() if kind == "block.finalized"]

    wait_until(announced, 30, "block.finalized on the stream")
    hashes = stack.node_hashes(1, 80)
    assert announced()[0] == {
        "chainId": 31337,
        "number": 6,
        "hash": hashes[6],
        "safe": {"number": 38, "hash": hashes[38]},
    }
    stack.anvil.mine(4)
    wait_until(lambda: len(announced()) == 2, 30, "the next marks announced")
    assert [(d["number"], d["safe"]["number"]) for d in announced()] == [(6, 38), (10, 42)]
    recorded = stack.store.get_meta("finality")
    assert recorded is not None and Marks.from_json(recorded).finalized == BlockRef(10, hashes[10])
    time.sleep(2.5)  # two sweeps more, the marks unmoved: nothing announced again
    assert len(announced()) == 2
