"""End to end: `chainpulse db upgrade`, a real Celery worker, `chainpulse backfill --wait`,
`chainpulse status`, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from chainpulse.devnet import Activity, RedisServer, free_port, wait_until
from chainpulse.settings import Settings
from chainpulse.status import collect_status, render_status
from indexer import models as m
from tests.harness.indexer import build_indexer, close_indexer
from tests.harness.stack import Stack, stack


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def chain(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    redis_server: RedisServer,
) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp(f"backfill-{request.param}")
    with stack(request.param, directory, redis_server, BACKFILL_BATCH="3") as s:
        activity = Activity(s.anvil)
        for _ in range(6):
            activity.block(count=5, log_share=0.5, reverts=1, deploys=1)
            s.anvil.mine(2)
        s.start_worker()
        yield s


def backfilled(s: Stack) -> int:
    """Make sure blocks 1..head are stored (the first test does it through the CLI)."""
    head = s.anvil.head()
    store = s.store
    missing = store.missing(1, head)
    if missing:
        result = s.cli("backfill", "1", str(head), "--wait")
        assert result.returncode == 0, result.stderr + s.tails()
    return head


def test_backfill_wait_indexes_every_block(chain: Stack) -> None:
    head = chain.anvil.head()
    result = chain.cli("backfill", "1", str(head), "--wait")

    assert result.returncode == 0, result.stderr + chain.tails()
    assert f"enqueued {head} blocks in {-(-head // 3)} jobs" in result.stderr
    assert f"indexed {head} blocks in" in result.stderr
    assert "blocks/s" in result.stderr and "ETA" in result.stderr
    stored = chain.store
    assert stored.stored_hashes(0, head + 10) == {
        n: chain.anvil.block(n)["hash"] for n in range(1, head + 1)
    }
    assert chain.rows_per_height(1, head) == chain.node_rows_per_height(1, head)
    ids = chain.stream_ids()
    assert sorted(ids) == sorted(chain.node_ids(1, head))


def test_status_json_shows_no_lag_and_a_rerun_enqueues_nothing(chain: Stack) -> None:
    head = backfilled(chain)
    report = chain.status()
    assert report["head"] == head
    assert report["indexed"] == head
    assert report["lowest"] == 1
    assert report["blocks"] == head
    assert report["lag"] == 0
    assert report["gaps"] == []
    assert report["queue"] == 0
    assert report["failed"] == []
    assert report["outbox"] == 0
    assert report["chainId"] == 31337
    assert report["errors"] == []
    text = render_status(report)
    assert "lag          0" in text and "missing      none" in text

    result = chain.cli("backfill", "1", str(head))
    assert result.returncode == 0, result.stderr
    assert f"enqueued 0 blocks in 0 jobs ({head} already indexed)" in result.stderr


def indexed_at(s: Stack, lo: int, hi: int) -> dict[int, datetime]:
    store = s.store
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(m.blocks.c.number, m.blocks.c.indexed_at).where(
                m.blocks.c.number.between(lo, hi)
            )
        ).all()
    return {int(n): (t if t.tzinfo else t.replace(tzinfo=UTC)) for n, t in rows}


def test_force_reindexes_stored_blocks(chain: Stack) -> None:
    head = backfilled(chain)
    before = indexed_at(chain, 1, head)
    rows = chain.rows_per_height(1, head)
    ids = chain.stream_ids()

    result = chain.cli("backfill", "2", "4", "--force", "--wait")

    assert result.returncode == 0, result.stderr + chain.tails()
    assert "enqueued 3 blocks in 1 jobs" in result.stderr
    assert "indexed 3 blocks" in result.stderr
    after = indexed_at(chain, 1, head)
    assert [n for n in after if after[n] > before[n]] == [2, 3, 4]
    assert chain.rows_per_height(1, head) == rows
    repeated = chain.stream_ids()[len(ids) :]
    assert sorted(repeated) == sorted(i for i in ids if i.split(":")[2] in ("2", "3", "4"))


def test_missing_ranges_are_shown_and_filled(chain: Stack) -> None:
    head = backfilled(chain)
    store = chain.store
    with store.writing() as conn:
        store.delete_heights(conn, [3, 4, 7])
    report = collect_status(Settings.from_env(chain.env(), dotenv=False))
    assert report["gaps"] == [[3, 4], [7, 7]]
    assert "missing      3-4, 7" in render_status(report)

    result = chain.cli("backfill", "1", str(head), "--wait")

    assert result.returncode == 0, result.stderr + chain.tails()
    assert f"enqueued 3 blocks in 2 jobs ({head - 3} already indexed)" in result.stderr
    assert store.summary().gaps == []
    assert chain.rows_per_height(1, head) == chain.node_rows_per_height(1, head)


def test_a_worker_relays_events_another_process_left_in_the_outbox(chain: Stack) -> None:
    """A writer that committed but died before appending: a worker appends its event."""
    head = backfilled(chain)
    chain.anvil.mine()
    closed_redis = f"redis://127.0.0.1:{free_port()}/0"
    writer = build_indexer(chain.anvil.url, chain.database_url, closed_redis)
    try:
        [event] = writer.index(head + 1, head + 1, "backfill")  # Redis unreachable for it
        assert len(writer.store.pending_outbox()) == 1
        wait_until(lambda: event.id in chain.stream_ids(), 30, "a worker relaying the event")
        wait_until(lambda: writer.store.pending_outbox() == [], 10, "the outbox emptied")
    finally:
        close_indexer(writer)
    assert chain.stream_ids().count(event.id) == 1
