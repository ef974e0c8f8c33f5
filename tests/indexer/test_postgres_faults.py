"""PostgreSQL connections terminated mid-job (`pg_terminate_backend`, as a failover or
an operator would): the job fails with a retryable one-line error, the transaction is
rolled back whole (no block without its transactions, no event announced), and the
retry indexes everything once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from chainpulse.devnet import Activity, Anvil
from indexer import models as m
from indexer.db import make_engine
from indexer.errors import DatabaseBusy
from indexer.pipeline import Indexer
from indexer.schema import upgrade
from tests.harness.indexer import build_indexer, close_indexer
from tests.indexer.test_idempotency import counts, stream_ids


@pytest.fixture
def indexer(anvil: Anvil, postgres_url: str, redis_url: str) -> Iterator[Indexer]:
    upgrade(postgres_url)
    built = build_indexer(anvil.url, postgres_url, redis_url)
    yield built
    close_indexer(built)


def test_a_connection_terminated_mid_job_rolls_back_and_the_retry_indexes_once(
    anvil: Anvil, indexer: Indexer, postgres_url: str, redis_url: str
) -> None:
    activity = Activity(anvil)
    for _ in range(3):
        activity.block(count=10, log_share=0.5)
    head = anvil.head()
    indexer.index(1, 1, "backfill")
    before = counts(indexer)
    admin = make_engine(postgres_url)
    terminated: list[int] = []

    @event.listens_for(indexer.store.engine, "before_cursor_execute")
    def terminate(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        # after the block rows went over COPY, before the outbox row: mid-transaction
        if not terminated and statement.lstrip().upper().startswith("INSERT INTO OUTBOX"):
            pid = conn.connection.dbapi_connection.info.backend_pid
            with admin.connect() as other:
                other.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            terminated.append(pid)

    try:
        with pytest.raises(DatabaseBusy) as failed:
            indexer.index(2, head, "backfill")
        assert terminated and "\n" not in str(failed.value)
        assert counts(indexer) == before  # rolled back whole
        assert len(stream_ids(redis_url)) == 1  # nothing announced
        indexer.index(2, head, "backfill")  # the retry, on a fresh connection
    finally:
        admin.dispose()
    with indexer.store.engine.connect() as conn:
        stored = conn.execute(sa.select(m.blocks.c.number).order_by(m.blocks.c.number))
        assert [n for (n,) in stored] == list(range(1, head + 1))
    assert len(stream_ids(redis_url)) == head
