"""`chainpulse dev`: the production stack on this machine, on embedded defaults.

1. Settings: the environment and `./.env` as every command reads them, over dev
   defaults (a SQLite database in `.dev/`, a dev JWT secret, a fast poll).
2. Redis: the one at REDIS_URL, or a `redis-server` started there.
3. The node: one answering at ETH_RPC_URL is indexed as it is. Otherwise an anvil is
   started there (state in `.dev/anvil-state.json`, a block a second) with the market
   of `chainpulse.market` deployed on it, a price sources file for it
   (`.dev/prices.toml`, unless PRICE_SOURCES is set) and an activity generator.
   With `--chains 2`, a second anvil on the next port (chain id 31338, a block every
   2 s, `.dev/anvil-state-2.json`) with a market of its own (its tokens tagged `.2`),
   both in a chains file, `.dev/chains.toml` (docs/chains.md).
4. `.dev/settings.env`: what was chosen, for the other commands in this folder.
5. The Procfile, with honcho: `release` on its own first, then `web`, `worker` and
   `follower`, with `web` on PORT, the virtualenv's `bin` first on PATH and no `.env`
   of honcho's own (settings come through the environment).

Ctrl-C (or SIGTERM) stops honcho, which stops its processes (SIGTERM, SIGKILL after
5 s); anything still running after that is killed, so nothing is left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import redis

from chainpulse import devfile
from chainpulse.contracts import artifacts
from chainpulse.devnet import (
    Activity,
    Anvil,
    RedisServer,
    alive,
    free_port,
    port_open,
    wait_until,
)
from chainpulse.market import Market, Trader
from chainpulse.settings import Settings
from indexer.errors import ConfigError
from indexer.urls import mask_url

DEV_DIR = Path(".dev")
DEV_SECRET = "chainpulse-dev-secret-not-for-production-use"
PROCESSES = ("web", "worker", "follower")  # the Procfile's long-running types, web first
HONCHO_GRACE_S = 5  # honcho's own SIGTERM-to-SIGKILL wait
SECOND_BLOCK_TIME = 2  # seconds between the second chain's blocks (--chains 2)
LOOPBACK = ("127.0.0.1", "localhost", "::1")
# anvil's epoch: its safe block is 4 below the head and its finalized 8 (32 and 64 by
# default), so that the page's finality marks move within seconds
SLOTS = ("--slots-in-an-epoch", "4")
# the worker's and the follower's usual metrics ports (docs/configuration.md)
METRICS_PORTS = {"WORKER_METRICS_PORT": 9101, "FOLLOWER_METRICS_PORT": 9102}


def run(fresh: bool = False, chains: int = 1) -> int:
    if fresh and DEV_DIR.exists():
        shutil.rmtree(DEV_DIR)
    DEV_DIR.mkdir(exist_ok=True)
    procfile = find_procfile()
    from dotenv import dotenv_values

    env: dict[str, str] = {
        "DATABASE_URL": f"sqlite:///{(DEV_DIR / 'chainpulse.db').resolve()}",
        "JWT_SECRET": DEV_SECRET,
        "POLL_INTERVAL": "0.2",
        **{k: v for k, v in dotenv_values(".env").items() if v is not None},
        **os.environ,
    }
    settings = Settings.from_env(env, dotenv=False)
    stop = threading.Event()
    # SIGTERM while starting (a market deploy takes a while): stop, and let the exit
    # stack stop what was started; once running, SIGTERM stops it as Ctrl-C does
    signal.signal(signal.SIGTERM, _interrupt)
    with contextlib.ExitStack() as stack:
        if not _redis_answers(settings.redis_url):
            port = urlsplit(settings.redis_url).port or 6379
            print(f"dev: starting redis-server on port {port}")
            stack.enter_context(RedisServer(port=port))
        if chains > 1 and "CHAINS" in env:
            raise ConfigError("chainpulse dev --chains 2 writes its own chains file: unset CHAINS")
        anvil, ours = _node(settings.rpc_urls[0], stack)
        nodes: list[tuple[Anvil, Market]] = []
        if ours:
            market = _market(anvil, "")
            nodes.append((anvil, market))
            sources = DEV_DIR / "prices.toml"
            sources.write_text(market.sources())
            if "PRICE_SOURCES" not in os.environ and chains == 1:
                env["PRICE_SOURCES"] = str(sources.resolve())
        elif chains > 1:
            raise ConfigError(
                f"chainpulse dev --chains 2 starts its own anvils, but a node answers at "
                f"{mask_url(settings.rpc_urls[0])}: stop it"
            )
        if chains > 1:
            second = _second_anvil(anvil, stack)
            market2 = _market(second, "-2")  # deployed while it mines each transaction
            second.call("evm_setIntervalMining", SECOND_BLOCK_TIME)
            nodes.append((second, market2))
            (DEV_DIR / "prices-2.toml").write_text(market2.sources(".2"))
            env["CHAINS"] = str(_chains_file(anvil, second).resolve())
            env.pop("ETH_RPC_URL", None)
        if nodes and "CONTRACTS" not in os.environ:
            env["CONTRACTS"] = str(_contracts_file(nodes, chains > 1).resolve())
        for name, usual in METRICS_PORTS.items():
            if name not in env:
                env[name] = str(metrics_port(usual))
        settings = Settings.from_env(env, dotenv=False)  # with the price sources
        chosen = {
            "DATABASE_URL": settings.database_url,
            "REDIS_URL": settings.redis_url,
            "PORT": str(settings.port),
            "JWT_SECRET": env["JWT_SECRET"],
            "POLL_INTERVAL": env["POLL_INTERVAL"],
            **{name: env[name] for name in METRICS_PORTS},
        }
        if settings.chains_file is not None:
            chosen["CHAINS"] = str(settings.chains_file)
        else:
            chosen["ETH_RPC_URL"] = ",".join(settings.rpc_urls)
        if settings.price_sources is not None:
            chosen["PRICE_SOURCES"] = str(settings.price_sources)
        if settings.contracts_file is not None:
            chosen["CONTRACTS"] = settings.contracts_file.path
        devfile.write(chosen)
        stack.callback(devfile.remove)
        env.update(chosen)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"

        honcho = [sys.executable, "-m", "honcho", "--env", os.devnull, "-f", str(procfile)]
        release = subprocess.run([*honcho, "start", "release"], env=env, check=False)
        if release.returncode != 0:
            print(f"dev: the Procfile's release step failed (exit {release.returncode})")
            return 2
        started = subprocess.Popen(
            [*honcho, "start", "--port", str(settings.port), *PROCESSES],
            env=env,
            start_new_session=True,
        )
        stack.callback(_stop, started)
        for node, node_market in nodes:
            thread = threading.Thread(target=_generate, args=(node, node_market, stop), daemon=True)
            thread.start()
        stack.callback(stop.set)
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: port_open(settings.port), 30, "the realtime server")
        _banner(settings, ours)
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while not stop.is_set():
                if started.poll() is not None:
                    print(f"dev: honcho exited with code {started.returncode}; stopping")
                    return 1
                stop.wait(0.5)
        except KeyboardInterrupt:
            print("\ndev: stopping")
    return 0


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def find_procfile() -> Path:
    """The Procfile of this folder, else of the checkout chainpulse runs from."""
    for candidate in (Path("Procfile"), Path(__file__).resolve().parents[1] / "Procfile"):
        if candidate.is_file():
            return candidate.resolve()
    raise ConfigError("chainpulse dev runs the Procfile: start it in a chainpulse checkout")


def _node(url: str, stack: contextlib.ExitStack) -> tuple[Anvil, bool]:
    """The node at `url`, and whether it is an anvil started here."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 8545
    if port_open(port, host):
        print(f"dev: indexing the node at {mask_url(url)} (no anvil, no activity generator)")
        return Anvil(port=port), False
    if host not in LOOPBACK:
        raise ConfigError(f"no node answers at {mask_url(url)}")
    print(f"dev: starting anvil on port {port} (state in {DEV_DIR}/anvil-state.json)")
    anvil = Anvil(
        port=port,
        block_time=1,
        extra_args=["--state", str(DEV_DIR / "anvil-state.json"), *SLOTS],
    )
    stack.enter_context(anvil)
    return anvil, True


