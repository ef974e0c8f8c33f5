"""bench/chains: several chains in one deployment against one chain at the same total
rate, and one chain's frozen node against the others' latency, in one run.

Each run starts its own stack on loopback: anvils without automine (one per chain,
chain ids 31337, 31338, ...), each with seven real Uniswap V2 pairs priced by a sources
file of its own, Redis, a database, one Celery worker (`--concurrency 2`), `chainpulse
follow` (polling every 100 ms) and `chainpulse serve`, and CLIENTS official
socket.io-client connections, each subscribed to `blocks:<id>` of every chain but the
primary (whose blocks every client gets); the first also to every price room, to count
the `price-update`s. A driver mines each chain's blocks (two transfers each, and swaps
on its pairs: PRICES price updates per second in all, spread over the blocks) at its
rate, each at a random moment within its slot.

  one     one chain (no chains file: today's deployment) at CHAINS blocks/s
  many    CHAINS chains at 1 block/s each (a chains file): the same total rates
  frozen  the same stack, the last chain's anvil stopped (SIGSTOP) for FREEZE s while
          the others stream, right after a burst of 400 blocks that the follower sends
          out as backfill jobs (they wait on the frozen node, ETH_RPC_TIMEOUT per
          attempt, and with no bound would hold every worker process); then it resumes
          and its blocks arrive again

Latency is a block's mining (the moment `evm_mine` returns) to its `new-block` at each
client; p50/p99 per chain, over every (block, client) arrival. The verdict compares
each chain's p99 in `many`, and the other chains' in `frozen` and after it, with the
one-chain run's (target: within its normal range, here at most 1.5x the one-chain p99
plus 50 ms); the frozen chain's own catching up is reported, not judged.
`--slots 2` (the workers' concurrency: no bound) shows what `CHAIN_JOB_SLOTS` prevents.

Usage: .venv/bin/python -m bench.chains.run [--clients 1000] [--chains 3]
       [--prices 20] [--seconds 40] [--freeze 30] [--database sqlite|postgresql]
Results also go to bench/results/chains-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from bench.latency.run import pct, spawn
from chainpulse import protocols
from chainpulse.contracts import Contracts
from chainpulse.devnet import Anvil, RedisServer, free_port, port_open, wait_until
from indexer.schema import upgrade
from tests.harness.databases import database
from tests.harness.environment import service_env

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"
FIRST_ID = 31337
BURST = 400  # blocks the frozen chain mines just before it freezes
PAIRS = 7  # priced pairs per chain: at most one swap each per block


class Pairs:
    """PAIRS real Uniswap V2 pairs (tokens T0..T6, each against USDC) on one chain, made
    by the real factory; each prices `T<i>.<chainId>`."""

    def __init__(self, anvil: Anvil) -> None:
        self.chain_id = anvil.chain_id
        anvil.call("evm_setAutomine", True)
        try:
            c = Contracts(anvil)
            usdc = protocols.token(c, "USDC", 6)
            factory = c.deploy("UniswapV2Factory", c.sender)
            self.pairs = [
                protocols.V2Pair.create(
                    c, factory, protocols.token(c, f"T{i}", 18), 10**21, usdc, 3 * 10**12
                )
                for i in range(PAIRS)
            ]
        finally:
            anvil.call("evm_setAutomine", False)
        self.usdc = usdc
        self.turn = 0
        self.due = 0.0  # price updates owed to the schedule

    def sources(self, path: Path) -> Path:
        path.write_text(
            "".join(
                f'[[source]]\nname = "t{i}-{self.chain_id}"\nkind = "uniswap_v2"\n'
                f'token = "T{i}.{self.chain_id}"\nprice_of = "T{i}"\nquote = "USDC"\n'
                f'address = "{pair.address}"\n\n'
                for i, pair in enumerate(self.pairs)
            )
        )
        return path

    def swaps(self, per_block: float) -> list[tuple[str, list[Any]]]:
        """This block's swaps: `per_block` on average, each on another pair, the
        direction alternating, so that every swap moves a price."""
        self.due += per_block
        count = min(PAIRS, int(self.due))
        self.due -= count
        calls: list[tuple[str, list[Any]]] = []
        if not count:
            return calls
        contracts = self.pairs[0].contracts
        # the sender's transactions of one batch: numbered here (anvil would give them
        # one nonce each when it takes the batch's calls at once)
        nonce = int(
            contracts.anvil.call("eth_getTransactionCount", contracts.sender, "pending"), 16
        )
        for _ in range(count):
            pair = self.pairs[self.turn % PAIRS]
            usdc_in = (self.turn // PAIRS) % 2 == 1
            amount = 3 * 10**9 if usdc_in else 10**18  # 3,000 USDC or one T
            zero_for_one = (pair.token0 == self.usdc) == usdc_in
            for tx in pair.swap_calls(amount, zero_for_one):
                calls.append(("eth_sendTransaction", [{**tx, "nonce": hex(nonce)}]))
                nonce += 1
            self.turn += 1
        return calls


class Miner(threading.Thread):
    """Mines `anvil`'s blocks at `rate` per second until `done`; skips while `paused`."""

    def __init__(self, anvil: Anvil, rate: float, pairs: Pairs, prices_per_block: float) -> None:
        super().__init__(daemon=True)
        self.anvil = anvil
        self.rate = rate
        self.pairs = pairs
        self.prices_per_block = prices_per_block
        self.mined: dict[tuple[int, int], float] = {}  # (chain, number) -> epoch s
        self.paused = threading.Event()
        self.done = threading.Event()
        # freeze the node right after the next block is mined: its job is in flight
        self.freeze_next = threading.Event()
        self.froze = threading.Event()
        self.accounts = anvil.accounts()

    def run(self) -> None:
        interval = 1 / self.rate
        slot = time.monotonic()
        i = 0
        while not self.done.is_set():
            slot += interval
            time.sleep(max(0.0, slot + random.uniform(0, interval) - time.monotonic()))
            if self.paused.is_set():
                continue
            transfers = [
                (
                    "eth_sendTransaction",
                    [{"from": self.accounts[1 + (i + k) % 9],
                      "to": self.accounts[1 + (i + k + 1) % 9], "value": "0x1"}],
                )
                for k in range(2)
            ]  # fmt: skip
            self.anvil.batch(transfers + self.pairs.swaps(self.prices_per_block))
            self.anvil.call("evm_mine")
            self.mined[(self.anvil.chain_id, self.anvil.head())] = time.time()
            i += 1
            if self.freeze_next.is_set():
                self.freeze_next.clear()
                self.paused.set()
                # a burst the follower sends out as backfill jobs, then the node stops
                # answering: those jobs wait on it, ETH_RPC_TIMEOUT per attempt
                self.anvil.call("anvil_mine", hex(BURST))
                time.sleep(0.25)  # the follower polls every 0.1 s
                self.anvil.pause()
                self.froze.set()


