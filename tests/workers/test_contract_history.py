"""A contract added to the contracts file after 2,000 blocks were indexed has its history
decoded from the stored logs, with the node stopped: `chainpulse contracts sync --wait`
sends the pieces, real Celery workers decode them, and every transfer the token made is
a row, once, as the calls made it. Run again, nothing is sent; the entry changed, its
rows are decoded anew."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa

from chainpulse import protocols
from chainpulse.contracts import Contracts, artifacts
from chainpulse.devnet import Anvil
from indexer import models as m
from indexer.event_sync import PIECE
from tests.harness.environment import CHAINPULSE, service_env
from tests.harness.indexer import migrated_indexer
from tests.harness.worker import Worker

BLOCKS = 2_000


def test_a_contract_added_later_is_decoded_from_the_stored_logs_without_the_node(
    postgres_url: str, redis_url: str, tmp_path: Path
) -> None:
    """On PostgreSQL, where several workers' pieces commit side by side (SQLite's
    decoding is the same code, and its rows are checked in tests/indexer)."""
    database_url = postgres_url
    sent: list[tuple[str, int]] = []
    with Anvil() as anvil:
        c = Contracts(anvil)
        token = protocols.token(c, "TK", 18)
        for i in range(24):  # transfers spread over the 2,000 blocks
            to = "0x" + f"{i + 1:040x}"
            c.call(token, "transfer", to, 1_000 + i)
            sent.append((to, 1_000 + i))
            anvil.mine(BLOCKS // 24)
        head = anvil.head()
        with migrated_indexer(anvil.url, database_url, redis_url) as indexer:
            for lo in range(1, head + 1, 250):
                indexer.index(lo, min(lo + 249, head), "backfill")
    # the node is gone from here on

    (tmp_path / "token.json").write_text(json.dumps(artifacts()["TestToken"]["abi"]))
    (tmp_path / "contracts.toml").write_text(
        f'[[contract]]\nname = "Token"\naddress = "{token}"\nabi = "token.json"\n'
    )
    env = service_env(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        ETH_RPC_URL=anvil.url,  # stopped
        CONTRACTS=str(tmp_path / "contracts.toml"),
    )
    worker = Worker(env, tmp_path).start().wait_ready()
    try:
        synced = _sync(env, tmp_path)
        assert synced.returncode == 0, synced.stderr
        assert f"Token (main): blocks 1..{head}, 0 of {head} decoded" in synced.stderr
        assert f"decoded {head} of {head} blocks (100%)" in synced.stderr
        rows = _transfers(database_url)
        # the deployment's mint, then each transfer as the call made it
        assert [(r["args"]["to"], r["args"]["value"]) for r in rows[1:]] == [
            (to, str(value)) for to, value in sent
        ]
        assert rows[0]["args"]["from"] == "0x" + "00" * 20

        again = _sync(env, tmp_path)  # nothing changed: nothing to send
        assert f"{head} of {head} decoded" in again.stderr and again.returncode == 0
        assert _transfers(database_url) == rows

        # the entry changed (one event, by signature, argument names of its own): anew
        (tmp_path / "contracts.toml").write_text(
            f'[[contract]]\nname = "Token"\naddress = "{token}"\n'
            'events = ["Transfer(address indexed src, address indexed dst, uint256 wad)"]\n'
        )
        worker.stop()  # workers read the file as they start: restart them
        worker = Worker(env, tmp_path).start().wait_ready()
        changed = _sync(env, tmp_path)
        assert changed.returncode == 0, changed.stderr
        renamed = _transfers(database_url)
        assert [(r["args"]["dst"], r["args"]["wad"]) for r in renamed[1:]] == [
            (to, str(value)) for to, value in sent
        ]
    finally:
        worker.stop()
    assert head > PIECE  # more than one piece, decoded in any order


def _sync(env: dict[str, str], cwd: Path) -> object:
    import subprocess

    return subprocess.run(
        [CHAINPULSE, "contracts", "sync", "--wait"],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def _transfers(url: str) -> list[dict[str, object]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            e = m.contract_events.c
            return [
                dict(r)
                for r in conn.execute(
                    sa.select(m.contract_events).order_by(e.block_number, e.log_index)
                ).mappings()
            ]
    finally:
        engine.dispose()
