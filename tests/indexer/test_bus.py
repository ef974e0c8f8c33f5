"""At-least-once events: the outbox keeps what Redis missed, the relay appends it once."""

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from chainpulse.devnet import Activity, Anvil, RedisServer
from indexer import outbox
from indexer.bus import BusUnavailable, EventBus
from indexer.config import STREAM_KEY
from indexer.events import BlockIndexed, Entry, Pending, from_fields
from indexer.pipeline import Indexer
from tests.harness.indexer import build_indexer, close_indexer


@pytest.fixture
def indexer(anvil: Anvil, migrated_url: str, redis_url: str) -> Iterator[Indexer]:
    Activity(anvil).block(count=3)
    anvil.mine(5)
    built = build_indexer(anvil.url, migrated_url, redis_url)
    yield built
    close_indexer(built)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url, decode_responses=True)
    yield c
    c.close()


def index_while_redis_is_down(
    indexer: Indexer, redis_server: RedisServer, first: int, last: int
) -> list[BlockIndexed]:
    """Index with Redis stopped (the events stay in the outbox), then start it again."""
    redis_server.stop()
    try:
        return indexer.index(first, last, "backfill")
    finally:
        redis_server.start()


def entries(client: redis.Redis) -> list[dict[str, Any]]:
    return [fields for _, fields in client.xrange(STREAM_KEY)]


def test_entries_follow_the_contract(anvil: Anvil, indexer: Indexer, client: redis.Redis) -> None:
    [event] = indexer.index(2, 2, "backfill")
    [fields] = entries(client)
    assert set(fields) == {"type", "id", "data"}
    block = anvil.block(2)
    assert fields["type"] == "block.indexed"
    assert fields["id"] == f"block.indexed:{anvil.chain_id}:2:{block['hash']}"
    assert json.loads(fields["data"]) == {
        "chainId": anvil.chain_id,
        "blockNumber": 2,
        "blockHash": block["hash"],
        "parentHash": block["parentHash"],
        "blockTimestamp": int(block["timestamp"], 16),
        "transactions": len(block["transactions"]),
        "source": "backfill",
        "gasUsed": int(block["gasUsed"], 16),
    }
    assert from_fields(fields) == event
    assert indexer.store.pending_outbox() == []


def test_commit_with_redis_down_keeps_the_event_in_the_outbox(
    indexer: Indexer, redis_server: RedisServer, redis_url: str
) -> None:
    redis_server.stop()
    try:
        [event] = indexer.index(3, 3, "backfill")  # no error: the block counts as indexed
        assert indexer.store.stored_hashes(3, 3) == {3: event.blockHash}
        [pending] = indexer.store.pending_outbox()
        assert pending.entry.id == event.id
        with pytest.raises(BusUnavailable, match="Redis at redis://127.0.0.1"):
            outbox.relay(indexer.store, indexer.bus)
        assert len(indexer.store.pending_outbox()) == 1
    finally:
        redis_server.start()

    assert indexer.relay() == 1
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        [fields] = entries(client)
        assert fields["id"] == event.id
        assert from_fields(fields) == event
        assert indexer.store.pending_outbox() == []
        assert indexer.relay() == 0
        assert len(entries(client)) == 1
    finally:
        client.close()


def test_relay_that_died_before_deleting_does_not_duplicate(
    indexer: Indexer, redis_server: RedisServer, client: redis.Redis
) -> None:
    events = index_while_redis_is_down(indexer, redis_server, 1, 4)
    rows = indexer.store.pending_outbox()
    assert [r.entry.id for r in rows] == [e.id for e in events]
    # A relay appends the first two rows, then its process dies before the delete.
    for row in rows[:2]:
        assert indexer.bus.append([row]) == 1

    assert indexer.relay() == 4

    assert [f["id"] for f in entries(client)] == [e.id for e in events]
    assert indexer.store.pending_outbox() == []


def test_two_relays_racing_append_each_event_once(
    anvil: Anvil, indexer: Indexer, redis_server: RedisServer, redis_url: str, client: redis.Redis
) -> None:
    events = index_while_redis_is_down(indexer, redis_server, 1, anvil.head())
    assert len(indexer.store.pending_outbox()) == len(events) == anvil.head()

    buses = [EventBus.from_url(redis_url, STREAM_KEY, 1000) for _ in range(2)]
    barrier = threading.Barrier(2)
    errors: list[Exception] = []

    def relay(bus: EventBus) -> None:
        barrier.wait()
        try:
            outbox.relay(indexer.store, bus, batch=2)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=relay, args=(b,)) for b in buses]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        for b in buses:
            b.client.close()
    assert errors == []
    ids = [f["id"] for f in entries(client)]
    assert sorted(ids) == sorted(e.id for e in events)
    assert indexer.store.pending_outbox() == []


def test_stream_is_capped_near_its_maximum(redis_url: str, client: redis.Redis) -> None:
    maxlen = 50
    bus = EventBus.from_url(redis_url, STREAM_KEY, maxlen)
    try:
        for n in range(600):
            event = BlockIndexed(n, f"0x{n:064x}", f"0x{n:064x}", 0, 0, "backfill")
            assert bus.append([Pending(n, f"delivery-{n}", Entry(event.type, event.id, "{}"))])
    finally:
        bus.client.close()
    # Trimming is approximate: Redis drops whole stream nodes of up to this many entries.
    node_size = int(client.config_get("stream-node-max-entries")["stream-node-max-entries"])
    length = client.xlen(STREAM_KEY)
    assert maxlen <= length <= maxlen + node_size
    last = client.xrevrange(STREAM_KEY, count=1)[0][1]
    assert last["id"] == f"block.indexed:-:599:0x{599:064x}"


def test_a_failed_append_is_not_marked_delivered(indexer: Indexer, client: redis.Redis) -> None:
    """If XADD fails inside the append, the event must stay deliverable."""
    client.set(STREAM_KEY, "not a stream")  # XADD now fails with WRONGTYPE
    [event] = indexer.index(2, 2, "backfill")
    with pytest.raises(BusUnavailable, match="WRONGTYPE"):
        outbox.relay(indexer.store, indexer.bus)
    assert len(indexer.store.pending_outbox()) == 1

    client.delete(STREAM_KEY)
    assert indexer.relay() == 1

    assert [f["id"] for f in entries(client)] == [event.id]


def test_events_left_behind_go_out_before_newer_ones(
    indexer: Indexer, redis_server: RedisServer, client: redis.Redis
) -> None:
    older = index_while_redis_is_down(indexer, redis_server, 1, 2)
    newer = indexer.index(3, 4, "backfill")

    assert [f["id"] for f in entries(client)] == [e.id for e in older + newer]
    assert indexer.store.pending_outbox() == []


def test_one_append_call_skips_delivered_rows_and_keeps_order(
    redis_url: str, client: redis.Redis
) -> None:
    bus = EventBus.from_url(redis_url, STREAM_KEY, 1000)
    rows = [Pending(n, f"d{n}", Entry("block.indexed", f"e{n}", "{}")) for n in range(5)]
    try:
        assert bus.append(rows[1:3]) == 2
        assert bus.append(rows) == 3
        assert bus.append(rows) == 0
    finally:
        bus.client.close()
    assert [f["id"] for f in entries(client)] == ["e1", "e2", "e0", "e3", "e4"]
