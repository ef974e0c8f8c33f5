"""Chains in one deployment, as the chain tests drive it: two anvils (or three) with their
own chain ids, one CHAINS file, one worker, one follower process and one web process,
over SQLite (or PostgreSQL). A test picks another layout with
`@pytest.mark.parametrize("chains", [Layout(3, "postgresql")], indirect=True)`."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from chainpulse import protocols
from chainpulse.contracts import Contracts, artifacts
from chainpulse.devnet import Activity, Anvil, RedisServer, wait_until
from indexer.store import Store
from tests.harness.databases import database as make_database
from tests.harness.environment import CHAINPULSE, service_env
from tests.harness.processes import stop
from tests.harness.realtime import Server
from tests.harness.rows import rows_mismatch
from tests.harness.stack import FOLLOWING, fresh_redis
from tests.harness.worker import Worker
from workers.jobs import QUEUE

PRIMARY, OTHER, THIRD = 31337, 31338, 31339
NAMES = ("one", "two", "three")


@dataclass(frozen=True)
class Layout:
    count: int = 2  # chains, PRIMARY first
    database: str = "sqlite"
    contracts: bool = False  # a TestToken per chain and the Uniswap V2 factory, decoded

    def __str__(self) -> str:
        return f"{self.count}-chains-{self.database}" + ("-contracts" if self.contracts else "")


PAIR_CREATED = "PairCreated(address indexed token0, address indexed token1, address pair, uint256)"
SWAP = (
    "event Swap(address indexed sender, uint256 amount0In, uint256 amount1In, "
    "uint256 amount0Out, uint256 amount1Out, address indexed to)"
)
SYNC = "event Sync(uint112 reserve0, uint112 reserve1)"


@dataclass
class Deployed:
    """What `Layout(contracts=True)` deploys, and the contracts file naming it: `Token`
    (the primary's TestToken), `Token2` (the second chain's), `Pair` (every pair of the
    primary's Uniswap V2 factory)."""

    contracts: dict[int, Contracts]
    tokens: dict[int, str]
    factory: str
    path: Path

    @classmethod
    def deploy(cls, anvils: dict[int, Anvil], directory: Path) -> Deployed:
        contracts = {chain: Contracts(anvil) for chain, anvil in anvils.items()}
        tokens = {chain: protocols.token(c, "TK", 18) for chain, c in contracts.items()}
        factory = contracts[PRIMARY].deploy("UniswapV2Factory", contracts[PRIMARY].sender)
        (directory / "token.json").write_text(json.dumps(artifacts()["TestToken"]["abi"]))
        path = directory / "contracts.toml"
        path.write_text(
            f'[[contract]]\nname = "Token"\nchain = "one"\naddress = "{tokens[PRIMARY]}"\n'
            'abi = "token.json"\n\n'
            f'[[contract]]\nname = "Token2"\nchain = "two"\naddress = "{tokens[OTHER]}"\n'
            'abi = "token.json"\nevents = ["Transfer"]\n\n'
            f'[[contract]]\nname = "Pair"\nevents = ["{SWAP}", "{SYNC}"]\n'
            f'factory = {{ address = "{factory}", event = "{PAIR_CREATED}", parameter = "pair" }}\n'
        )
        return cls(contracts, tokens, factory, path)


@dataclass
class Chains:
    anvils: dict[int, Anvil]
    activity: dict[int, Activity]
    env: dict[str, str]
    store: Store
    server: Server
    directory: Path
    workers: list[Worker]  # stopped at the end; a test may kill one and start another
    deployed: Deployed | None = None  # with Layout(contracts=True)

    def mine(self, chain: int, count: int = 1) -> None:
        for _ in range(count):
            self.activity[chain].block(count=2, log_share=0.5)

    def wait_indexed(self, timeout: float = 60) -> None:
        """Every chain's stored rows equal its node's, from its first block."""
        last: list[str | None] = [None]

        def equal() -> bool:
            for chain, anvil in self.anvils.items():
                start = self.start(chain)
                if start is None:
                    last[0] = f"chain {chain}: the follower has not started"
                    return False
                last[0] = rows_mismatch(anvil, self.store.engine, range(start, anvil.head() + 1))
                if last[0] is not None:
                    last[0] = f"chain {chain}: {last[0]}"
                    return False
            return True

        try:
            wait_until(equal, timeout, "every chain indexed", interval=0.2)
        except TimeoutError:
            raise AssertionError(last[0]) from None

    def start(self, chain: int) -> int | None:
        value = Store(self.store.url, self.store.engine, chain_id=chain).get_meta("follow_from")
        return None if value is None else int(value)

    def queued(self) -> int:
        """Jobs waiting on the `blocks` queue."""
        client = redis.Redis.from_url(self.env["REDIS_URL"])
        try:
            return int(client.llen(QUEUE))
        finally:
            client.close()

    def running(self) -> bool:
        """Whether a worker has a job it took and has not acknowledged."""
        client = redis.Redis.from_url(self.env["REDIS_URL"])
        try:
            return int(client.hlen("unacked")) > 0
        finally:
            client.close()

    def start_worker(self) -> Worker:
        worker = Worker(self.env, self.directory, concurrency=2).start().wait_ready()
        self.workers.append(worker)
        return worker

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CHAINPULSE, *args],
            env=self.env,
            cwd=self.directory,
            capture_output=True,
            text=True,
            timeout=60,
        )


@pytest.fixture
def chains(
    tmp_path: Path, redis_server: RedisServer, request: pytest.FixtureRequest
) -> Iterator[Chains]:
    """Everything it starts is stopped however the test (or the start) ends: a process
    left running would take the next test's jobs from the session's Redis."""
    layout: Layout = getattr(request, "param", Layout())
    redis_url = fresh_redis(redis_server)
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(make_database(layout.database, tmp_path))
        anvils = {
            PRIMARY + i: stack.enter_context(Anvil(chain_id=PRIMARY + i))
            for i in range(layout.count)
        }
        (tmp_path / "chains.toml").write_text(
            "\n".join(
                f'[[chain]]\nname = "{name}"\nchain_id = {chain}\nrpc = "{anvil.url}"\n'
                for name, (chain, anvil) in zip(NAMES, anvils.items(), strict=False)
            )
        )
        deployed = Deployed.deploy(anvils, tmp_path) if layout.contracts else None
        decoded = {"CONTRACTS": str(deployed.path)} if deployed else {}
        env = service_env(
            DATABASE_URL=url,
            REDIS_URL=redis_url,
            CHAINS=str(tmp_path / "chains.toml"),
            BACKFILL_BATCH="5",
            FOLLOWER_METRICS_PORT="0",
            **decoded,
            **FOLLOWING,
        )
        assert subprocess.run([CHAINPULSE, "db", "upgrade"], env=env, check=False).returncode == 0
        activity = {chain: Activity(anvil) for chain, anvil in anvils.items()}
        for each in activity.values():
            each.deploy_pinger()
        server = Server(redis_url, url, tmp_path, CHAINS=str(tmp_path / "chains.toml"), **decoded)
        stack.callback(server.stop)
        server.start(timeout=60)
        store = Store(url)
        stack.callback(store.dispose)
        workers: list[Worker] = []
        stack.callback(lambda: [each.stop() for each in workers])
        chains = Chains(anvils, activity, env, store, server, tmp_path, workers, deployed)
        chains.start_worker()
        log = stack.enter_context((tmp_path / "follower.log").open("ab"))
        follower = subprocess.Popen(
            [CHAINPULSE, "follow"], env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT
        )
        stack.callback(stop, follower)
        yield chains
