"""bench/contracts/redecode: how fast a contract added to the contracts file is decoded
from the stored logs (`indexer.event_sync`, docs/contracts.md), on SQLite and
PostgreSQL.

It builds a database of BLOCKS blocks with LOGS logs each, stored as indexing stores
them: a share of them ERC-20 `Transfer`s of the token the contract names (with indexed
`from` and `to`, a uint256 value), the rest other contracts' logs. Then it plans the
contract's history and decodes every piece in this process, one after the other (as
one worker process would), and prints the stored logs read per second, the events
decoded per second and the time; it checks every transfer became a row.

Usage: .venv/bin/python -m bench.contracts.redecode [--blocks 20000] [--logs 10]
       [--share 0.5] [--database sqlite|postgresql|both]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from eth_utils import keccak

from bench.common import markdown_table
from chainpulse.devnet import port_open
from indexer import models as m
from indexer.contracts import parse_contracts
from indexer.event_sync import decode_range as decode_piece
from indexer.event_sync import pieces, plan
from indexer.schema import upgrade
from indexer.store import Store
from tests.harness.databases import database

CHAIN = 1
TOKEN = "0x" + "70" * 20
OTHER = "0x" + "0a" * 20
TRANSFER = "0x" + keccak(text="Transfer(address,address,uint256)").hex()


def fill(url: str, blocks: int, logs: int, share: float) -> int:
    """The blocks and their logs; returns how many are the token's transfers."""
    engine = sa.create_engine(url)
    transfers = 0
    now = datetime.now(UTC)
    every = max(1, round(1 / share)) if share > 0 else 0
    try:
        with engine.begin() as conn:
            conn.execute(m.meta.insert(), {"chain_id": CHAIN, "key": "chain_id", "value": "1"})
            for lo in range(1, blocks + 1, 2000):
                heights = range(lo, min(blocks, lo + 1999) + 1)
                conn.execute(
                    m.blocks.insert(),
                    [
                        {"chain_id": CHAIN, "number": n, "hash": f"0x{n:064x}",
                         "parent_hash": f"0x{n - 1:064x}", "timestamp": 1_700_000_000 + n,
                         "tx_count": 1, "gas_used": 21_000, "gas_limit": 30_000_000,
                         "base_fee_per_gas": 10**9, "miner": OTHER, "indexed_at": now}
                        for n in heights
                    ],
                )  # fmt: skip
                rows = []
                for n in heights:
                    for i in range(logs):
                        ours = every and (n * logs + i) % every == 0
                        transfers += bool(ours)
                        rows.append({
                            "chain_id": CHAIN, "block_number": n, "log_index": i,
                            "transaction_hash": f"0x{n:062x}{i:02x}",
                            "address": TOKEN if ours else OTHER, "topic0": TRANSFER,
                            "topic1": "0x" + f"{i:064x}", "topic2": "0x" + f"{n:064x}",
                            "topic3": None, "data": "0x" + f"{n * logs + i:064x}",
                        })  # fmt: skip
                conn.execute(m.logs.insert(), rows)
    finally:
        engine.dispose()
    return transfers


def one(kind: str, args: argparse.Namespace) -> list[str]:
    with (
        tempfile.TemporaryDirectory(prefix="chainpulse-redecode-") as directory,
        database(kind, Path(directory)) as url,
    ):
        upgrade(url)
        started = time.monotonic()
        transfers = fill(url, args.blocks, args.logs, args.share)
        took = time.monotonic() - started
        print(f"{kind}: {args.blocks} blocks, {args.blocks * args.logs} logs, "
                  f"{transfers} transfers stored in {took:.1f} s")  # fmt: skip
        contracts = parse_contracts(
                {"contract": [{"name": "Token", "address": TOKEN,
                               "events": ["Transfer(address indexed from, address indexed to, "
                                          "uint256 value)"]}]},
                "bench",
            ).contracts  # fmt: skip
        store = Store(url, chain_id=CHAIN)
        try:
            started = time.monotonic()
            state = plan(store, contracts)["Token"]
            read = sum(decode_piece(store, contracts, lo, hi) for lo, hi in pieces(state))
            seconds = time.monotonic() - started
            with store.engine.connect() as conn:
                rows = conn.execute(
                    sa.select(sa.func.count()).select_from(m.contract_events)
                ).scalar_one()
        finally:
            store.dispose()
    assert rows == transfers, (rows, transfers)
    return [
        kind,
        f"{args.blocks:,}",
        f"{read:,}",
        f"{rows:,}",
        f"{seconds:.1f} s",
        f"{read / seconds:,.0f}",
        f"{rows / seconds:,.0f}",
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--blocks", type=int, default=20_000)
    p.add_argument("--logs", type=int, default=10, help="logs per block")
    p.add_argument("--share", type=float, default=0.5, help="of them, the token's transfers")
    p.add_argument("--database", default="both", choices=("sqlite", "postgresql", "both"))
    args = p.parse_args(argv)
    kinds = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    if "postgresql" in kinds and not port_open(5432):
        kinds.remove("postgresql")
    rows = [one(kind, args) for kind in kinds]
    print(
        markdown_table(
            ["database", "blocks", "logs read", "events decoded", "time", "logs/s", "events/s"],
            rows,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
