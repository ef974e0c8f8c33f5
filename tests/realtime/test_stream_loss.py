"""Stream entries that Redis lost before this server read them (a restart loses the
stream): the blocks are pushed from the database, in order, well before
BLOCK_GAP_TIMEOUT would skip them, and a price committed meanwhile reaches its room."""

from __future__ import annotations

import signal
from collections.abc import Callable

from chainpulse.devnet import RedisServer, wait_until
from tests.harness.events import Stream, block_event
from tests.harness.realtime import WAIT, Client, Server
from tests.harness.seeded import insert_blocks, insert_price

StartServer = Callable[..., Server]
Connect = Callable[..., Client]


def counted(server: Server, name: str) -> float:
    lines = server.get("/metrics").text.splitlines()
    return float(next(line.split()[-1] for line in lines if line.startswith(name)))


def test_what_the_stream_lost_is_pushed_from_the_database(
    start_server: StartServer, clients: Connect, redis_server: RedisServer, db_url: str
) -> None:
    insert_blocks(db_url, range(1, 11))
    server = start_server(BLOCK_GAP_TIMEOUT="60")  # a skip would come far too late
    client = clients(server)
    assert client.call("subscribe", {"channel": "price:ETH"}) == {
        "success": True,
        "channel": "price:ETH",
    }
    stream = Stream(redis_server.url)

    # 11 and 12 were announced and lost before the server read them; 13 arrives
    insert_blocks(db_url, [11, 12, 13])
    stream.append(block_event(13))
    client.wait_for("new-block", 3, timeout=WAIT)
    assert [b["number"] for b in client.of("new-block")] == [11, 12, 13]
    assert counted(server, "chainpulse_realtime_blocks_filled_total") == 2

    # Redis restarts empty; 14, 15 and a price are committed while it is away, their
    # entries lost with it: nothing more comes on the stream
    assert redis_server.process is not None
    redis_server.process.send_signal(signal.SIGKILL)
    redis_server.process.wait(10)
    insert_blocks(db_url, [14, 15])
    insert_price(db_url, "ETH", "3100.5", 15)
    redis_server.start()
    client.wait_for("new-block", 5, timeout=WAIT)
    assert [b["number"] for b in client.of("new-block")] == [11, 12, 13, 14, 15]
    wait_until(lambda: client.of("price-update"), WAIT, "the price committed meanwhile")
    [update] = client.of("price-update")
    assert update["priceExact"] == "3100.5" and "snapshot" not in update
    assert counted(server, "chainpulse_realtime_blocks_filled_total") == 4
    assert counted(server, "chainpulse_realtime_blocks_skipped_total") == 0
    stream.redis.close()
