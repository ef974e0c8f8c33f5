"""The wire contract against a real `chainpulse serve`, real Redis and real clients."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
import socketio
import sqlalchemy as sa

from chainpulse.devnet import wait_until
from indexer.events import BlockFinalized, BlockRef
from indexer.finality import Marks
from indexer.models import meta
from indexer.seen_head import record_head
from tests.harness.events import Stream, block_event, block_hash, price_event, reorg_event
from tests.harness.realtime import Client, Server
from tests.harness.seeded import CHAIN, insert_blocks, insert_price

StartServer = Callable[..., Server]
Connect = Callable[..., Client]


def numbers(client: Client) -> list[int]:
    return [b["number"] for b in client.of("new-block")]


def test_connected_ping_and_new_blocks_in_order_once(
    start_server: StartServer, clients: Connect, stream: Stream
) -> None:
    server = start_server()
    client = clients(server)
    connected = client.of("connected")[0]
    assert set(connected) == {"clientId", "serverTime"}
    assert connected["clientId"] == client.sio.get_sid("/realtime")
    assert isinstance(connected["serverTime"], int)
    client.emit("ping")
    pong = client.wait_for("pong")[0]
    assert set(pong) == {"timestamp"} and pong["timestamp"] >= connected["serverTime"]
    assert client.names()[0] == "connected"
    stream.append(block_event(10))
    client.wait_for("new-block")
    stream.append(block_event(13), block_event(12), block_event(12), block_event(11))
    # malformed entries are counted and skipped
    stream.redis.xadd(stream.key, {"type": "block.indexed", "id": "bad:1", "data": "{oops"})
    stream.redis.xadd(stream.key, {"type": "block.exploded", "id": "bad:2", "data": "{}"})
    stream.append(block_event(11), block_event(14))
    client.wait_for("new-block", 5)
    stream.append(block_event(15))
    client.wait_for("new-block", 6)
    assert numbers(client) == [10, 11, 12, 13, 14, 15]
    first = client.of("new-block")[0]
    assert set(first) == {
        "chainId",
        "number",
        "hash",
        "parentHash",
        "transactions",
        "blockTimestamp",
        "timestamp",
    }
    assert first["hash"] == block_hash(10) and first["parentHash"] == block_hash(9)
    # the stream's event named no chain (a producer from before chains): the primary's
    assert first["chainId"] == CHAIN
    assert first["blockTimestamp"] == 1_700_000_010 and first["transactions"] == 10 % 7
    metrics = server.get("/metrics").text
    assert 'chainpulse_realtime_stream_entries_total{outcome="malformed"} 2.0' in metrics
    assert 'chainpulse_realtime_stream_entries_total{outcome="duplicate"} 2.0' in metrics
    assert "chainpulse_realtime_direct_writes 0.0" not in metrics  # the fast path is used


def test_reorg_then_the_next_block_is_ancestor_plus_one(
    start_server: StartServer, clients: Connect, stream: Stream
) -> None:
    server = start_server()
    client = clients(server)
    stream.append(*(block_event(n) for n in range(20, 24)))
    client.wait_for("new-block", 4)
    # the new fork's first block arrives before the reorg event (parallel workers)
    stream.append(block_event(22, fork=1), reorg_event(21, 2), block_event(23, fork=1))
    stream.append(block_event(24, fork=1))
    client.wait_for("new-block", 7)
    names = [n for n in client.names() if n in ("new-block", "reorg")]
    assert names == ["new-block"] * 4 + ["reorg"] + ["new-block"] * 3
    reorg = client.of("reorg")[0]
    assert reorg["depth"] == 2 and reorg["commonAncestor"] == {
        "number": 21,
        "hash": block_hash(21),
    }
    assert [r["number"] for r in reorg["removed"]] == [22, 23]
    after = client.of("new-block")[4:]
    assert [b["number"] for b in after] == [22, 23, 24]
    assert after[0]["hash"] == block_hash(22, fork=1)


def test_backfill_is_not_pushed_and_a_gap_that_never_fills_is_given_up(
    start_server: StartServer, clients: Connect, stream: Stream
) -> None:
    server = start_server(PUSH_WINDOW="8", BLOCK_GAP_TIMEOUT="0.5")
    client = clients(server)
    stream.append(block_event(100), block_event(91, source="backfill"), block_event(92))
    stream.append(block_event(101))
    client.wait_for("new-block", 2)
    assert numbers(client) == [100, 101]
    stream.append(block_event(102), block_event(104), block_event(105))
    client.wait_for("new-block", 5)  # 104 and 105 after the gap timeout
    stream.append(block_event(103), block_event(106))
    client.wait_for("new-block", 6)
    assert numbers(client) == [100, 101, 102, 104, 105, 106]
    assert "chainpulse_realtime_blocks_skipped_total 1.0" in server.get("/metrics").text


def test_finality_marks_on_the_stream_reach_every_client(
    start_server: StartServer, clients: Connect, stream: Stream, db_url: str
) -> None:
    insert_blocks(db_url, range(1, 4))
    server = start_server()
    first, second = clients(server), clients(server)
    stream.append(BlockFinalized(1, block_hash(1), BlockRef(2, block_hash(2)), CHAIN))
    expected = {
        "chainId": CHAIN,
        "number": 1,
        "hash": block_hash(1),
        "safe": {"number": 2, "hash": block_hash(2)},
    }
    assert first.wait_for("finalized")[0] == expected
    assert second.wait_for("finalized")[0] == expected


def test_price_snapshot_on_subscribe_then_live_updates_to_the_room_only(
    start_server: StartServer, clients: Connect, stream: Stream, db_url: str
) -> None:
    insert_price(db_url, "BTC", "65000.123456789012345678", 7)
    server = start_server()
    subscriber, other = clients(server), clients(server)
    ack = subscriber.call("subscribe", {"channel": "price:BTC"})
    assert ack == {"success": True, "channel": "price:BTC"}
    snapshot = subscriber.wait_for("price-update")[0]
    assert snapshot["snapshot"] is True
    assert snapshot["priceExact"] == "65000.123456789012345678"
    assert snapshot["price"] == 65000.123456789012345678
    assert snapshot["token"] == "BTC" and snapshot["blockNumber"] == 7
    stream.append(price_event("BTC", "65001.5", 8), price_event("ETH", "3000", 8))
    stream.append(block_event(8))
    live = subscriber.wait_for("price-update", 2)[1]
    assert set(live) == {
        "chainId",
        "token",
        "price",
        "priceExact",
        "blockNumber",
        "source",
        "timestamp",
        "stale",
        "staleReason",
    }
    assert live["stale"] is False and live["staleReason"] is None
    assert live["price"] == 65001.5 and live["priceExact"] == "65001.5"
    other.wait_for("new-block")
    subscriber.wait_for("new-block")
    assert other.of("price-update") == []
    assert len(subscriber.of("price-update")) == 2  # no ETH: not subscribed
    assert subscriber.call("unsubscribe", {"channel": "price:BTC"}) == {"success": True}
    stream.append(price_event("BTC", "1", 9), block_event(9))
    subscriber.wait_for("new-block", 2)
    assert len(subscriber.of("price-update")) == 2


def test_http_endpoints_and_origin_policy(
    start_server: StartServer, clients: Connect, db_url: str
) -> None:
    insert_blocks(db_url, range(1, 6))
    insert_price(db_url, "ETH", "3000.5", 4)
    insert_price(db_url, "ETH", "3001", 5)
    insert_price(db_url, "DAI", "1", None)
    server = start_server(CORS_ORIGIN="https://app.example")
    # the Socket.IO endpoint applies the same origin policy (the client sends its own)
    with pytest.raises(socketio.exceptions.ConnectionError):
        clients(server)
    assert server.get("/healthz").json() == {"status": "ok"}
    ready = server.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "redis": "ok",
        "database": "ok",
        "indexing": "ok",
        "pubsub": "ok",
        "stream": "ok",
    }
    latest = server.get("/api/blocks?limit=2").json()
    assert [b["number"] for b in latest] == [5, 4]
    assert latest[0]["hash"] == block_hash(5) and latest[0]["baseFeePerGas"] == str(10**9)
    assert server.get("/api/blocks/3").json()["parentHash"] == block_hash(2)
    assert server.get("/api/blocks/99").status_code == 404
    assert server.get("/api/blocks?limit=0").status_code == 400
    assert server.get("/api/blocks/abc").status_code == 400
    # digits int() refuses, and heights beyond the BIGINT range: refused or absent, never 503
    for path, status in [
        ("/api/blocks?limit=%C2%B2", 400),
        ("/api/blocks/%C2%B2", 400),
        ("/api/blocks/9223372036854775808", 404),
        ("/api/blocks/99999999999999999999", 404),
        ("/api/blocks/999999999999999999999", 400),
    ]:
        reply = server.get(path)
        assert reply.status_code == status, (path, reply.status_code, reply.text)
    assert "Traceback" not in server.log()
    got = server.get("/api/prices", headers={"Origin": "https://app.example"})
    assert got.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert [(p["token"], p["priceExact"]) for p in got.json()] == [("DAI", "1"), ("ETH", "3001")]
    other = server.get("/api/prices", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
    metrics = server.get("/metrics").text
    for name in (
        "chainpulse_realtime_connected_clients",
        "chainpulse_realtime_messages_pushed_total",
        "chainpulse_realtime_refusals_total",
        "chainpulse_realtime_stream_lag_seconds",
        "chainpulse_realtime_pubsub_healthy 1.0",
    ):
        assert name in metrics
    page = server.get("/")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert '<script src="/static/vendor/socket.io.min.js">' in page.text
    script = server.get("/static/vendor/socket.io.min.js")
    assert script.status_code == 200 and "io" in script.text[:2000]
    assert server.get("/static/app.js").headers["Content-Type"].startswith("application/javascript")
    assert server.get("/static/app.css").status_code == 200
    for missing in ("/nope", "/static/../http.py", "/static/", "/static/vendor"):
        assert server.get(missing).status_code == 404, missing
    status = server.get("/api/status").json()
    assert status == {
        "chainId": CHAIN,
        "indexedBlock": 5,
        "nodeHead": None,
        "lag": None,
        "indexing": "ok",
    }
    # one chain: the primary, named by its id or by default
    assert server.get(f"/api/status?chain={CHAIN}").json() == status
    [chain] = server.get("/api/chains").json()
    assert chain == {
        "chainId": CHAIN,
        "name": "main",
        "primary": True,
        "nodeHead": None,
        "indexedBlock": 5,
        "lag": None,
        "indexing": "ok",
        "safe": None,  # no follower announced the marks yet
        "finalized": None,
    }
    marks = Marks(safe=BlockRef(4, block_hash(4)), finalized=BlockRef(2, block_hash(2)))
    with sa.create_engine(db_url).begin() as conn:
        conn.execute(meta.insert().values(chain_id=CHAIN, key="finality", value=marks.to_json()))
    [chain] = server.get("/api/chains").json()
    assert (chain["safe"], chain["finalized"]) == (
        {"number": 4, "hash": block_hash(4)},
        {"number": 2, "hash": block_hash(2)},
    )
    assert [b["chainId"] for b in server.get(f"/api/blocks?chain={CHAIN}").json()] == [CHAIN] * 5
    for path in ("/api/blocks", "/api/blocks/3", "/api/status"):
        unknown = server.get(f"{path}?chain=8453")
        assert unknown.status_code == 404, path
        assert unknown.json() == {"error": f"no chain 8453: this deployment indexes {CHAIN}"}
        assert server.get(f"{path}?chain=base").status_code == 400, path


def test_readyz_reports_an_indexing_halt(start_server: StartServer, db_url: str) -> None:
    server = start_server()
    assert server.get("/readyz").status_code == 200
    halt = {"reason": "reorg deeper than MAX_REORG_DEPTH (64)", "floor": 1, "orphans": [2]}
    with sa.create_engine(db_url).begin() as conn:
        conn.execute(meta.insert().values(chain_id=CHAIN, key="halted", value=json.dumps(halt)))
    ready = server.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["indexing"] == "halted: reorg deeper than MAX_REORG_DEPTH (64)"


@pytest.mark.parametrize("required", [False, True])
def test_readyz_and_metrics_report_indexing_that_stopped_while_the_node_went_on(
    start_server: StartServer, db_url: str, redis_url: str, required: bool
) -> None:
    insert_blocks(db_url, range(1, 6))
    client = redis.Redis.from_url(redis_url)
    record_head(client, 6)  # what the follower saw
    server = start_server(INDEXING_STALL_TIMEOUT="1", READY_REQUIRES_INDEXING=str(required))
    assert server.get("/readyz").json()["indexing"] == "ok"
    time.sleep(1.2)
    assert server.get("/readyz").json()["indexing"] == "ok"  # the node did not move either
    record_head(client, 9)
    ready = server.get("/readyz")
    assert ready.json()["indexing"].startswith(
        "stalled: indexed up to 5 while the node is at 9, no progress for"
    ), ready.json()
    assert ready.status_code == (503 if required else 200)
    metrics = server.get("/metrics").text
    assert "chainpulse_realtime_indexing_stalled 1.0" in metrics
    assert "chainpulse_realtime_indexing_lag_blocks 4.0" in metrics
    insert_blocks(db_url, range(6, 10))  # indexing resumes
    ready = server.get("/readyz")
    assert ready.status_code == 200 and ready.json()["indexing"] == "ok"
    assert "chainpulse_realtime_indexing_stalled 0.0" in server.get("/metrics").text
    client.close()


def test_a_token_without_a_price_is_read_once_until_a_price_event_arrives(
    start_server: StartServer, clients: Connect, stream: Stream, db_url: str
) -> None:
    insert_blocks(db_url, range(1, 201))  # the server starts at height 200
    server = start_server()
    first = clients(server)
    assert first.call("subscribe", {"channel": "price:NEWT"})["success"] is True
    # A historical price (far below the head) is not pushed, but the database now has
    # one, so the "no price" the first subscribe remembered must be forgotten.
    insert_price(db_url, "NEWT", "1.5", 5)
    stream.append(price_event("NEWT", "1.5", 5))
    snapshots: list[Any] = []

    def later_subscriber_gets_the_snapshot() -> bool:
        late = clients(server)
        late.call("subscribe", {"channel": "price:NEWT"})
        snapshots.extend(late.wait_for("price-update", timeout=2))
        return bool(snapshots)

    wait_until(later_subscriber_gets_the_snapshot, 30, "a snapshot for a later subscriber")
    assert snapshots[0]["snapshot"] is True and snapshots[0]["priceExact"] == "1.5"
    assert first.of("price-update") == []  # history is not pushed to subscribers


def test_a_polling_client_takes_a_burst_of_blocks_in_small_responses(
    start_server: StartServer, clients: Connect, stream: Stream
) -> None:
    """python-engineio clients refuse a polling response of more than 16 packets."""
    server = start_server()
    client = clients(server, transports=["polling"])
    stream.append(*(block_event(n) for n in range(1, 101)))
    client.wait_for("new-block", 100)
    assert numbers(client) == list(range(1, 101))
    assert client.sio.connected


def test_prices_older_than_the_last_pushed_are_not_pushed_but_restores_are(
    start_server: StartServer, clients: Connect, stream: Stream
) -> None:
    from dataclasses import replace

    server = start_server(PUSH_WINDOW="4")
    client = clients(server)
    client.call("subscribe", {"channel": "price:BTC"})
    stream.append(block_event(20), price_event("BTC", "9", 20))
    client.wait_for("price-update")
    # a worker that committed block 19 after block 20: older, not pushed
    stream.append(price_event("BTC", "8", 19), price_event("BTC", "10", 21), block_event(21))
    client.wait_for("price-update", 2)
    # a reorg brings back the price of block 3: older and outside the push window, but
    # named by its reorg, so it is pushed; then one that left no price at all
    restore = replace(price_event("BTC", "7", 3), reorgId="block.reorged:20:0xa:0xb")
    gone = replace(price_event("BTC", "1", None), price=None, reorgId="block.reorged:2:0xc:0xd")
    stream.append(restore, gone)
    client.wait_for("price-update", 4)
    updates = client.of("price-update")
    assert [(u["priceExact"], u["blockNumber"]) for u in updates] == [
        ("9", 20), ("10", 21), ("7", 3), (None, None),
    ]  # fmt: skip
    assert updates[-1]["price"] is None


def test_a_price_of_a_block_a_reorg_removed_is_not_pushed(
    start_server: StartServer, clients: Connect, stream: Stream
) -> None:
    """A worker that read block 22 just before a reorg commits it after the reorg was
    announced: its price (named by the removed block's hash) is not pushed; the price
    of the new block 22 is."""
    from dataclasses import replace

    server = start_server()
    client = clients(server)
    client.call("subscribe", {"channel": "price:BTC"})
    stream.append(*(block_event(n) for n in range(20, 23)))
    client.wait_for("new-block", 3)
    stream.append(reorg_event(21, 1), block_event(22, fork=1))
    late = replace(price_event("BTC", "66", 22), blockHash=block_hash(22, 0))
    canonical = replace(price_event("BTC", "55", 22), blockHash=block_hash(22, 1))
    stream.append(late, canonical, block_event(23, fork=1))
    client.wait_for("new-block", 5)
    client.wait_for("price-update")
    time.sleep(0.5)  # the late price, had it been pushed, would have come first
    assert [u["priceExact"] for u in client.of("price-update")] == ["55"]


def test_price_history_and_candles_endpoints(start_server: StartServer, db_url: str) -> None:
    for number, price in ((60, "10"), (70, "9.5"), (130, "11"), (150, "10.25")):
        insert_price(db_url, "ETH", price, number)  # block n is stamped n seconds
    server = start_server()
    history = server.get("/api/prices/ETH?limit=3").json()
    assert [(h["priceExact"], h["blockNumber"]) for h in history] == [
        ("10.25", 150), ("11", 130), ("9.5", 70),
    ]  # fmt: skip
    candles = server.get("/api/prices/ETH/candles?interval=1m").json()
    assert candles == [
        {
            "start": 120_000,
            "open": "11",
            "high": "11",
            "low": "10.25",
            "close": "10.25",
            "count": 2,
        },
        {"start": 60_000, "open": "10", "high": "10", "low": "9.5", "close": "9.5", "count": 2},
    ]
    assert server.get("/api/prices/ETH/candles?interval=1h&limit=1").json()[0]["count"] == 4
    assert server.get("/api/prices/NONE").json() == []
    for bad, status in (
        ("/api/prices/ETH?limit=0", 400),
        ("/api/prices/ETH?limit=%C2%B2", 400),
        ("/api/prices/ETH/candles?interval=2m", 400),
        ("/api/prices/ETH/candles?limit=1001", 400),
        ("/api/prices/ETH/other", 404),
        ("/api/prices/" + "X" * 33, 404),
    ):
        assert server.get(bad).status_code == status, bad


def test_metrics_count_clients_pushes_and_the_stream_lag(
    start_server: StartServer, clients: Connect, stream: Stream, db_url: str
) -> None:
    from indexer.events import to_fields

    server = start_server()
    a, b = clients(server), clients(server)

    def metric(line: str) -> float | None:
        for text in server.get("/metrics").text.splitlines():
            if text.startswith(line + " "):
                return float(text.split()[-1])
        return None

    assert metric("chainpulse_realtime_connected_clients") == 2
    assert metric("chainpulse_realtime_stream_lag_seconds") == 0
    # an entry written 5 s ago (its id is its time): handled, the lag says its age
    insert_blocks(db_url, [1])
    old = int(time.time() * 1000) - 5_000
    stream.redis.xadd(stream.key, to_fields(block_event(1)), id=f"{old}-0")  # type: ignore[arg-type]
    a.wait_for("new-block")
    b.wait_for("new-block")
    assert metric('chainpulse_realtime_messages_pushed_total{event="new-block"}') == 2
    lag = metric("chainpulse_realtime_stream_lag_seconds")
    assert lag is not None and 5 <= lag < 60
    b.close()
    wait_until(lambda: metric("chainpulse_realtime_connected_clients") == 1, 10, "one client")
