"""The fault suite: chainpulse running whole (anvil with a market trading on it, Redis,
the database, a worker, two followers, a server) with a python-socketio and a
socket.io-client front-end watching, and faults thrown at it one after another.

After each fault, with the chain moving again: every client has seen every height
exactly once and in order (a skip only as docs/protocol.md documents it, its heights served
by `/api/blocks/<n>`), only the node's blocks, no price twice, and each token's stored
latest price last; the database equals the node (every block, transaction and log, no
orphan); the stream holds every `block.indexed` since Redis last started; the outbox is
empty.

Every size is a long test (the small one about 95 s), so all are in the `slow` tier
(`make test-all`, or `pytest tests/faults -m slow`): the small and full sizes on SQLite,
and the full size on a PostgreSQL cluster of the test's own, which it also crashes and
restarts. Each fault also has a test of its own in the default tier (docs/faults.md).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from chainpulse.devnet import RedisServer, wait_until
from chainpulse.market import Market, Trader
from follower.lease import holder
from indexer import models as m
from tests.harness.disk import fill, small_disk
from tests.harness.live import JsWatcher, PythonWatcher, Watcher, served_by
from tests.harness.pgcluster import Cluster, cluster
from tests.harness.processes import stop
from tests.harness.proxy import RpcProxy, receipt_without_block_hash, swapped, wrong_parent
from tests.harness.realtime import Server
from tests.harness.rows import rows_mismatch
from tests.harness.stack import FOLLOWING, Backfill, Stack, stack

TOKENS = ["WETH", "UNI", "ETH", "UNI-USD"]
WAIT = 120  # seconds: a generous bound for the system to settle after a fault


@dataclass(frozen=True)
class Size:
    history: int  # blocks a backfill indexes while the worker is killed
    kills: int  # kill -9 of the worker during that backfill
    redis_restarts: int
    freeze: float  # seconds the node is stopped


SMALL = Size(history=300, kills=5, redis_restarts=2, freeze=5)
FULL = Size(history=2000, kills=20, redis_restarts=5, freeze=10)


class Producer:
    """The chain moving: a block with trades on the market every `interval` seconds,
    in a thread, pausable. A frozen or unreachable node is ridden out."""

    def __init__(self, s: Stack, market: Market, interval: float = 0.4) -> None:
        self.anvil = s.anvil
        self.trader = Trader(s.anvil, market, random.Random(7))
        self.interval = interval
        self.running = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="producer", daemon=True)

    def block(self) -> None:
        self.anvil.batch(self.trader.moves())
        self.anvil.mine()

    def _run(self) -> None:
        while not self.done.is_set():
            if self.running.wait(0.2):
                with contextlib.suppress(Exception):  # the node is frozen or restarting
                    self.block()
                self.done.wait(self.interval)

    def start(self) -> None:
        self.running.set()
        if not self.thread.is_alive():
            self.thread.start()

    def pause(self) -> None:
        self.running.clear()
        time.sleep(self.interval + 0.5)  # a block under way is mined

    def close(self) -> None:
        self.done.set()
        self.running.set()
        if self.thread.is_alive():
            self.thread.join(30)


@dataclass
class Live:
    s: Stack
    redis: RedisServer
    directory: Path
    server: Server
    producer: Producer
    proxy: RpcProxy
    history: int = 0  # the last height of the history (indexed by a backfill)
    followers: list[Any] = field(default_factory=list)
    watchers: list[Watcher] = field(default_factory=list)
    stream_since: int = 1  # heights from here on were indexed since Redis last started

    def follower_log(self, i: int) -> Path:
        return self.directory / f"follower{i}.log"

    def start_follower(self, i: int) -> None:
        process = self.s.follow_process(self.follower_log(i))
        if i < len(self.followers):
            self.followers[i] = process
        else:
            self.followers.append(process)

    def active_follower(self) -> int:
        """The follower holding the lock (its log names the token it took)."""
        held = holder(self.s.client)
        assert held is not None, "no follower holds the lock"
        return next(
            i
            for i in range(len(self.followers))
            if f"active with token {held.token}\n"
            in self.follower_log(i).read_text(errors="replace")
        )

    def restart_worker(self) -> None:
        worker = self.s.workers.pop()
        worker.kill()
        self.s.start_worker()

    def settle(self, fault: str) -> None:
        """The chain moves on for a few blocks, then stops; check everything."""
        self.producer.start()
        target = self.s.anvil.head() + 3
        wait_until(lambda: self.s.anvil.head() >= target, WAIT, "the chain moving on")
        self.producer.pause()
        try:
            self.s.wait_consistent(timeout=WAIT)
            head = self.s.anvil.head()
            wait_until(
                lambda: all(w.last_block() == head for w in self.watchers),
                WAIT,
                f"every client at the head ({head})",
            )
            problems = self.problems()
            deadline = time.monotonic() + 30
            while problems and time.monotonic() < deadline:  # a price may still be on its way
                time.sleep(1)
                problems = self.problems()
            assert not problems, "\n".join(problems)
        except (AssertionError, TimeoutError) as exc:
            raise AssertionError(f"after {fault}: {exc}\n{self.tails()}") from None
        metrics = self.server.get("/metrics").text
        counted = {
            name: next(
                (line.split()[-1] for line in metrics.splitlines() if line.startswith(name)), "?"
            )
            for name in (
                "chainpulse_realtime_blocks_filled_total",
                "chainpulse_realtime_blocks_skipped_total",
            )
        }
        for w in self.watchers:
            blocks = w.seen("new-block")
            print(
                f"  {w.name}: {len(blocks)} blocks ({blocks[0]['number']}..{head}), "
                f"{len(w.seen('price-update'))} prices, {len(w.seen('disconnect'))} disconnects"
            )
        print(f"  server: {counted}")
        self.producer.start()

    def problems(self) -> list[str]:
        head = self.s.anvil.head()
        node = self.s.node_hashes(1, head)
        prices = {
            p["token"]: p["priceExact"]
            for p in requests.get(f"{self.server.url}/api/prices", timeout=10).json()
            if p["token"] in TOKENS
        }
        served = served_by(self.server.url)
        found = [p for w in self.watchers for p in w.problems(node, served, prices)]
        on_stream = set(self.s.stream_ids())
        missing = sorted(
            int(i.split(":")[2]) for i in self.s.node_ids(self.stream_since, head) - on_stream
        )
        if missing:
            found.append(f"block.indexed not on the stream for heights {missing[:10]}")
        with self.s.store.engine.connect() as conn:
            waiting = conn.execute(sa.select(sa.func.count()).select_from(m.outbox)).scalar()
        if waiting:
            found.append(f"{waiting} event(s) still in the outbox")
        differ = rows_mismatch(self.s.anvil, self.s.store.engine, range(1, head + 1))
        if differ:
            found.append(differ)
        if "Traceback" in self.server.log():
            found.append("the server logged an unhandled exception")
        return found

    def tails(self) -> str:
        logs = [self.s.tails(), f"--- server ---\n{self.server.log()[-3000:]}"]
        for i in range(len(self.followers)):
            logs.append(f"--- follower {i} ---\n{self.follower_log(i).read_text()[-2000:]}")
        return "\n".join(logs)


@contextlib.contextmanager
def live(database: str, directory: Path, redis: RedisServer, size: Size) -> Iterator[Live]:
    """The whole system over `database`, with `size.history` blocks of history not yet
    indexed, following the head, watched by the two clients."""
    settings = {**FOLLOWING, "BACKFILL_BATCH": "5"}
    with stack(database, directory, redis, **settings) as s, RpcProxy(s.anvil.url) as proxy:
        market = Market.deploy(s.anvil)
        sources = directory / "prices.toml"
        sources.write_text(market.sources())
        s.variables["PRICE_SOURCES"] = str(sources)
        s.anvil.call("evm_setAutomine", False)
        producer = Producer(s, market)
        for n in range(size.history):  # history, a trade in one block of four
            if n % 4:
                s.anvil.mine()
            else:
                producer.block()
        s.variables["ETH_RPC_URL"] = proxy.url  # every process reaches the node through it
        s.start_worker()
        server = Server(s.redis_url, s.database_url, directory)
        system = Live(s, redis, directory, server, producer, proxy, history=s.anvil.head())
        s.start = 1  # the database must hold the history too (see kill_workers_mid_backfill)
        try:
            start = system.history + 1
            for i in range(2):
                system.followers.append(
                    s.follow_process(system.follower_log(i), START_BLOCK=str(start))
                )
            wait_until(lambda: s.start_block() is not None, 60, "a follower starting")
            server.start()
            producer.start()
            wait_until(lambda: s.anvil.head() > start + 2, 60, "the chain moving")
            system.watchers += [
                PythonWatcher(server.url, TOKENS),
                JsWatcher(server.url, TOKENS, directory),
            ]
            wait_until(
                lambda: all(w.last_block() is not None for w in system.watchers),
                60,
                "the clients seeing blocks",
            )
            yield system
        finally:
            producer.close()
            for watcher in system.watchers:
                watcher.close()
            for process in system.followers:
                stop(process)
            server.stop()


# the faults ---------------------------------------------------------------------------


def kill_workers_mid_backfill(system: Live, size: Size) -> None:
    """kill -9 of the worker at random moments while it backfills the history (and
    indexes the head): the broker redelivers, the follower and `--wait` re-enqueue."""
    rng = random.Random(11)
    with Backfill(system.s, system.directory, "1", str(system.history)) as backfill:
        for _ in range(size.kills):
            time.sleep(rng.uniform(0.5, 2.5))
            system.restart_worker()
        assert backfill.wait(timeout=WAIT * 3) == 0, backfill.output()[-2000:]


def restart_redis_empty(system: Live, size: Size) -> None:
    """redis-server killed and started again on its port with nothing (no persistence):
    queue, stream, lock and cursor gone while blocks and prices stream."""
    for _ in range(size.redis_restarts):
        process = system.redis.process
        assert process is not None
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        system.redis.start()
        started = time.monotonic()
        wait_until(
            lambda: (
                "chainpulse_realtime_stream_connected 1.0" in system.server.get("/metrics").text
            ),
            10,
            "the server reading the stream again",
        )
        print(f"server back on the stream {time.monotonic() - started:.2f} s after Redis")
        system.stream_since = system.s.anvil.head() + 1
        time.sleep(2)  # blocks and prices stream before the next restart


def freeze_node(system: Live, size: Size) -> None:
    """anvil stopped (SIGSTOP) and woken (SIGCONT): calls time out, jobs retry."""
    assert system.s.anvil.process is not None
    os.kill(system.s.anvil.process.pid, signal.SIGSTOP)
    try:
        time.sleep(size.freeze)
    finally:
        os.kill(system.s.anvil.process.pid, signal.SIGCONT)


class Once:
    """A proxy rewrite that spoils the first reply to a batch (`done` is then set)."""

    def __init__(self, spoil: Callable[[Any], Any]) -> None:
        self.spoil = spoil
        self.done = threading.Event()

    def __call__(self, request: Any, reply: Any) -> Any:
        if self.done.is_set() or not isinstance(reply, list):
            return reply
        self.done.set()
        return self.spoil(reply)


def garbage_from_the_node(system: Live, size: Size) -> None:
    """One reply of the node spoiled in each way a node can answer garbage (replies
    that answer each other's calls, a receipt without its block, a wrong parent hash,
    half a batch), then HTTP 500s."""
    spoilers: list[Callable[[Any], Any]] = [
        swapped(0, 1),
        receipt_without_block_hash,
        wrong_parent,
        lambda reply: reply[: len(reply) // 2] if isinstance(reply, list) else reply,
    ]
    for spoil in spoilers:
        once = Once(spoil)
        system.proxy.rewrite = once
        wait_until(once.done.is_set, WAIT, "a reply spoiled")
        time.sleep(1)
    system.proxy.rewrite = None
    system.proxy.answer_next(3, status=500, body=b"<html>upstream trouble</html>")


def kill_the_active_follower(system: Live, size: Size) -> None:
    """kill -9 of the active follower: the standby takes over after the lock's TTL;
    the killed one comes back as a standby."""
    active = system.active_follower()
    process = system.followers[active]
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    wait_until(
        lambda: holder(system.s.client) is not None and system.active_follower() != active,
        30,
        "the standby taking over",
    )
    system.start_follower(active)


def pause_the_active_follower(system: Live, size: Size) -> None:
    """SIGSTOP of the active follower past its lease, then SIGCONT: the standby took
    over, and the woken one, its fencing token stale, stands down."""
    active = system.active_follower()
    process = system.followers[active]
    process.send_signal(signal.SIGSTOP)
    try:
        wait_until(
            lambda: holder(system.s.client) is not None and system.active_follower() != active,
            30,
            "the standby taking over",
        )
    finally:
        process.send_signal(signal.SIGCONT)
    log = system.follower_log(active)
    wait_until(
        lambda: "stand" in log.read_text(errors="replace"), 30, "the woken one standing down"
    )


def kill_the_server(system: Live, size: Size) -> None:
    """kill -9 of the web process with clients connected: they reconnect to the next
    process on that address and resume with `lastBlock`."""
    process = system.server.process
    assert process is not None
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    time.sleep(1)  # blocks indexed while no server runs
    system.server.start()


def make_sqlite_unwritable(system: Live, size: Size) -> None:
    """The SQLite database and its directory made immutable (chattr +i, which stops
    root too) for a few seconds: jobs fail with a retryable error and resume."""
    import subprocess

    folder = Path(system.s.database_url.removeprefix("sqlite:///")).parent
    paths = [folder, *folder.glob("chainpulse.db*")]
    flag = subprocess.run(["chattr", "+i", *map(str, paths)], capture_output=True)
    if flag.returncode != 0:
        print(f"chattr +i refused here ({flag.stderr.decode().strip()}): fault skipped")
        return
    try:
        time.sleep(4)
    finally:
        subprocess.run(["chattr", "-i", *map(str, paths)], check=True)


def fill_the_disk(system: Live, size: Size) -> None:
    """The SQLite database's file system full (every free block taken) until a job has
    met it, then the space back: jobs fail with a retryable error and resume."""
    database = Path(system.s.database_url.removeprefix("sqlite:///"))
    folder = database.parent
    if not os.path.ismount(folder):
        print("the database is not on a file system of the test's own: fault skipped")
        return
    # An empty WAL first: the next job's commit must grow a file, and meets the full disk
    # at once (else it waits until the reused WAL and the free pages run out).
    with contextlib.closing(sqlite3.connect(database, timeout=10)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    fillers = fill(folder)
    try:
        wait_until(lambda: "database or disk is full" in system.s.logs(), WAIT, "a job meeting it")
    finally:
        for filler in fillers:
            filler.unlink()


def terminate_postgres_connections(system: Live, size: Size) -> None:
    """pg_terminate_backend on every connection to the database, several times."""
    url = system.s.database_url
    admin = sa.create_engine(url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    try:
        for _ in range(3):
            with admin.connect() as conn:
                conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = 'chainpulse' AND pid <> pg_backend_pid()"
                    )
                )
            time.sleep(1)
    finally:
        admin.dispose()


def restart_postgres(cluster_: Cluster) -> Callable[[Live, Size], None]:
    def crash_and_restart(system: Live, size: Size) -> None:
        """The PostgreSQL cluster crashed (immediate stop) and started again."""
        cluster_.stop("immediate")
        time.sleep(2)
        cluster_.start()

    return crash_and_restart


Fault = Callable[[Live, Size], None]
COMMON: list[Fault] = [
    kill_workers_mid_backfill,
    restart_redis_empty,
    freeze_node,
    garbage_from_the_node,
    kill_the_active_follower,
    pause_the_active_follower,
    kill_the_server,
]


def run(system: Live, size: Size, faults: list[Fault]) -> None:
    for fault in faults:
        print(f"fault: {fault.__name__}")
        started = time.monotonic()
        try:
            fault(system, size)
        except (AssertionError, TimeoutError) as exc:
            raise AssertionError(f"during {fault.__name__}: {exc}\n{system.tails()}") from None
        thrown = time.monotonic()
        system.settle(fault.__name__)
        took = time.monotonic() - thrown
        print(f"  {thrown - started:.1f} s, then settled and checked in {took:.1f} s")


SQLITE: list[Fault] = [*COMMON, make_sqlite_unwritable, fill_the_disk]


def sqlite_on(disk: Path | None) -> str:
    """The SQLite database, on a file system of the test's own (one that can fill up)
    where the machine allows one."""
    return f"sqlite:///{disk}/chainpulse.db" if disk is not None else "sqlite"


@pytest.mark.parametrize(
    "size",
    [pytest.param(SMALL, marks=pytest.mark.slow), pytest.param(FULL, marks=pytest.mark.slow)],
    ids=["small", "full"],
)
def test_the_gauntlet_on_sqlite(tmp_path: Path, redis_server: RedisServer, size: Size) -> None:
    with (
        small_disk(tmp_path) as disk,
        live(sqlite_on(disk), tmp_path, redis_server, size) as system,
    ):
        run(system, size, SQLITE)


@pytest.mark.slow
def test_the_full_gauntlet_on_postgresql(tmp_path: Path, redis_server: RedisServer) -> None:
    with cluster() as pg, live(pg.url, tmp_path, redis_server, FULL) as system:
        run(system, FULL, [*COMMON, terminate_postgres_connections, restart_postgres(pg)])