class Clients:
    """bench/chains/clients.js: `count` connections subscribed to `rooms`, the first also
    to the `price:` rooms of `tokens`."""

    def __init__(self, url: str, count: int, rooms: list[int], tokens: list[str]) -> None:
        self.process = subprocess.Popen(
            [
                "node",
                str(ROOT / "bench" / "chains" / "clients.js"),
                url + "/realtime",
                str(count),
                ",".join(str(r) for r in rooms),
                ",".join(tokens),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.ready = int(json.loads(self.process.stdout.readline())["ready"])

    def report(self) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("report\n")
        self.process.stdin.flush()
        report: dict[str, Any] = json.loads(self.process.stdout.readline())
        self.process.wait(30)
        return report


def latencies(
    report: dict[str, Any], mined: dict[tuple[int, int], float], anvils: dict[int, Anvil],
    since: float, until: float,
) -> dict[int, dict[str, Any]]:  # fmt: skip
    """Per chain: p50/p99 of mined -> arrival over blocks mined in [since, until)."""
    by_chain: dict[int, list[float]] = {}
    blocks: dict[int, int] = {}
    for (chain, number), at in mined.items():
        if not since <= at < until:
            continue
        block_hash = anvils[chain].block(number)["hash"]
        arrivals = report["arrivals"].get(f"{chain}:{number}:{block_hash}", [])
        by_chain.setdefault(chain, []).extend(a - at * 1000 for a in arrivals)
        blocks[chain] = blocks.get(chain, 0) + 1
    return {
        chain: {"blocks": blocks[chain], "arrivals": len(values), "p50": pct(values, 50),
                "p99": pct(values, 99)}
        for chain, values in sorted(by_chain.items())
    }  # fmt: skip


def start_stack(
    stack: ExitStack,
    workdir: Path,
    url: str,
    redis_url: str,
    anvils: list[Anvil],
    file: bool,
    slots: int | None,
    sources: dict[int, Path],
) -> str:
    """The worker, follower and server over `anvils`, each priced by its `sources`
    file; the server's URL."""
    env = service_env(
        DATABASE_URL=url,
        REDIS_URL=redis_url,
        WORKER_METRICS_PORT=str(free_port()),
        FOLLOWER_METRICS_PORT="0",
        POLL_INTERVAL="0.1",
        LOG_LEVEL="warning",
        PYTHONWARNINGS="ignore",
    )
    if slots is not None:
        env["CHAIN_JOB_SLOTS"] = str(slots)
    if file:
        chains = workdir / "chains.toml"
        chains.write_text(
            "".join(
                f'[[chain]]\nname = "c{a.chain_id}"\nchain_id = {a.chain_id}\nrpc = "{a.url}"\n'
                f'prices = "{sources[a.chain_id]}"\n\n'
                for a in anvils
            )
        )
        env["CHAINS"] = str(chains)
    else:
        env["ETH_RPC_URL"] = anvils[0].url
        env["PRICE_SOURCES"] = str(sources[anvils[0].chain_id])
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)
    venv = ROOT / ".venv" / "bin"
    spawn(
        [str(venv / "celery"), "-A", "workers", "worker", "-Q", "blocks", "--concurrency", "2",
         "--loglevel", "WARNING", "--without-gossip", "--without-mingle"],
        env, logs / "worker.log", stack,
    )  # fmt: skip
    spawn([str(venv / "chainpulse"), "follow"], env, logs / "follower.log", stack)
    port = free_port()
    spawn(
        [str(venv / "chainpulse"), "serve"], {**env, "PORT": str(port)}, logs / "serve.log", stack
    )
    server = f"http://127.0.0.1:{port}"
    wait_until(lambda: port_open(port), 30, "chainpulse serve")
    wait_until(lambda: requests.get(server + "/readyz", timeout=5).status_code == 200, 30, "ready")
    return server


def one_run(args: argparse.Namespace, chains: int, file: bool, freeze: float) -> dict[str, Any]:
    with ExitStack() as stack:
        redis_server = stack.enter_context(RedisServer())
        workdir = Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="chainpulse-chains-"))
        )
        url = stack.enter_context(database(args.database, workdir))
        upgrade(url)
        anvils = [
            stack.enter_context(Anvil(chain_id=FIRST_ID + i, automine=False)) for i in range(chains)
        ]
        pairs = {a.chain_id: Pairs(a) for a in anvils}
        sources = {c: p.sources(workdir / f"prices-{c}.toml") for c, p in pairs.items()}
        server = start_stack(
            stack, workdir, url, redis_server.url, anvils, file, args.slots, sources
        )
        rate = args.chains if not file else 1.0  # the same total rate
        per_block = args.prices / (rate * chains)  # the same price updates per second
        miners = [Miner(a, rate, pairs[a.chain_id], per_block) for a in anvils]
        for anvil in anvils:
            anvil.call("evm_mine")  # the followers start at the head: one block each first
        time.sleep(3)
        tokens = [f"T{i}.{c}" for c in pairs for i in range(PAIRS)]
        clients = Clients(server, args.clients, [a.chain_id for a in anvils[1:]], tokens)
        for miner in miners:
            miner.start()
        time.sleep(3)  # warm-up, not counted
        start = time.time()
        time.sleep(args.seconds)
        normal_end = time.time()
        frozen_window: tuple[float, float] | None = None
        if freeze:
            miners[-1].freeze_next.set()
            miners[-1].froze.wait(10)
            frozen_window = (time.time(), time.time() + freeze)
            time.sleep(freeze)
            anvils[-1].resume()
            miners[-1].paused.clear()
            time.sleep(10)  # its chain resumes
        for miner in miners:
            miner.done.set()
        time.sleep(4)
        report = clients.report()
        mined: dict[tuple[int, int], float] = {}
        for miner in miners:
            mined.update(miner.mined)
        by_id = {a.chain_id: a for a in anvils}
        result: dict[str, Any] = {
            "chains": chains,
            "rate": rate,
            "file": file,
            "clients": clients.ready,
            "disconnects": report["disconnects"],
            "normal": latencies(report, mined, by_id, start, normal_end),
            "prices_per_s": sum(
                1 for at in report["prices"] if start * 1000 <= at < normal_end * 1000
            )
            / (normal_end - start),
        }
        if frozen_window is not None:
            result["frozen"] = latencies(report, mined, by_id, *frozen_window)
            result["after"] = latencies(report, mined, by_id, frozen_window[1], time.time())
        return result


