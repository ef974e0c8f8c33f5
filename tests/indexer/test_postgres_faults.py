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

from chainpulse.devnet import Anvil
from indexer import models as m
from indexer.db import make_engine
from indexer.errors import DatabaseBusy
from indexer.pipeline import Indexer
from tests.harness.indexer import counts, first_block_indexed, migrated_indexer, stream_ids


@pytest.fixture
def indexer(anvil: Anvil, postgres_url: str, redis_url: str) -> Iterator[Indexer]:
    with migrated_indexer(anvil.url, postgres_url, redis_url) as built:
        yield built


def test_a_connection_terminated_mid_job_rolls_back_and_the_retry_indexes_once(
    anvil: Anvil, indexer: Indexer, postgres_url: str, redis_url: str
) -> None:
    head = first_block_indexed(anvil, indexer, 3, 10)
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
