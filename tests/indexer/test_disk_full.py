"""A full disk under SQLite (`PRAGMA max_page_count` gives SQLITE_FULL without mounting
anything): the job fails with a clear, retryable error, nothing is half-written and
no event is announced; once space returns, indexing resumes where it stopped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from chainpulse.devnet import Activity, Anvil
from indexer import models as m
from indexer.errors import DatabaseBusy, RetryableError
from indexer.pipeline import Indexer
from indexer.schema import upgrade
from tests.harness.indexer import build_indexer, close_indexer
from tests.indexer.test_idempotency import counts, stream_ids


@pytest.fixture
def indexer(anvil: Anvil, tmp_path: Path, redis_url: str) -> Iterator[Indexer]:
    url = f"sqlite:///{tmp_path}/chainpulse.db"
    upgrade(url)
    built = build_indexer(anvil.url, url, redis_url)
    yield built
    close_indexer(built)


def test_a_full_disk_fails_the_job_cleanly_and_indexing_resumes(
    anvil: Anvil, indexer: Indexer, redis_url: str
) -> None:
    activity = Activity(anvil)
    for _ in range(4):
        activity.block(count=20, log_share=0.5)
    head = anvil.head()
    indexer.index(1, 1, "backfill")
    before = counts(indexer)
    full = {"on": True}

    @event.listens_for(indexer.store.engine, "connect")
    def no_room(dbapi_connection: Any, _: Any) -> None:
        if full["on"]:
            cursor = dbapi_connection.cursor()
            pages = cursor.execute("PRAGMA page_count").fetchone()[0]
            cursor.execute(f"PRAGMA max_page_count = {pages}")
            cursor.close()

    indexer.store.engine.dispose()  # new connections, with the limit
    with pytest.raises(DatabaseBusy, match="database or disk is full") as failed:
        indexer.index(2, head, "backfill")
    assert isinstance(failed.value, RetryableError)  # the job is retried, not failed
    assert "\n" not in str(failed.value)
    assert counts(indexer) == before  # nothing half-written
    assert len(stream_ids(redis_url)) == 1  # nothing announced

    full["on"] = False  # space returns
    indexer.store.engine.dispose()
    indexer.index(2, head, "backfill")
    with indexer.store.engine.connect() as conn:
        stored = conn.execute(sa.select(m.blocks.c.number).order_by(m.blocks.c.number))
        assert [n for (n,) in stored] == list(range(1, head + 1))
        transactions = conn.execute(sa.select(sa.func.count()).select_from(m.transactions))
        on_node = sum(
            len(anvil.call("eth_getBlockByNumber", hex(n), False)["transactions"])
            for n in range(1, head + 1)
        )
        assert transactions.scalar_one() == on_node
    assert len(stream_ids(redis_url)) == head
