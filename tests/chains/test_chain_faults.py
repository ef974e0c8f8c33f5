"""Faults of one chain among two: its node frozen with its jobs in flight, and a worker
killed while jobs of both chains run. The other chain carries on; nothing is lost."""

from __future__ import annotations

import time
from pathlib import Path

from chainpulse.devnet import wait_until
from tests.chains.conftest import OTHER, PRIMARY, Chains
from tests.harness.jsclient import JsClient

FREEZE = 25.0  # seconds the other chain's node is stopped
BURST = 1000  # blocks it mines just before: backfill jobs that wait on the frozen node


def test_a_frozen_node_holds_up_its_own_chain_only(chains: Chains, tmp_path: Path) -> None:
    chains.mine(PRIMARY)
    chains.mine(OTHER)
    chains.wait_indexed()
    client = JsClient(chains.server.url, [], tmp_path, [{"channel": f"blocks:{OTHER}"}])
    try:
        client.wait(lambda e, d: e == "ack", 20, "the subscription")
        other = chains.anvils[OTHER]
        other.call("anvil_mine", hex(BURST))
        # the follower sends them out as jobs: more than the worker has processes (2),
        # and too many to be done before the freeze
        wait_until(lambda: chains.queued() > 2, 30, "the burst's jobs on the queue")
        frozen_at = time.monotonic()
        with other.frozen():
            # every job of the frozen chain waits ETH_RPC_TIMEOUT (3 s here) per attempt:
            # without CHAIN_JOB_SLOTS they would hold both worker processes
            for _ in range(5):
                chains.mine(PRIMARY)
                time.sleep(1)
            head = chains.anvils[PRIMARY].head()
            client.wait(
                lambda e, d: e == "new-block" and (d["chainId"], d["number"]) == (PRIMARY, head),
                FREEZE - (time.monotonic() - frozen_at) - 2,
                "the primary's blocks while the other chain is frozen",
            )
            time.sleep(max(0.0, FREEZE - (time.monotonic() - frozen_at)))
        chains.mine(OTHER)
        chains.wait_indexed(timeout=120)  # the frozen chain catches up, nothing lost
        top = other.head()
        client.wait(
            lambda e, d: e == "new-block" and (d["chainId"], d["number"]) == (OTHER, top),
            60,
            "the other chain's blocks again",
        )
        for chain in (PRIMARY, OTHER):
            seen = [b["number"] for b in client.of("new-block") if b["chainId"] == chain]
            assert len(seen) == len(set(seen)), (chain, seen)  # no height twice
    finally:
        client.close()


def test_a_worker_killed_with_jobs_of_two_chains_in_flight_loses_nothing(
    chains: Chains,
) -> None:
    chains.mine(PRIMARY)
    chains.mine(OTHER)
    chains.wait_indexed()
    for chain in (PRIMARY, OTHER):
        chains.activity[chain].block(count=5, log_share=1.0)
        chains.anvils[chain].call("anvil_mine", hex(60))  # backfill jobs for both chains
    wait_until(lambda: chains.queued() > 0 or chains.running(), 20, "jobs of both chains")
    chains.workers[0].kill()
    chains.start_worker()
    chains.wait_indexed(timeout=120)
