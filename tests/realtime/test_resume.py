"""Resume with `lastBlock`: connected, then the missed blocks from the database, then
live ones, with no gap and no duplicate."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from tests.harness.events import Stream, block_event, block_hash, reorg_event
from tests.harness.realtime import Client, Server
from tests.harness.seeded import insert_blocks, insert_reorg

StartServer = Callable[..., Server]
Connect = Callable[..., Client]


def numbers(client: Client) -> list[int]:
    return [b["number"] for b in client.of("new-block")]


def test_catch_up_then_live_without_gap_or_duplicate(
    start_server: StartServer, clients: Connect, stream: Stream, db_url: str
) -> None:
    insert_blocks(db_url, range(1, 301))
    server = start_server()
    simple = clients(server, auth={"lastBlock": 290})
    simple.wait_for("new-block", 10)
    assert simple.names()[:11] == ["connected"] + ["new-block"] * 10
    first = simple.of("new-block")[0]
    assert first["number"] == 291 and first["hash"] == block_hash(291)
    assert first["parentHash"] == block_hash(290) and first["blockTimestamp"] == 1_700_000_291

    # live blocks keep coming while a client catches up on 300 blocks
    def produce() -> None:
        for n in range(301, 341):
            insert_blocks(db_url, [n])
            stream.append(block_event(n))
            time.sleep(0.005)

    producer = threading.Thread(target=produce)
    producer.start()
    resuming = clients(server, auth={"lastBlock": 0})
    producer.join()
    resuming.wait_for("new-block", 340)
    simple.wait_for("new-block", 50)
    assert numbers(resuming) == list(range(1, 341))
    assert numbers(simple) == list(range(291, 341))

    # a client ahead of this server (it came from a faster process) waits for its height
    ahead = clients(server, auth={"lastBlock": 342})
    stream.append(block_event(341), block_event(342), block_event(343))
    simple.wait_for("new-block", 53)
    ahead.wait_for("new-block")
    assert numbers(ahead) == [343]


def test_resume_window_stale_hash_and_bad_input(
    start_server: StartServer, clients: Connect, stream: Stream, db_url: str
) -> None:
    insert_blocks(db_url, range(1, 51))
    recorded = reorg_event(44, 3, old_fork=2, new_fork=0)
    insert_reorg(db_url, recorded)
    server = start_server(RESUME_WINDOW="10")

    too_far = clients(server, auth={"lastBlock": 5})
    assert too_far.wait_for("exception")[0]["message"] == "Resume window exceeded"

    forked = clients(server, auth={"lastBlock": 47, "lastBlockHash": block_hash(47, fork=2)})
    forked.wait_for("new-block", 6)
    assert forked.names()[:2] == ["connected", "reorg"]
    reorg = forked.of("reorg")[0]
    assert reorg["commonAncestor"] == {"number": 44, "hash": block_hash(44, 2)}
    assert reorg["depth"] == 3
    assert numbers(forked) == [45, 46, 47, 48, 49, 50]

    unknown_fork = clients(server, auth={"lastBlock": 48, "lastBlockHash": block_hash(48, 9)})
    unknown_fork.wait_for("new-block", 3)
    assert unknown_fork.of("reorg")[0]["commonAncestor"] == {"number": 47, "hash": block_hash(47)}
    assert numbers(unknown_fork) == [48, 49, 50]

    canonical = clients(server, auth={"lastBlock": 49, "lastBlockHash": block_hash(49)})
    bad = clients(server, auth={"lastBlock": "forty"})
    assert bad.wait_for("exception")[0]["message"].startswith("Invalid payload")

    stream.append(block_event(51))
    for client in (too_far, forked, unknown_fork, canonical, bad):
        client.wait_for("new-block", 1)
    assert numbers(too_far) == [51]
    assert numbers(canonical) == [50, 51] and canonical.of("reorg") == []
    assert numbers(bad) == [51]
    assert numbers(forked)[-1] == 51