def _market(anvil: Anvil, suffix: str) -> Market:
    """The dev market on `anvil` (`.dev/market{suffix}.json`), deployed if missing."""
    path = DEV_DIR / f"market{suffix}.json"
    market, deployed = Market.load_or_deploy(anvil, path)
    said = "deployed" if deployed else "found"
    print(
        f"dev: {said} the market on chain {anvil.chain_id}: a Uniswap V2 pair, a Uniswap "
        f"V3 pool and a Chainlink feed ({path})"
    )
    return market


def _second_anvil(first: Anvil, stack: contextlib.ExitStack) -> Anvil:
    """The second chain: an anvil on the port after the first's (another when that is
    taken), chain id 31338, a block every 2 s."""
    port = (urlsplit(first.url).port or 8545) + 1
    if port_open(port):
        port = free_port()
    print(
        f"dev: starting anvil on port {port}, chain 31338 (state in {DEV_DIR}/anvil-state-2.json)"
    )
    second = Anvil(
        port=port,
        chain_id=31338,
        extra_args=["--state", str(DEV_DIR / "anvil-state-2.json"), *SLOTS],
    )
    stack.enter_context(second)
    return second


def _chains_file(first: Anvil, second: Anvil) -> Path:
    """`.dev/chains.toml`: the two anvils, each with its market's price sources."""
    path = DEV_DIR / "chains.toml"
    path.write_text(
        "# Written by `chainpulse dev --chains 2` (docs/chains.md).\n\n"
        f'[[chain]]\nname = "anvil"\nchain_id = {first.chain_id}\nrpc = "{first.url}"\n'
        f'prices = "prices.toml"\n\n'
        f'[[chain]]\nname = "anvil-2"\nchain_id = {second.chain_id}\nrpc = "{second.url}"\n'
        f'prices = "prices-2.toml"\n'
    )
    return path


