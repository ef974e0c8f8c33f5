"""One active follower: the Redis lease, its fencing token, and a standby taking over."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import redis

from chainpulse.devnet import Activity, Anvil, wait_until
from follower.fence import Deposed, fence_floor, fencing
from follower.lease import LOCK_KEY, Lease, holder
from follower.queue import Cursor, FencedQueue, read_cursor
from indexer.reorg import repair
from indexer.rpc import Node
from indexer.schema import upgrade
from indexer.store import Store
from tests.harness.processes import stop
from tests.harness.stack import Stack
from workers.jobs import QUEUE, IndexBlocks, broker


def test_a_deposed_follower_can_neither_enqueue_nor_repair(
    sqlite_url: str, redis_url: str, anvil: Anvil
) -> None:
    upgrade(sqlite_url)
    store = Store(sqlite_url)
    node = Node((anvil.url,))
    anvil.mine(3)
    client = redis.Redis.from_url(redis_url)
    app = broker(redis_url)
    first = Lease(client, ttl=30)
    assert first.acquire()
    old = FencedQueue(app, client, first)
    old.enqueue([IndexBlocks(1, 1, "head")], Cursor(1, "0x01"))
    assert client.llen(QUEUE) == 1
    assert (
        repair(store, node, 64, claim=fencing(store, first.token or 0)) is None
    )  # records the token

    client.delete(LOCK_KEY)  # the lock expired while the first follower stalled
    second = Lease(client, ttl=30)
    assert second.acquire()
    assert second.token is not None and first.token is not None
    assert second.token > first.token
    assert repair(store, node, 64, claim=fencing(store, second.token or 0)) is None

    with pytest.raises(Deposed):
        old.enqueue([IndexBlocks(2, 2, "head")], Cursor(2, "0x02"))
    with pytest.raises(Deposed):
        repair(store, node, 64, claim=fencing(store, first.token or 0))
    assert client.llen(QUEUE) == 1
    assert read_cursor(client) == Cursor(1, "0x01")
    assert not first.renew()
    for lease in (first, second):
        lease.release()
    old.close()
    client.close()
    store.dispose()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_token_once_taken_is_never_taken_again_after_redis_lost_its_data(
    stack: Stack,
) -> None:
    """Redis restarts empty (its token counter with it) before any repair recorded a
    token in the database: every token taken was recorded when taken, so the next one
    is still larger (a paused holder of an earlier epoch's token 2 cannot pass for the
    new token 2)."""
    Activity(stack.anvil).block()
    running = stack.follower()
    wait_until(lambda: running.follower.lease.token is not None, 30, "a token")
    wait_until(lambda: stack.start_block() is not None, 30, "the follower starting")
    first = running.follower.lease.token
    assert first is not None
    stack.client.flushall()  # Redis lost everything: lock, counter, cursor
    wait_until(lambda: (running.follower.lease.token or 0) > first, 30, "the lock taken again")
    # the new holder records its token in the database before it acts (a moment after it
    # took the lock): then the floor is at least that token, larger than the first
    wait_until(
        lambda: fence_floor(stack.store) >= (running.follower.lease.token or 0) > first,
        30,
        "the new token recorded in the database",
    )


def test_tokens_stay_above_the_database_after_redis_lost_its_data(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    lease = Lease(client, ttl=30)
    assert lease.acquire(floor=41)
    assert lease.token == 42
    lease.release()
    client.close()


# PostgreSQL behind `slow`: the fault suite (tests/faults) kills and pauses followers too
POSTGRES_SLOW = pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)], indirect=True
)


def holder_index(logs: list[Path], token: int) -> int:
    """Which follower's log names the lease `token`. The lock is in Redis a moment before
    the follower writes its line, so wait for the line."""
    found: list[int] = []

    def named() -> bool:
        found[:] = [i for i, log in enumerate(logs) if f"token {token}" in log.read_text()]
        return bool(found)

    wait_until(named, 30, f"a follower logging lease token {token}")
    return found[0]


@POSTGRES_SLOW
def test_a_standby_takes_over_after_kill_9(stack: Stack, tmp_path: Path) -> None:
    activity = Activity(stack.anvil)
    activity.block()
    processes = [stack.follow_process(tmp_path / f"follower{i}.log") for i in range(2)]
    try:
        wait_until(lambda: holder(stack.client) is not None, 30, "a follower taking the lock")
        activity.block()
        stack.wait_consistent()
        first = holder(stack.client)
        assert first is not None
        # Which process holds it? Kill -9 the one whose log says so.
        logs = [tmp_path / f"follower{i}.log" for i in range(2)]
        active = processes[holder_index(logs, first.token)]
        os.kill(active.pid, signal.SIGKILL)
        active.wait()
        for _ in range(3):
            activity.block(count=3)
        stack.anvil.mine(12)  # more than BACKFILL_BATCH: the older ones go out as backfill
        wait_until(
            lambda: (h := holder(stack.client)) is not None and h.token > first.token,
            30,
            "the standby taking over",
        )
        stack.wait_consistent()
        activity.block()
        stack.wait_consistent()
        sources = {d["source"] for t, d in stack.events() if t == "block.indexed"}
        assert sources == {"head", "backfill"}
    finally:
        for p in processes:
            stop(p)


@POSTGRES_SLOW
def test_sigterm_hands_the_lock_over_at_once(stack: Stack, tmp_path: Path) -> None:
    """A follower stopped with SIGTERM releases its lock: the standby takes over in
    about a poll, not after the lock's 30 s expiry."""
    processes = [
        stack.follow_process(tmp_path / f"follower{i}.log", FOLLOWER_LOCK_TTL="30")
        for i in range(2)
    ]
    try:
        wait_until(lambda: holder(stack.client) is not None, 30, "a follower taking the lock")
        first = holder(stack.client)
        assert first is not None
        logs = [tmp_path / f"follower{i}.log" for i in range(2)]
        active = holder_index(logs, first.token)

        started = time.monotonic()
        processes[active].send_signal(signal.SIGTERM)
        assert processes[active].wait(10) == 0
        wait_until(
            lambda: (h := holder(stack.client)) is not None and h.token > first.token,
            10,
            "the standby taking over",
        )
        assert time.monotonic() - started < 5
        stack.activity().block()
        stack.wait_consistent()
    finally:
        for p in processes:
            stop(p)


