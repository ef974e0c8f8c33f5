"""`chainpulse dev`: the whole stack on this machine, on embedded defaults.

Starts (or reuses) a Redis server, a local anvil chain that keeps its state in
`.dev/anvil-state.json` and mines a block a second, chain activity (transfers, logs,
reverts, deployments) and moving prices for a few tokens, then the Procfile's
processes: a worker, the follower and the realtime server. Ctrl-C stops them all.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import redis

from chainpulse.devnet import Activity, Anvil, RedisServer, port_open, wait_until
from chainpulse.settings import Settings
from indexer import outbox
from indexer.bus import EventBus
from indexer.config import mask_url
from indexer.prices import record_manual_price
from indexer.schema import upgrade
from indexer.store import Store

DEV_DIR = Path(".dev")
TOKENS = {"ETH": Decimal("3000"), "BTC": Decimal("65000"), "USDC": Decimal("1")}
DEV_SECRET = "chainpulse-dev-secret-not-for-production-use"


def run(fresh: bool = False) -> None:
    if fresh and DEV_DIR.exists():
        shutil.rmtree(DEV_DIR)
    DEV_DIR.mkdir(exist_ok=True)
    base = Settings.from_env()
    env = dict(os.environ)
    env.setdefault("DATABASE_URL", f"sqlite:///{DEV_DIR / 'chainpulse.db'}")
    env.setdefault("JWT_SECRET", DEV_SECRET)
    env.setdefault("POLL_INTERVAL", "0.2")
    settings = Settings.from_env(env, dotenv=False)
    stop = threading.Event()
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    with contextlib.ExitStack() as stack:
        if not _redis_answers(settings.redis_url):
            port = urlsplit(settings.redis_url).port or 6379
            print(f"dev: starting redis-server on port {port}")
            stack.enter_context(RedisServer(port=port))
        rpc = urlsplit(settings.rpc_urls[0])
        if port_open(rpc.port or 8545, rpc.hostname or "127.0.0.1"):
            print(f"dev: using the node already answering at {mask_url(settings.rpc_urls[0])}")
            anvil = Anvil(port=rpc.port or 8545)
        else:
            print(
                f"dev: starting anvil on port {rpc.port or 8545} "
                f"(state in {DEV_DIR}/anvil-state.json)"
            )
            anvil = Anvil(
                port=rpc.port or 8545,
                block_time=1,
                extra_args=["--state", str(DEV_DIR / "anvil-state.json")],
            )
            stack.enter_context(anvil)
        upgrade(settings.database_url)
        print(f"dev: database {mask_url(settings.database_url)} is up to date")

        bin_dir = Path(sys.executable).parent
        commands = {
            "worker": [
                str(bin_dir / "celery"),
                "-A",
                "workers",
                "worker",
                "-Q",
                "blocks",
                "--concurrency",
                "2",
                "-l",
                "warning",
            ],
            "follower": [str(bin_dir / "chainpulse"), "follow"],
            "web": [str(bin_dir / "chainpulse"), "serve"],
        }
        for name, argv in commands.items():
            children.append((name, subprocess.Popen(argv, env=env, start_new_session=True)))
        stack.callback(_stop_children, children)

        threading.Thread(target=_activity, args=(anvil, stop), daemon=True).start()
        threading.Thread(target=_prices, args=(settings, stop), daemon=True).start()
        stack.callback(stop.set)

        with contextlib.suppress(TimeoutError):
            wait_until(lambda: port_open(settings.port), 20, "the realtime server")
        _banner(settings, base)
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while not stop.is_set():
                for name, child in children:
                    if child.poll() is not None:
                        print(
                            f"dev: {name} exited with code {child.returncode}; stopping the stack"
                        )
                        stop.set()
                stop.wait(1.0)
        except KeyboardInterrupt:
            print("\ndev: stopping")


def _redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def _banner(settings: Settings, base: Settings) -> None:
    from realtime.auth import issue_token

    token = issue_token(settings, "dev-user", 24 * 3600)
    signer = "JWT_SECRET" if base.jwt_secret else "the built-in dev secret"
    print(
        "\n"
        f"  chainpulse is running\n"
        f"  demo page      http://127.0.0.1:{settings.port}/\n"
        f"  Socket.IO      ws://127.0.0.1:{settings.port}/realtime\n"
        f"  JSON-RPC node  {mask_url(settings.rpc_urls[0])}\n"
        f"  Redis          {mask_url(settings.redis_url)}\n"
        f"  database       {mask_url(settings.database_url)}\n"
        f"  dev token      {token}\n"
        f"  (sub dev-user, 24 h; signed with {signer})\n"
        "  Ctrl-C stops everything.\n"
    )


def _activity(anvil: Anvil, stop: threading.Event) -> None:
    """A few transactions every second: transfers, logs, now and then a revert or deploy."""
    activity: Activity | None = None
    while not stop.wait(1.0):
        try:
            activity = activity or Activity(anvil)
            count = random.randint(2, 12)
            calls = activity.transactions(
                count,
                log_share=0.5,
                reverts=random.randint(0, 1),
                deploys=1 if random.random() < 0.05 else 0,
            )
            anvil.batch(calls)
        except Exception as exc:  # the node may be restarting; try again next second
            print(f"dev: activity paused: {exc}")
            activity = None


def _prices(settings: Settings, stop: threading.Event) -> None:
    """A random walk for each token, recorded as manual prices every two seconds."""
    prices = dict(TOKENS)
    store = Store(settings.database_url)
    bus = EventBus.from_url(settings.redis_url, settings.stream_key, settings.stream_maxlen)
    try:
        while not stop.wait(2.0):
            for token, price in prices.items():
                step = Decimal(str(round(random.gauss(0, 0.002), 6)))
                prices[token] = (price * (1 + step)).quantize(Decimal("0.000001"))
                try:
                    record_manual_price(store, token, prices[token], quote="USD")
                    outbox.relay(store, bus)
                except Exception as exc:
                    print(f"dev: price update failed: {exc}")
    finally:
        bus.close()
        store.dispose()


def _stop_children(children: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    for _, child in children:
        if child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for _, child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
