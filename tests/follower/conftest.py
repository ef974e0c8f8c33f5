"""The stack the follower tests drive: anvil, Redis, a database at the current schema,
a real Celery worker subprocess on the `blocks` queue, and followers in threads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from chainpulse.devnet import Anvil, wait_until
from chainpulse.settings import Settings
from follower import process
from follower.follower import Follower
from indexer import models as m
from indexer.schema import upgrade
from indexer.store import Store
from workers.jobs import broker

ROOT = Path(__file__).resolve().parents[2]
CELERY = str(ROOT / ".venv" / "bin" / "celery")


def worker_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETH_", "DATABASE_"))}
    env.update(
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        ETH_RPC_URL=",".join(settings.rpc_urls),
        ETH_RPC_TIMEOUT=str(settings.rpc_timeout),
        VISIBILITY_TIMEOUT="10",
        RETRY_BACKOFF_MAX="2",
        TASK_MAX_RETRIES=str(settings.task_max_retries),
        MAX_REORG_DEPTH=str(settings.max_reorg_depth),
        PYTHONWARNINGS="ignore",
    )
    return env


class Worker:
    """`celery -A workers worker -Q blocks --concurrency 2` as a subprocess."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.log = tempfile.NamedTemporaryFile(prefix="celery-", suffix=".log", delete=False)  # noqa: SIM115 (closed in stop)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        self.process = subprocess.Popen(
            [CELERY, "-A", "workers", "worker", "-Q", "blocks", "--concurrency", "2"]
            + ["--loglevel", "INFO", "--without-gossip", "--without-mingle"],
            cwd=ROOT,
            env=worker_env(self.settings),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # cold shutdown: the test is over
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")


@dataclass
class Running:
    follower: Follower
    thread: threading.Thread

    def stop(self) -> None:
        self.follower.stop.set()
        self.follower.wake.set()
        self.thread.join(20)
        process.close(self.follower, store=False)


@dataclass
class Stack:
    settings: Settings
    anvil: Anvil
    store: Store
    client: redis.Redis
    worker: Worker
    followers: list[Running] = field(default_factory=list)
    start: int | None = None  # where the checks begin when no follower recorded it

    def follower(self, **changes: Any) -> Running:
        settings = self.settings.with_(**changes) if changes else self.settings
        follower = process.build(
            settings, store=Store(settings.database_url, self.store.engine), sweep_interval=1.0
        )
        thread = threading.Thread(target=follower.run, name="follower", daemon=True)
        thread.start()
        running = Running(follower, thread)
        self.followers.append(running)
        return running

    def worker_app(self) -> Any:
        return broker(self.settings.redis_url)

    def node_hashes(self, lo: int, hi: int) -> dict[int, str]:
        blocks = self.anvil.batch(
            [("eth_getBlockByNumber", (hex(n), False)) for n in range(lo, hi + 1)]
        )
        return {int(b["number"], 16): b["hash"].lower() for b in blocks if b}

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
            raise AssertionError(
                f"{last[0]}\n--- worker log tail ---\n{self.worker.output()[-3000:]}"
            ) from None

    def reorgs(self) -> list[dict[str, Any]]:
        with self.store.engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.select(m.reorgs)).mappings()]

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        import json

        entries = self.client.xrange(self.settings.stream_key)
        return [(f[b"type"].decode(), json.loads(f[b"data"])) for _, f in entries]


@pytest.fixture
def anvil() -> Iterator[Anvil]:
    """A fresh anvil per test; its stderr pipe is closed after it stops."""
    node = Anvil().start()
    try:
        yield node
    finally:
        process = node.process
        node.stop()
        if process is not None and process.stderr is not None:
            process.stderr.close()


@pytest.fixture
def stack(database_url: str, redis_url: str, anvil: Anvil) -> Iterator[Stack]:
    settings = Settings(
        rpc_urls=(anvil.url,),
        database_url=database_url,
        redis_url=redis_url,
        rpc_timeout=3.0,
        poll_interval=0.1,
        follower_lock_ttl=2.0,
        visibility_timeout=10,
        retry_backoff_max=2,
        task_max_retries=20,
    )
    upgrade(database_url)
    store = Store(database_url)
    client = redis.Redis.from_url(redis_url)
    worker = Worker(settings).start()
    stack = Stack(settings, anvil, store, client, worker)
    try:
        yield stack
    finally:
        for running in stack.followers:
            running.stop()
        worker.stop()
        client.close()
        store.dispose()
        if sys.exc_info()[0] is not None:
            print(worker.output()[-5000:])
