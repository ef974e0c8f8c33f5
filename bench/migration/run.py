"""bench/migration: how long migration 0005 (every table keyed by chain, docs/chains.md)
holds a database of the single-chain schema: the downtime of the upgrade.

It builds a 0004 database of BLOCKS blocks, each with two transactions and two logs,
bound to chain 1, then times `chainpulse db upgrade` to head, and checks every block
was given the chain.

Usage: .venv/bin/python -m bench.migration.run [--blocks 100000]
       [--database sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from indexer.schema import upgrade
from tests.harness.databases import database

BLOCK = (
    "INSERT INTO blocks (number, hash, parent_hash, timestamp, tx_count, gas_used, gas_limit, "
    "base_fee_per_gas, miner, indexed_at) "
    "VALUES (:n, :h, :p, :t, 2, 42000, 30000000, '1000000000', :m, :at)"
)
TRANSACTION = (
    "INSERT INTO transactions (hash, block_number, transaction_index, from_address, "
    "to_address, value, gas, gas_price, nonce, status, gas_used, contract_address) "
    "VALUES (:h, :n, :i, :f, :to, '1', 21000, '1', :i, 1, 21000, NULL)"
)
LOG = (
    "INSERT INTO logs (block_number, log_index, transaction_hash, address, topic0, data) "
    "VALUES (:n, :i, :h, :a, :t, '0x')"
)


def fill(url: str, n: int) -> None:
    """`n` blocks of the 0004 schema, two transactions and two logs each, bound to chain 1."""
    engine = sa.create_engine(url)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO chainpulse_meta (key, value) VALUES ('chain_id', '1')"))
        for lo in range(1, n + 1, 5000):
            heights = range(lo, min(n, lo + 4999) + 1)
            conn.execute(
                sa.text(BLOCK),
                [
                    {"n": k, "h": f"0x{k:064x}", "p": f"0x{k - 1:064x}", "t": 1_700_000_000 + k,
                     "m": "0x" + "ab" * 20, "at": now}
                    for k in heights
                ],
            )  # fmt: skip
            conn.execute(
                sa.text(TRANSACTION),
                [
                    {"h": f"0x{k:062x}{i:02x}", "n": k, "i": i, "f": "0x" + "aa" * 20,
                     "to": "0x" + "bb" * 20}
                    for k in heights
                    for i in range(2)
                ],
            )  # fmt: skip
            conn.execute(
                sa.text(LOG),
                [
                    {"n": k, "i": i, "h": f"0x{k:062x}{i:02x}", "a": "0x" + "cc" * 20,
                     "t": "0x" + "dd" * 32}
                    for k in heights
                    for i in range(2)
                ],
            )  # fmt: skip
    engine.dispose()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--blocks", type=int, default=100_000)
    p.add_argument("--database", default="sqlite", choices=("sqlite", "postgresql"))
    args = p.parse_args()
    kind, n = args.database, args.blocks
    with tempfile.TemporaryDirectory() as d, database(kind, Path(d)) as url:
        upgrade(url, "0004")
        t = time.monotonic()
        fill(url, n)
        print(f"{kind}: filled {n} blocks in {time.monotonic() - t:.1f} s")
        t = time.monotonic()
        upgrade(url)
        took = time.monotonic() - t
        e = sa.create_engine(url)
        with e.connect() as c:
            count = c.execute(sa.text("SELECT count(*) FROM blocks WHERE chain_id = 1")).scalar()
        e.dispose()
        print(
            f"{kind}: migration 0005 on {n} blocks ({2 * n} transactions, {2 * n} logs): "
            f"{took:.1f} s; {count} blocks keyed by chain 1"
        )


if __name__ == "__main__":
    main()
