"""A reorg that brings back a full-precision price, on PostgreSQL: the restore's event
fits the outbox, the follower carries on, and the price now valid reaches the stream.

SQLite does not enforce a column's length, so this one runs where the length is kept."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from chainpulse.devnet import RedisServer, wait_until
from indexer import models as m
from indexer import queries
from indexer.events import MAX_ID_LENGTH
from tests.harness.stack import FOLLOWING, Stack
from tests.harness.stack import stack as make_stack
from tests.prices.conftest import deploy_market

WAIT = 60
FULL = "3333.333333666666666666666666666666666667"  # 40 significant digits


def latest(s: Stack, token: str) -> str | None:
    with s.store.engine.connect() as conn:
        row = queries.latest_price(conn, token)
    return None if row is None else format(row.price, "f")


def test_a_reorg_restoring_a_40_digit_price_on_postgresql(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    with make_stack("postgresql", tmp_path, redis_server, **FOLLOWING) as s:
        market = deploy_market(s, tmp_path)
        c = market.contracts
        s.start_worker(wait=False)
        follower = s.follow_process(tmp_path / "follower.log")
        try:
            wait_until(lambda: s.start_block() is not None, WAIT, "the follower starting")
            c.call(market.pair, "sync", 3 * 10**18, 10_000 * 10**6 + 1)
            wait_until(lambda: latest(s, "WETH") == FULL, WAIT, "the 40-digit price stored")
            c.call(market.pair, "sync", 10**18, 9 * 10**6)
            wait_until(lambda: latest(s, "WETH") == "9", WAIT, "the next price stored")

            s.anvil.call("anvil_reorg", 1, [])
            s.wait_consistent(WAIT)
            try:
                wait_until(lambda: latest(s, "WETH") == FULL, WAIT, "the 40-digit price restored")
            except TimeoutError as exc:
                raise AssertionError(f"{exc}\n{what_happened(s, tmp_path)}") from None

            restored = [
                d for t, d in s.events() if t == "price.updated" and d.get("reorgId") is not None
            ]
            assert [d["price"] for d in restored if d["token"] == "WETH"] == [FULL]
            assert all(len(i) <= MAX_ID_LENGTH for i in s.stream_ids())
            assert len(s.reorgs()) == 1
            wait_until(lambda: not outbox(s), WAIT, "the outbox relayed")
            # the follower survived the repair and still indexes what follows the fork
            s.anvil.mine()
            s.wait_consistent(WAIT)
            assert follower.poll() is None, (tmp_path / "follower.log").read_text()[-3000:]
        finally:
            follower.kill()
            follower.wait()
    assert "Traceback" not in (tmp_path / "follower.log").read_text()


def what_happened(s: Stack, tmp_path: Path) -> str:
    """WETH's rows, the reorgs and the processes' logs: what a failure needs to be read."""
    with s.store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(m.prices.c.block_number, m.prices.c.log_index, m.prices.c.price)
            .where(m.prices.c.token == "WETH")
            .order_by(m.prices.c.block_number)
        ).all()
    return "\n".join(
        [
            f"WETH rows: {rows}",
            f"node head: {s.anvil.head()}; reorgs: {s.reorgs()}",
            (tmp_path / "follower.log").read_text()[-3000:],
            s.tails()[-3000:],
        ]
    )


def outbox(s: Stack) -> list[str]:
    with s.store.engine.connect() as conn:
        return list(conn.execute(sa.select(m.outbox.c.event_id)).scalars())
