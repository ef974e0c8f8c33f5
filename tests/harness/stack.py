"""The stack integration tests drive: one anvil, one database at the current schema, the
session's Redis, and the workers, followers and commands a test starts over them.

Processes get their settings as environment variables (`variables`, plus the test's
changes); in-process code reads the same values as `settings`.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa

from chainpulse.devnet import Activity, Anvil, RedisServer, wait_until
from chainpulse.settings import Settings
from follower import process
from follower.follower import Follower
from indexer import models as m
from indexer.schema import upgrade
from indexer.store import Store
from tests.harness import sources
from tests.harness.databases import database as make_database
from tests.harness.environment import CHAINPULSE, service_env
from tests.harness.worker import Worker
from workers.jobs import broker

# Short timeouts for stacks that follow the head: failures show within seconds.
FOLLOWING = {
    "ETH_RPC_TIMEOUT": "3",
    "POLL_INTERVAL": "0.1",
    "FOLLOWER_LOCK_TTL": "2",
    "VISIBILITY_TIMEOUT": "10",
    "RETRY_BACKOFF_MAX": "2",
    "TASK_MAX_RETRIES": "20",
}


def fresh_redis(server: RedisServer) -> str:
    """The URL of `server`, started again if a test stopped it, and emptied."""
    if server.process is None or server.process.poll() is not None:
        server.start()
    client = redis.Redis.from_url(server.url)
    try:
        client.flushall()
    finally:
        client.close()
    return server.url


def chainpulse(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run `.venv/bin/chainpulse ARGS` to completion."""
    return subprocess.run(
        [CHAINPULSE, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


@dataclass
class Running:
    """A follower running in a thread of the test process."""

    follower: Follower
    thread: threading.Thread

    def stop(self) -> None:
        self.follower.stop.set()
        self.follower.wake.set()
        self.thread.join(20)
        process.close(self.follower, store=False)


@dataclass
class Stack:
    anvil: Anvil
    directory: Path  # worker logs, the commands' working directory
    variables: dict[str, str]  # DATABASE_URL, REDIS_URL, ETH_RPC_URL and the test's own
    workers: list[Worker] = field(default_factory=list)
    followers: list[Running] = field(default_factory=list)
    start: int | None = None  # where `mismatch` begins when no follower recorded it
    _activity: Activity | None = None

    @cached_property
    def settings(self) -> Settings:
        return Settings.from_env(self.variables, dotenv=False)

    @property
    def database_url(self) -> str:
        return self.settings.database_url

    @property
    def redis_url(self) -> str:
        return self.settings.redis_url

    @cached_property
    def store(self) -> Store:
        return Store(self.database_url)

    @cached_property
    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    def redis(self) -> redis.Redis:
        """A new client that decodes replies (the caller closes it)."""
        return redis.Redis.from_url(self.redis_url, decode_responses=True)

    # processes ------------------------------------------------------------------------

    def use_price_sources(self, entries: Sequence[sources.Entry]) -> Path:
        """Write `entries` as the price sources file (`prices.toml` in the stack's
        directory) that every process started from now on reads (`PRICE_SOURCES`)."""
        path = self.directory / "prices.toml"
        sources.write(path, entries)
        self.variables["PRICE_SOURCES"] = str(path)
        return path

    def env(self, **changes: str) -> dict[str, str]:
        return service_env(**{**self.variables, **changes})

    def cli(self, *args: str, timeout: float = 180, **env: str) -> subprocess.CompletedProcess[str]:
        return chainpulse(*args, env=self.env(**env), cwd=self.directory, timeout=timeout)

    def start_worker(
        self, concurrency: int = 2, wait: bool = True, loglevel: str = "warning", **env: str
    ) -> Worker:
        worker = Worker(self.env(**env), self.directory, concurrency, loglevel).start()
        self.workers.append(worker)
        return worker.wait_ready() if wait else worker

    def worker_app(self) -> Any:
        """A broker app for sending jobs and asking workers (the caller closes it)."""
        return broker(self.redis_url)

    def follow_process(self, log: Path, **env: str) -> subprocess.Popen[bytes]:
        """`chainpulse follow` as a process of its own (one that kill -9 can reach), its
        output in `log`; polling every 0.1 s, the lock's TTL 2 s, no metrics port."""
        settings = {
            "POLL_INTERVAL": "0.1",
            "FOLLOWER_LOCK_TTL": "2",
            "BACKFILL_BATCH": "10",
            "FOLLOWER_METRICS_PORT": "0",
            **env,
        }
        with log.open("ab") as out:
            return subprocess.Popen(
                [CHAINPULSE, "follow"],
                cwd=self.directory,
                env=self.env(**settings),
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def follower(self, **changes: Any) -> Running:
        """A follower in a thread, on this stack's settings with `changes`."""
        settings = self.settings.with_(**changes) if changes else self.settings
        follower = process.build(
            settings,
            store=Store(settings.database_url, self.store.engine, sources=settings.price_sources),
            sweep_interval=1.0,
        )
        thread = threading.Thread(target=follower.run, name="follower", daemon=True)
        thread.start()
        running = Running(follower, thread)
        self.followers.append(running)
        return running

    def logs(self) -> str:
        return "\n".join(w.log() for w in self.workers)

    def tails(self) -> str:
        return "\n".join(w.tail() for w in self.workers)

    # the chain ------------------------------------------------------------------------

    def activity(self) -> Activity:
        """Chain activity on this stack's anvil (one pinger contract for all of it)."""
        if self._activity is None:
            self._activity = Activity(self.anvil)
            self._activity.deploy_pinger()
        return self._activity

    def new_blocks(self, count: int, txs: int = 3) -> tuple[int, int]:
        """Mine `count` blocks of `txs` transactions; returns their first and last height."""
        activity = self.activity()
        first = self.anvil.head() + 1
        for _ in range(count):
            activity.block(count=txs, log_share=0.5, reverts=1, deploys=0)
        return first, self.anvil.head()

    def node_hashes(self, lo: int, hi: int) -> dict[int, str]:
        blocks = self.anvil.batch(
            [("eth_getBlockByNumber", (hex(n), False)) for n in range(lo, hi + 1)]
        )
        return {int(b["number"], 16): b["hash"].lower() for b in blocks if b}

    def node_ids(self, lo: int, hi: int) -> set[str]:
        """The `block.indexed` ids of the node's blocks lo..hi."""
        chain = self.anvil.chain_id
        return {f"block.indexed:{chain}:{n}:{h}" for n, h in self.node_hashes(lo, hi).items()}

    # what was indexed -----------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        result = self.cli("status", "--json")
        assert result.returncode == 0, result.stdout + result.stderr
        report: dict[str, Any] = json.loads(result.stdout)
        return report

    def failed(self) -> list[int]:
        """Heights recorded as failed for good (what `chainpulse status` lists)."""
        return [f.number for f in self.store.failures()]

    def stream_ids(self) -> list[str]:
        entries = self.client.xrange(self.settings.stream_key)
        return [fields[b"id"].decode() for _, fields in entries]

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        entries = self.client.xrange(self.settings.stream_key)
        return [(f[b"type"].decode(), json.loads(f[b"data"])) for _, f in entries]

    def reorgs(self) -> list[dict[str, Any]]:
        with self.store.engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.select(m.reorgs)).mappings()]

    def rows_per_height(self, lo: int, hi: int) -> dict[str, dict[int, int]]:
        """How many blocks, transactions and logs rows each height has, by table."""
        out = {}
        with self.store.engine.connect() as conn:
            for table, column in (
                (m.blocks, m.blocks.c.number),
                (m.transactions, m.transactions.c.block_number),
                (m.logs, m.logs.c.block_number),
            ):
                rows = conn.execute(
                    sa.select(column, sa.func.count())
                    .where(column.between(lo, hi))
                    .group_by(column)
                ).all()
                out[table.name] = {int(n): int(c) for n, c in rows}
        return out

    def node_rows_per_height(self, lo: int, hi: int) -> dict[str, dict[int, int]]:
        """The same counts as the node has them."""
        calls: list[tuple[str, list[Any]]] = []
        for n in range(lo, hi + 1):
            calls += [("eth_getBlockByNumber", [hex(n), False]), ("eth_getBlockReceipts", [hex(n)])]
        replies = self.anvil.batch(calls)
        out: dict[str, dict[int, int]] = {"blocks": {}, "transactions": {}, "logs": {}}
        for i, n in enumerate(range(lo, hi + 1)):
            block, receipts = replies[2 * i], replies[2 * i + 1]
            out["blocks"][n] = 1
            if block["transactions"]:
                out["transactions"][n] = len(block["transactions"])
            logs = sum(len(r["logs"]) for r in receipts)
            if logs:
                out["logs"][n] = logs
        return out

    def start_block(self) -> int | None:
        if self.start is not None:
            return self.start
        value = self.store.get_meta("follow_from")
        return None if value is None else int(value)

    def mismatch(self, confirmations: int = 0) -> str | None:
        """Why the database is not the node's canonical chain, or None when it is.

        Blocks: every height from the follower's start to head - confirmations stored,
        with the node's hash, and nothing above. Transactions and logs: exactly the
        node's, in the right blocks (no orphan's row left, none lost)."""
        start = self.start_block()
        if start is None:
            return "the follower has not started"
        head = self.anvil.head() - confirmations
        expected = self.node_hashes(start, head)
        stored = self.store.stored_hashes(0, 2**62)
        if stored != expected:
            wrong = sorted(
                n for n in set(stored) | set(expected) if stored.get(n) != expected.get(n)
            )
            return f"blocks differ at {wrong[:10]} (head {head})"
        full = self.anvil.batch(
            [("eth_getBlockByNumber", (hex(n), False)) for n in range(start, head + 1)]
        )
        node_txs = {t.lower(): int(b["number"], 16) for b in full for t in b["transactions"]}
        node_logs = {
            (int(x["blockNumber"], 16), int(x["logIndex"], 16), x["transactionHash"].lower())
            for x in self.anvil.call("eth_getLogs", {"fromBlock": hex(start), "toBlock": hex(head)})
        }
        with self.store.engine.connect() as conn:
            txs = {
                str(h): int(n)
                for h, n in conn.execute(
                    sa.select(m.transactions.c.hash, m.transactions.c.block_number)
                )
            }
            logs = {
                (int(n), int(i), str(t))
                for n, i, t in conn.execute(
                    sa.select(m.logs.c.block_number, m.logs.c.log_index, m.logs.c.transaction_hash)
                )
            }
        if txs != node_txs:
            return f"transactions differ: {len(txs)} stored, {len(node_txs)} on the node"
        if logs != node_logs:
            return f"logs differ: {len(logs)} stored, {len(node_logs)} on the node"
        return None

    def wait_consistent(self, timeout: float = 60, confirmations: int = 0) -> None:
        last: list[str | None] = [None]

        def ok() -> bool:
            last[0] = self.mismatch(confirmations)
            return last[0] is None

        try:
            wait_until(ok, timeout, "the database matching the node", interval=0.2)
        except TimeoutError:
            raise AssertionError(f"{last[0]}\n{self.tails()[-3000:]}") from None

    def close(self) -> None:
        for running in self.followers:
            running.stop()
        for worker in self.workers:
            worker.stop()
        if "client" in self.__dict__:
            self.client.close()
        if "store" in self.__dict__:
            self.store.dispose()


@contextlib.contextmanager
def stack(
    database: str, directory: Path, redis_server: RedisServer, **variables: str
) -> Iterator[Stack]:
    """A Stack over a fresh anvil and an emptied Redis. `database` is "sqlite" or
    "postgresql" (a new empty database) or the URL of one; it is migrated here.
    `variables` are settings for every process (e.g. BACKFILL_BATCH="3")."""
    redis_url = fresh_redis(redis_server)
    with contextlib.ExitStack() as exits:
        url = database
        if "://" not in database:
            url = exits.enter_context(make_database(database, directory))
        upgrade(url)
        anvil = exits.enter_context(Anvil())
        s = Stack(
            anvil,
            directory,
            {"DATABASE_URL": url, "REDIS_URL": redis_url, "ETH_RPC_URL": anvil.url, **variables},
        )
        exits.callback(s.close)
        yield s


class Backfill:
    """`chainpulse backfill ... --wait` running in the background, its stderr in a file."""

    def __init__(self, s: Stack, directory: Path, *args: str) -> None:
        self.path = directory / f"backfill-{'-'.join(args)}.err"
        with open(self.path, "w") as err:
            self.process = subprocess.Popen(
                [CHAINPULSE, "backfill", *args, "--wait"],
                env=s.env(),
                cwd=directory,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    def output(self) -> str:
        return self.path.read_text()

    def wait_for(self, text: str, timeout: float = 30) -> None:
        wait_until(lambda: text in self.output(), timeout, f"backfill printing {text!r}")

    def wait(self, timeout: float = 60) -> int:
        try:
            return self.process.wait(timeout)
        finally:
            self.close()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def __enter__(self) -> Backfill:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
