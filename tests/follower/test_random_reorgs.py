"""Property: whatever reorgs happen while the follower and workers run, the database
ends up equal to the node's canonical chain, and every `block.reorged` on the stream
comes right before its replacement blocks' `block.indexed`.

Reorgs of depth 1..20 at random points, by `anvil_reorg` (same height, with new
transactions) and by `evm_snapshot`/`evm_revert` plus mining (another length, the
orphaned transactions mined again under the same hashes), while a miner thread keeps
adding blocks with transfers, logs, reverts and deployments.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chainpulse.devnet import Activity, wait_until
from tests.harness.stack import Stack

BUDGET_S = 30.0  # per database; hypothesis stops drawing new reorgs after it


class Miner:
    """Mines an activity block every `interval` seconds while `running` is set."""

    def __init__(self, activity: Activity, interval: float = 0.4) -> None:
        self.activity = activity
        self.interval = interval
        self.lock = threading.Lock()
        self.running = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.done.is_set():
            if self.running.wait(0.1):
                with self.lock:
                    self.activity.block(count=2, reverts=0, deploys=0)
                self.done.wait(self.interval)

    def __enter__(self) -> Miner:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(10)


def signed_transfers(stack: Stack, count: int) -> list[str]:
    accounts = stack.anvil.accounts()
    raws = []
    for i in range(count):
        tx = {"from": accounts[5 + i], "to": accounts[6 + i], "value": hex(7 + i), "gas": "0x5208"}
        raws.append(stack.anvil.call("eth_signTransaction", tx))
    return raws


def check_stream_order(events: list[tuple[str, dict[str, Any]]]) -> None:
    for at, (kind, data) in enumerate(events):
        if kind != "block.reorged" or not data["added"]:
            continue
        following = []
        for later_kind, later in events[at + 1 :]:
            if later_kind != "block.indexed":
                break
            following.append((later["blockNumber"], later["blockHash"]))
        assert following, f"no replacement after the reorg at {data['commonAncestor']}"
        assert following[0][0] == data["commonAncestor"]["number"] + 1
        added = [(r["number"], r["hash"]) for r in data["added"]]
        assert [f for f in following if f in added] == added


# the reorg logic does not depend on the database; PostgreSQL's run is the long variant
@pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)], indirect=True
)
def test_random_reorgs_leave_the_canonical_chain(stack: Stack) -> None:
    activity = Activity(stack.anvil)
    activity.block()
    stack.follower()
    wait_until(lambda: stack.start_block() is not None, 30, "the follower starting")
    deadline = time.monotonic() + BUDGET_S
    reorgs_made = 0

    with Miner(activity) as miner:

        @settings(
            max_examples=15,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(
            kind=st.sampled_from(["anvil_reorg", "revert"]),
            depth=st.integers(1, 20),
            before=st.integers(0, 3),
            pause=st.floats(0, 1.0),
            new_txs=st.integers(0, 3),
            longer=st.integers(-2, 2),
        )
        def scenario(
            kind: str, depth: int, before: int, pause: float, new_txs: int, longer: int
        ) -> None:
            nonlocal reorgs_made
            if time.monotonic() > deadline:
                return
            miner.running.set()
            start = stack.start_block()
            assert start is not None
            with miner.lock:
                while stack.anvil.head() - start < depth + before:
                    activity.block(count=2)
            time.sleep(pause)
            with miner.lock:
                if kind == "anvil_reorg":
                    accounts = stack.anvil.accounts()
                    txs = [
                        [{"from": accounts[i], "to": accounts[i + 1], "value": "0x1"}, i % depth]
                        for i in range(new_txs)
                    ]
                    stack.anvil.call("anvil_reorg", depth, txs)
                else:
                    snapshot = stack.anvil.call("evm_snapshot")
                    raws = signed_transfers(stack, new_txs)
                    for raw in raws:
                        stack.anvil.call("eth_sendRawTransaction", raw)
                    for _ in range(depth - len(raws)):
                        activity.block(count=2)
                    time.sleep(pause)  # let the follower and workers index the doomed blocks
                    stack.anvil.call("evm_revert", snapshot)
                    stack.anvil.mine(max(depth + longer, 0) or 1)
                    for raw in raws:  # mined again, same hashes, other blocks
                        stack.anvil.call("eth_sendRawTransaction", raw)
            reorgs_made += 1
            miner.running.clear()
            with miner.lock:  # the miner is idle now
                stack.wait_consistent(timeout=90)
                wait_until(lambda: stack.store.summary().outbox == 0, 30, "the outbox drained")
            check_stream_order(stack.events())

        scenario()

    assert reorgs_made >= 3
    assert stack.reorgs(), "no reorg reached the database"
