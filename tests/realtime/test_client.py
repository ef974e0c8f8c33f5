"""`realtime.client.RealtimeClient` against a server that restarts under it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import jwt
import sqlalchemy as sa

from chainpulse.devnet import wait_until
from indexer import models
from realtime.client import RealtimeClient
from tests.harness.events import Stream, block_event, price_event, reorg_event
from tests.harness.realtime import SECRET, WAIT, Server
from tests.harness.seeded import insert_blocks, insert_price

StartServer = Callable[..., Server]


def test_reconnects_resumes_and_resubscribes(
    start_server: StartServer, stream: Stream, db_url: str
) -> None:
    server = start_server()
    blocks: list[int] = []
    prices: list[dict[str, Any]] = []
    reorgs: list[dict[str, Any]] = []
    lock = threading.Lock()

    def on_block(data: dict[str, Any]) -> None:
        with lock:
            blocks.append(data["number"])

    client = RealtimeClient(
        server.url,
        token=lambda: jwt.encode(
            {"sub": "py", "exp": int(time.time()) + 600}, SECRET, algorithm="HS256"
        ),
        on_new_block=on_block,
        on_price_update=prices.append,
        on_reorg=reorgs.append,
        reconnection_delay=0.2,
        reconnection_delay_max=0.5,
    )
    client.connect()
    client.subscribe_to_prices(["ETH"])
    insert_blocks(db_url, range(1, 4))
    stream.append(block_event(1), block_event(2), block_event(3), price_event("ETH", "10", 3))
    wait_until(lambda: len(prices) == 1 and len(blocks) == 3, WAIT, "blocks and a price")
    stream.append(reorg_event(2, 1))
    wait_until(lambda: len(reorgs) == 1, WAIT, "the reorg")
    assert client.last_block == 2

    server.stop()  # blocks 3..6 are indexed while the client is away
    with sa.create_engine(db_url).begin() as conn:
        conn.execute(sa.delete(models.blocks).where(models.blocks.c.number == 3))
    insert_blocks(db_url, [3], fork=1)
    insert_blocks(db_url, range(4, 7))
    insert_price(db_url, "ETH", "11", 6)
    server.start()
    wait_until(lambda: len(blocks) == 7, WAIT * 2, "the resumed blocks")
    assert blocks == [1, 2, 3, 3, 4, 5, 6]
    wait_until(lambda: len(prices) == 2, WAIT, "the snapshot after resubscribing")
    assert prices[1]["snapshot"] is True and prices[1]["priceExact"] == "11"
    assert client.last_block == 6 and client.connected
    client.disconnect()