def verdict(one: dict[str, Any], many: dict[str, Any]) -> list[str]:
    base = one["normal"][FIRST_ID]
    bound = 1.5 * base["p99"] + 50
    lines = [
        f"one chain at {one['rate']:g} blocks/s, {one['prices_per_s']:.1f} price updates/s "
        f"pushed: p50 {base['p50']:.0f} ms, p99 {base['p99']:.0f} ms ({base['arrivals']} "
        f"arrivals); normal range: p99 <= {bound:.0f} ms",
        f"{many['chains']} chains at 1 block/s each: {many['prices_per_s']:.1f} price "
        "updates/s pushed",
    ]
    frozen = FIRST_ID + many["chains"] - 1
    for phase in ("normal", "frozen", "after"):
        for key, figures in many.get(phase, {}).items():
            chain = int(key)
            ok = figures["p99"] is not None and figures["p99"] <= bound
            judged = "within" if ok else "OUTSIDE"
            if phase == "after" and chain == frozen:
                judged = "the frozen chain catching up (not judged)"
            lines.append(
                f"{many['chains']} chains, {phase:<6} chain {chain}: p50 {figures['p50']:.0f} ms, "
                f"p99 {figures['p99']:.0f} ms, {figures['blocks']} blocks, "
                f"{figures['arrivals']} arrivals: {judged}"
                + (" the normal range" if judged in ("within", "OUTSIDE") else "")
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--chains", type=int, default=3)
    p.add_argument("--prices", type=float, default=20, help="price updates per second, in all")
    p.add_argument("--seconds", type=float, default=40)
    p.add_argument("--freeze", type=float, default=30)
    p.add_argument("--database", default="sqlite", choices=("sqlite", "postgresql"))
    p.add_argument(
        "--slots",
        type=int,
        default=None,
        help="CHAIN_JOB_SLOTS for the workers (default: theirs, concurrency - 1; "
        "2, their concurrency, is no bound)",
    )
    args = p.parse_args(argv)
    print(f"one chain at {args.chains} blocks/s, {args.clients} clients ...", file=sys.stderr)
    one = one_run(args, 1, file=False, freeze=0)
    print(json.dumps(one), file=sys.stderr)
    print(f"{args.chains} chains at 1 block/s, then the last frozen {args.freeze:.0f} s ...",
          file=sys.stderr)  # fmt: skip
    many = one_run(args, args.chains, file=True, freeze=args.freeze)
    print(json.dumps(many), file=sys.stderr)
    lines = verdict(one, many)
    print("\n".join(lines))
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"chains-{stamp}.json").write_text(
        json.dumps({"args": vars(args), "one": one, "many": many, "verdict": lines}, indent=2)
    )
    return 0 if all("OUTSIDE" not in line for line in lines) else 1


if __name__ == "__main__":
    sys.exit(main())
