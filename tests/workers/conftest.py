"""The real processes the worker tests drive: a Celery worker on the `blocks` queue and the
`chainpulse` command line, both as subprocesses run from an empty directory (so no
developer's `.env` is read), over a real anvil, redis-server and database."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from chainpulse.devnet import Activity, Anvil, RedisServer, port_open, wait_until
from indexer import models as m
from indexer.config import STREAM_KEY
from indexer.store import Store
from tests.indexer.services import stop_anvil
from workers.jobs import broker

ROOT = Path(__file__).resolve().parents[2]
CELERY = str(ROOT / ".venv" / "bin" / "celery")
CHAINPULSE = str(ROOT / ".venv" / "bin" / "chainpulse")
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

# Every variable chainpulse reads: none may leak in from the developer's environment.
_SETTINGS_PREFIXES = ("ETH_", "DATABASE_", "REDIS_", "STREAM_", "TASK_", "RETRY_", "BACKFILL_")
_SETTINGS_NAMES = {"VISIBILITY_TIMEOUT", "CONFIRMATIONS", "START_BLOCK", "MAX_REORG_DEPTH"}
_names = itertools.count(1)


def service_env(**values: str) -> dict[str, str]:
    """The environment for a chainpulse or celery subprocess: ours, not the developer's."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_SETTINGS_PREFIXES) and k not in _SETTINGS_NAMES
    }
    env["PYTHONPATH"] = str(ROOT)  # this checkout's code, however the venv was installed
    env.update(values)
    return env


def chainpulse(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHAINPULSE, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


class Worker:
    """`celery -A workers worker -Q blocks` in its own process group, its log kept in a file."""

    def __init__(self, env: dict[str, str], cwd: Path, concurrency: int = 2) -> None:
        self.env = env
        self.cwd = cwd
        self.concurrency = concurrency
        self.hostname = f"w{next(_names)}-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"
        self.log_path = cwd / f"{self.hostname.split('@')[0]}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [CELERY, "-A", "workers", "worker", "-Q", "blocks"]
                + ["--concurrency", str(self.concurrency), "-l", "warning", "-n", self.hostname]
                + ["--without-gossip", "--without-mingle"],
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def wait_ready(self, timeout: float = 60) -> Worker:
        app = broker(self.env["REDIS_URL"])
        try:

            def answers() -> bool:
                assert self.process is not None and self.process.poll() is None, self.tail()
                return bool(app.control.ping(destination=[self.hostname], timeout=0.5))

            wait_until(answers, timeout, f"worker {self.hostname} answering", interval=0.2)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{self.tail()}") from None
        finally:
            app.close()
        return self

    def signal(self, sig: int) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def kill(self) -> None:
        """kill -9 the whole worker: the main process and its pool children."""
        self.signal(signal.SIGKILL)
        assert self.process is not None
        self.process.wait(30)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.process.wait(10)
        self.signal(signal.SIGKILL)  # pool children left behind, if any
        self.process = None

    def log(self) -> str:
        """Everything the worker wrote so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self) -> str:
        """The end of the log, for failure messages."""
        return f"--- log of worker {self.hostname} ---\n{self.log()[-6000:]}"


@contextlib.contextmanager
def database(kind: str, directory: Path) -> Iterator[str]:
    """A fresh, empty database of `kind` ("sqlite" or "postgresql") for a module's worker."""
    if kind == "sqlite":
        yield f"sqlite:///{directory}/chainpulse.db"
        return
    admin_url = os.environ.get("CHAINPULSE_TEST_POSTGRES_URL") or (
        DEFAULT_PG if port_open(5432) else None
    )
    if admin_url is None:
        pytest.skip("no PostgreSQL answers (set CHAINPULSE_TEST_POSTGRES_URL)")
    name = f"chainpulse_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass
class Stack:
    """One anvil, one database, the session's Redis and a worker over them."""

    anvil: Anvil
    database_url: str
    redis_url: str
    directory: Path
    settings: dict[str, str] = field(default_factory=dict)  # for the CLI and the workers
    workers: list[Worker] = field(default_factory=list)
    _activity: Activity | None = None

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

    def env(self, **changes: str) -> dict[str, str]:
        values = {
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "ETH_RPC_URL": self.anvil.url,
            **self.settings,
            **changes,
        }
        return service_env(**values)

    def cli(self, *args: str, timeout: float = 180, **env: str) -> subprocess.CompletedProcess[str]:
        return chainpulse(*args, env=self.env(**env), cwd=self.directory, timeout=timeout)

    def start_worker(self, concurrency: int = 2, **env: str) -> Worker:
        worker = Worker(self.env(**env), self.directory, concurrency)
        self.workers.append(worker)
        return worker.start().wait_ready()

    def logs(self) -> str:
        return "\n".join(w.log() for w in self.workers)

    def tails(self) -> str:
        return "\n".join(w.tail() for w in self.workers)

    def store(self) -> Store:
        return Store(self.database_url)

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url, decode_responses=True)

    def stream_ids(self) -> list[str]:
        client = self.redis()
        try:
            return [fields["id"] for _, fields in client.xrange(STREAM_KEY)]
        finally:
            client.close()

    def status(self) -> dict[str, Any]:
        result = self.cli("status", "--json")
        assert result.returncode == 0, result.stdout + result.stderr
        report: dict[str, Any] = json.loads(result.stdout)
        return report

    def failed(self) -> list[int]:
        """Heights recorded as failed for good (what `chainpulse status` lists)."""
        store = self.store()
        try:
            return [f.number for f in store.failures()]
        finally:
            store.dispose()

    def rows_per_height(self, lo: int, hi: int) -> dict[str, dict[int, int]]:
        """How many blocks, transactions and logs rows each height has, by table."""
        store = self.store()
        try:
            with store.engine.connect() as conn:
                out = {}
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
        finally:
            store.dispose()

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

    def node_ids(self, lo: int, hi: int) -> set[str]:
        blocks = self.anvil.batch(
            [("eth_getBlockByNumber", [hex(n), False]) for n in range(lo, hi + 1)]
        )
        return {f"block.indexed:{int(b['number'], 16)}:{b['hash'].lower()}" for b in blocks}


@contextlib.contextmanager
def stack(
    kind: str, directory: Path, redis_server: RedisServer, **settings: str
) -> Iterator[Stack]:
    """A Stack with an empty, migrated database; start its worker with `start_worker`."""
    if redis_server.process is None or redis_server.process.poll() is not None:
        redis_server.start()
    flush = redis.Redis.from_url(redis_server.url)
    flush.flushall()
    flush.close()
    anvil = Anvil().start()
    try:
        with database(kind, directory) as url:
            s = Stack(anvil, url, redis_server.url, directory, dict(settings))
            try:
                result = s.cli("db", "upgrade")
                assert result.returncode == 0, result.stderr
                yield s
            finally:
                for worker in s.workers:
                    worker.stop()
    finally:
        stop_anvil(anvil)


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
