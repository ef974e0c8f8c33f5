"""`chainpulse price set`, `chainpulse prices check`, and a bad price sources file
stopping every process that reads it at start, with one line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from chainpulse.devnet import free_port
from indexer import models as m
from tests.harness import sources
from tests.harness.environment import CELERY, CHAINPULSE, ROOT, service_env

FEED = "0x" + "ab" * 20
GOOD = sources.toml(
    [{"name": "eth-usd", "kind": "chainlink", "token": "ETH", "quote": "USD", "address": FEED,
      "decimals": 8}]
)  # fmt: skip


def run(
    args: list[str], cwd: Path, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env=service_env(**env), capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.fixture
def database(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'chainpulse.db'}"
    done = run([CHAINPULSE, "db", "upgrade"], tmp_path, DATABASE_URL=url)
    assert done.returncode == 0, done.stderr
    return url


def test_price_set_stores_and_publishes(tmp_path: Path, database: str, redis_url: str) -> None:
    done = run([CHAINPULSE, "price", "set", "BTC", "65000.12", "--quote", "USD"], tmp_path,
               DATABASE_URL=database, REDIS_URL=redis_url)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "BTC = 65000.12 USD (manual)" in done.stdout
    with sa.create_engine(database).connect() as conn:
        row = conn.execute(sa.select(m.prices)).one()
        pending = conn.execute(sa.select(m.outbox.c.data)).scalars().all()
    assert (row.token, str(row.price), row.source, row.quote) == (
        "BTC",
        "65000.12",
        "manual",
        "USD",
    )
    assert row.block_number is None and pending == []
    # published on the stream at once
    stream = redis.Redis.from_url(redis_url).xrange("chainpulse:events")
    [data] = [json.loads(fields[b"data"]) for _, fields in stream]
    assert data["token"] == "BTC" and data["price"] == "65000.12" and data["source"] == "manual"
    assert data["quote"] == "USD" and data["blockNumber"] is None


@pytest.mark.parametrize(
    ("token", "price", "message"),
    [
        ("price:BTC", "1", "token must be 1 to 32 of A-Z a-z 0-9 . _ -"),
        ("BTC", "twelve", "not a decimal number: 'twelve'"),
        ("BTC", "0x10", "not a decimal number"),
        ("BTC", "-1.5", "must not be negative"),
        ("BTC", "Infinity", "must be a finite number"),
        ("BTC", "NaN", "must be a finite number"),
        ("BTC", "1" + "0" * 78, "must be below 10^78"),
        ("BTC", "1." + "1" * 40, "at most 40 significant digits"),
        ("BTC", "1e-999999999", "at most 78 decimal places"),
        ("BTC", "0e-1000000", "at most 78 decimal places"),
        ("ETH", "3000", "token ETH is priced by source 'eth-usd' (chainlink)"),
    ],
)
def test_price_set_refuses_bad_input(
    tmp_path: Path, database: str, token: str, price: str, message: str
) -> None:
    sources = tmp_path / "prices.toml"
    sources.write_text(GOOD)
    done = run([CHAINPULSE, "price", "set", token, price], tmp_path,
               DATABASE_URL=database, PRICE_SOURCES=str(sources))  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    with sa.create_engine(database).connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(m.prices)).scalar_one() == 0


def test_prices_check(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(GOOD)
    port = free_port()  # no node answers there: only the file's shape is checked
    done = run([CHAINPULSE, "prices", "check", str(good)], tmp_path,
               ETH_RPC_URL=f"http://127.0.0.1:{port}")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (
        "1 source (1 chainlink): the file's shape is ok; its pools and feeds were not "
        f"checked against the chain: the node at http://127.0.0.1:{port} does not answer"
        in done.stdout
    )
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace("chainlink", "curve"))
    done = run([CHAINPULSE, "prices", "check", str(bad)], tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"chainpulse: PRICE_SOURCES {bad}: source 1 ('eth-usd'): field 'kind': unknown kind "
        "'curve' (expected uniswap_v2, uniswap_v3, chainlink, derived)"
    )


@pytest.mark.parametrize(
    "command",
    [[CHAINPULSE, "serve"], [CHAINPULSE, "follow"], [CHAINPULSE, "status"],
     [CELERY, "-A", "workers", "worker", "-Q", "blocks"]],
    ids=["serve", "follow", "status", "worker"],
)  # fmt: skip
def test_a_bad_sources_file_stops_each_process_at_start(
    tmp_path: Path, command: list[str], redis_url: str
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD + GOOD.replace('"eth-usd"', '"other"'))
    done = run(command, ROOT, timeout=60, PRICE_SOURCES=str(bad), REDIS_URL=redis_url,
               DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}")  # fmt: skip
    assert done.returncode == 2
    expected = (
        f"chainpulse: PRICE_SOURCES {bad}: source 2 ('other'): field 'token': 'ETH' already "
        "has source 1: one source per token"
    )
    assert expected in done.stderr.splitlines(), done.stderr[-2000:]
