"""A reorg that brings back a full-precision price, on PostgreSQL and the real
UniswapV2Pair: the restore's event fits the outbox, the follower carries on, and the
price now valid reaches the stream.

SQLite does not enforce a column's length, so this one runs where the length is kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from chainpulse import protocols as p
from chainpulse.contracts import Contracts
from chainpulse.devnet import RedisServer, wait_until
from indexer import models as m
from indexer import queries
from indexer.events import MAX_ID_LENGTH
from tests.harness.stack import FOLLOWING, Stack
from tests.harness.stack import stack as make_stack

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
        c = Contracts(s.anvil)
        weth, usdc = p.token(c, "WETH", 18), p.token(c, "USDC", 6)
        factory = c.deploy("UniswapV2Factory", c.sender)
        # 3 WETH and 10,000.000001 USDC: the price has 40 significant digits
        pair = p.V2Pair.create(c, factory, weth, 3 * 10**18, usdc, 10_000 * 10**6 + 1)
        s.use_price_sources([
            {"name": "weth-usdc", "kind": "uniswap_v2", "token": "WETH", "quote": "USDC",
             "address": pair.address},
        ])  # fmt: skip
        s.start = s.anvil.head()  # the mint's block
        s.start_worker(wait=False, loglevel="info")
        follower = None
        try:
            follower = s.follow_process(tmp_path / "follower.log", START_BLOCK=str(s.start))
            wait(s, tmp_path, lambda: latest(s, "WETH") == FULL, "the 40-digit price stored")
            swap = p.V2Pair.swap(pair, 10**17, zero_for_one=pair.token0 == weth)
            wait(s, tmp_path, lambda: latest(s, "WETH") not in (None, FULL), "the swap's price")

            # the swap's own block goes: the mint's price is the one valid again
            s.anvil.call("anvil_reorg", s.anvil.head() - int(swap["blockNumber"], 16) + 1, [])
            s.wait_consistent(WAIT)
            wait(s, tmp_path, lambda: latest(s, "WETH") == FULL, "the 40-digit price restored")

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
            if follower is not None:
                follower.kill()
                follower.wait()
    assert "Traceback" not in (tmp_path / "follower.log").read_text()


def wait(s: Stack, tmp_path: Path, predicate: Any, what: str) -> None:
    try:
        wait_until(predicate, WAIT, what)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{what_happened(s, tmp_path)}") from None


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
            f"stored blocks: {s.store.stored_hashes(0, 2**62)}",
            f"rows per height: {s.rows_per_height(0, s.anvil.head())}",
            (tmp_path / "follower.log").read_text()[-3000:],
            s.tails()[-3000:],
        ]
    )


def outbox(s: Stack) -> list[str]:
    with s.store.engine.connect() as conn:
        return list(conn.execute(sa.select(m.outbox.c.event_id)).scalars())
