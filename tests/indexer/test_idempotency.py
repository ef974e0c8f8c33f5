"""Indexing is idempotent: twice, or by two indexers at once, leaves one copy."""

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from chainpulse.devnet import Activity, Anvil
from indexer import models as m
from indexer.config import STREAM_KEY
from indexer.pipeline import Indexer
from tests.harness.indexer import build_indexer, close_indexer, counts, stream_ids


@pytest.fixture
def chain(anvil: Anvil) -> int:
    activity = Activity(anvil)
    for _ in range(4):
        activity.block(count=4, log_share=0.5, reverts=1, deploys=1)
    return anvil.head()


@pytest.fixture
def indexer(anvil: Anvil, migrated_url: str, redis_url: str) -> Iterator[Indexer]:
    built = build_indexer(anvil.url, migrated_url, redis_url)
    yield built
    close_indexer(built)


def indexed_at(indexer: Indexer, number: int) -> datetime:
    with indexer.store.engine.connect() as conn:
        value: datetime = conn.execute(
            sa.select(m.blocks.c.indexed_at).where(m.blocks.c.number == number)
        ).scalar_one()
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def test_indexing_twice_leaves_one_copy_and_one_event(
    anvil: Anvil, chain: int, indexer: Indexer, redis_url: str
) -> None:
    first = indexer.index(1, chain, "backfill")
    before = counts(indexer)
    assert len(first) == chain
    assert before["transactions"] > 0 and before["logs"] > 0

    assert indexer.index(1, chain, "backfill") == []
    assert indexer.index(2, 3, "backfill") == []

    assert counts(indexer) == before
    ids = stream_ids(redis_url)
    assert len(ids) == chain == len(set(ids))


def test_two_indexers_at_once_leave_one_copy(
    anvil: Anvil, chain: int, migrated_url: str, redis_url: str
) -> None:
    indexers = [build_indexer(anvil.url, migrated_url, redis_url) for _ in range(2)]
    barrier = threading.Barrier(2)
    results: list[Any] = [None, None]

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = indexers[i].index(1, chain, "backfill")
        except Exception as exc:  # reported below
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(isinstance(r, Exception) for r in results), results
        # Exactly one of them wrote each block; the other found it stored.
        written = sorted(e.blockNumber for r in results for e in r)
        assert written == list(range(1, chain + 1))
        node_txs = [
            (n, len(anvil.block(n)["transactions"]))
            for n in range(1, chain + 1)
            if anvil.block(n)["transactions"]
        ]
        assert counts(indexers[0])["per_height"] == node_txs
        assert counts(indexers[0])["blocks"] == chain
        ids = stream_ids(redis_url)
        assert sorted(ids) == sorted(set(ids)) and len(ids) == chain
    finally:
        for built in indexers:
            close_indexer(built)


def test_force_reindexes_with_the_same_event_id(
    anvil: Anvil, chain: int, indexer: Indexer, redis_url: str
) -> None:
    [event] = indexer.index(chain, chain, "backfill")
    before = counts(indexer)
    stamp = indexed_at(indexer, chain)

    [again] = indexer.index(chain, chain, "backfill", force=True)

    assert again == event
    assert indexed_at(indexer, chain) > stamp
    assert counts(indexer) == before
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        entries = [fields for _, fields in client.xrange(STREAM_KEY)]
    finally:
        client.close()
    assert [e["id"] for e in entries] == [event.id, event.id]
    assert json.loads(entries[0]["data"]) == json.loads(entries[1]["data"])