def _contracts_file(nodes: list[tuple[Anvil, Market]], named: bool) -> Path:
    """`.dev/contracts.toml`: each market's token transfers and pair events, decoded
    (docs/contracts.md); the token's ABI beside it."""
    abis = DEV_DIR / "abis"
    abis.mkdir(exist_ok=True)
    (abis / "TestToken.json").write_text(json.dumps(artifacts()["TestToken"]["abi"], indent=1))
    entries = [
        market.contracts("" if i == 0 else f"-{i + 1}", ("anvil", "anvil-2")[i] if named else None)
        for i, (_, market) in enumerate(nodes)
    ]
    path = DEV_DIR / "contracts.toml"
    path.write_text(
        "# Written by `chainpulse dev` for the contracts it deployed (docs/contracts.md).\n\n"
        + "\n".join(entries)
    )
    return path


def metrics_port(usual: int) -> int:
    """`usual` when a metrics server could listen on it (on every interface, as it
    does), else a free port: a second dev stack on this host, or another process on it."""
    with socket.socket() as sock:
        try:
            sock.bind(("", usual))
        except OSError:
            return free_port()
    return usual


def _redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def _banner(settings: Settings, ours: bool) -> None:
    from realtime.auth import issue_token

    token = issue_token(settings, "dev-user", 24 * 3600)
    chain = "anvil with the test market and live activity" if ours else "an existing node"
    nodes = "".join(
        f"  JSON-RPC node  {mask_url(view.rpc_urls[0])}"
        + (f" (chain {view.chain_name}, id {view.chain_id})" if view.chain_id else "")
        + "\n"
        for view in settings.chains()
    )
    prices = (
        f"  price sources  {settings.price_sources or 'none'}\n"
        if settings.chains_file is None
        else f"  chains file    {settings.chains_file} (each chain's price sources in it)\n"
    )
    print(
        "\n"
        f"  chainpulse is running ({chain})\n"
        f"  demo page      http://127.0.0.1:{settings.port}/\n"
        f"  Socket.IO      ws://127.0.0.1:{settings.port}/realtime\n"
        f"{nodes}"
        f"  Redis          {mask_url(settings.redis_url)}\n"
        f"  database       {mask_url(settings.database_url)}\n"
        f"{prices}"
        f"  metrics        server http://127.0.0.1:{settings.port}/metrics,"
        f" worker :{settings.worker_metrics_port or 'off'},"
        f" follower :{settings.follower_metrics_port or 'off'}\n"
        f"  dev token      {token}\n"
        f"  (sub dev-user, 24 h)\n"
        f"  Other chainpulse commands in this folder (status, backfill, price set, token)\n"
        f"  use these settings while this runs: {devfile.PATH}.\n"
        "  Ctrl-C stops everything.\n",
        flush=True,
    )


def _generate(anvil: Anvil, market: Market, stop: threading.Event) -> None:
    """Every second: transfers, logs, now and then a revert or a deployment, ERC-20
    transfers, and trades on the pair, the pool and the feed."""
    activity: Activity | None = None
    trader: Trader | None = None
    while not stop.wait(1.0):
        try:
            activity = activity or Activity(anvil)
            trader = trader or Trader(anvil, market)
            calls = activity.transactions(
                random.randint(1, 8),
                log_share=0.5,
                reverts=random.randint(0, 1),
                deploys=1 if random.random() < 0.05 else 0,
            )
            anvil.batch([*calls, *trader.moves()])
        except Exception as exc:  # the node may be restarting; try again next second
            print(f"dev: activity paused: {exc}", flush=True)
            activity = trader = None


def _stop(honcho: subprocess.Popen[bytes]) -> None:
    """Stop honcho (it stops its processes); then kill whatever is left of them."""
    tree = _descendants(honcho.pid)
    if honcho.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(honcho.pid, signal.SIGTERM)
    try:
        honcho.wait(HONCHO_GRACE_S + 5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(honcho.pid, signal.SIGKILL)
        honcho.wait()
    deadline = time.monotonic() + 5
    for pid in tree:
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc; elsewhere none are known)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found