@POSTGRES_SLOW
def test_a_paused_leader_that_wakes_after_its_lease_moved_on_does_not_act(
    stack: Stack, tmp_path: Path
) -> None:
    """SIGSTOP the active follower past its lease: the standby takes over; on SIGCONT
    the old leader finds its lease gone and stands down (its fencing token is stale,
    so nothing it had in hand is enqueued or repaired), and the chain stays followed."""
    activity = Activity(stack.anvil)
    activity.block()
    logs = [tmp_path / f"follower{i}.log" for i in range(2)]
    processes = [stack.follow_process(log) for log in logs]
    try:
        wait_until(lambda: holder(stack.client) is not None, 30, "a follower taking the lock")
        stack.wait_consistent()
        first = holder(stack.client)
        assert first is not None
        active = holder_index(logs, first.token)
        os.kill(processes[active].pid, signal.SIGSTOP)
        try:
            wait_until(
                lambda: (h := holder(stack.client)) is not None and h.token > first.token,
                30,
                "the standby taking over",
            )
            activity.block(count=3)
            stack.wait_consistent()
        finally:
            os.kill(processes[active].pid, signal.SIGCONT)
        second = holder(stack.client)
        assert second is not None
        wait_until(
            lambda: any(
                words in logs[active].read_text() for words in ("standing down", "stands down")
            ),
            30,
            "the woken leader standing down",
        )
        activity.block(count=2)
        stack.wait_consistent()
        now = holder(stack.client)  # the woken one did not take it back
        assert now is not None and (now.token, now.owner) == (second.token, second.owner)
        assert processes[active].poll() is None  # a standby now, still running
    finally:
        for p in processes:
            stop(p)
