"""bench/latency: the time from a block's mining (the moment `evm_mine` returns) to its
`new-block` message arriving at JavaScript socket.io-client clients.

One anvil (no automine), Redis, a database, a Celery worker (`--concurrency 2`), one
`chainpulse serve` and the follower (in this process, so that its enqueue time can be
taken) run together. For each follower mode (newHeads; polling at 100 ms; polling at
the default 1 s) and each client count, it mines `--blocks` blocks at one per
`--interval` seconds (each at a random moment within its slot, so that polling cannot
phase-lock with mining), each with two transfers, and reports p50/p99 of every
(block, client) arrival, and each stage's p50/p99 over the blocks:

  follower  mined -> the follower enqueued the job (includes the poll wait)
  queue     enqueued -> a worker started the job (Celery task_prerun)
  worker    started -> the block.indexed entry was appended to the stream (its id's ms)
  stream    appended -> a blocking XREAD reader in this process got it
  push      reader got it -> the clients got `new-block` (median client per block)

Usage: .venv/bin/python -m bench.latency.run [--blocks 200] [--clients 1,1000]
       [--modes newheads,poll100,poll1000] [--database sqlite|postgresql]
Results also go to bench/results/latency-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import requests

from bench import builds
from chainpulse.devnet import Anvil, RedisServer, free_port, port_open, wait_until
from chainpulse.settings import Settings
from follower import process
from follower.queue import Cursor
from indexer.schema import upgrade
from tests.harness.databases import database
from tests.harness.environment import service_env
from tests.harness.processes import stop
from workers.jobs import IndexBlocks

ROOT = Path(__file__).resolve().parents[2]

STARTED_KEY = "bench:latency:started"
MODES = {
    "newheads": {"ws": True, "poll_interval": 1.0},
    "poll100": {"ws": False, "poll_interval": 0.1},
    "poll1000": {"ws": False, "poll_interval": 1.0},
}


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


@dataclass
class Timeline:
    mined: dict[int, float] = field(default_factory=dict)  # epoch s
    enqueued: dict[int, float] = field(default_factory=dict)
    appended: dict[tuple[int, str], float] = field(default_factory=dict)
    read: dict[tuple[int, str], float] = field(default_factory=dict)


class StreamWatch(threading.Thread):
    """Records when each block.indexed entry was appended (id ms) and read here."""

    def __init__(self, url: str, timeline: Timeline) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis.from_url(url, socket_timeout=10)
        self.timeline = timeline
        self.done = threading.Event()

    def run(self) -> None:
        last = "$"
        while not self.done.is_set():
            reply = self.client.xread({"chainpulse:events": last}, block=1000, count=100)
            now = time.time()
            for _, entries in reply or []:
                for entry_id, fields in entries:
                    last = entry_id.decode()
                    if fields[b"type"] != b"block.indexed":
                        continue
                    data = json.loads(fields[b"data"])
                    key = (int(data["blockNumber"]), str(data["blockHash"]))
                    self.timeline.appended.setdefault(key, int(last.split("-")[0]) / 1000)
                    self.timeline.read.setdefault(key, now)


def spawn(
    args: list[str], env: dict[str, str], log: Path, stack: ExitStack
) -> subprocess.Popen[bytes]:
    """`args` running until `stack` closes, its output in `log`."""
    out = log.open("ab")
    process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)

    def halt() -> None:
        stop(process, grace=15)
        out.close()

    stack.callback(halt)
    return process


def mine_blocks(anvil: Anvil, count: int, interval: float, timeline: Timeline) -> list[int]:
    """Mine `count` blocks, one per `interval` slot at a uniformly random moment in it
    (so that a poll loop cannot phase-lock with mining); returns their numbers."""
    accounts = anvil.accounts()
    numbers = []
    slot = time.monotonic()
    for i in range(count):
        slot += interval
        time.sleep(max(0.0, slot + random.uniform(0, interval) - time.monotonic()))
        anvil.batch(
            [
                (
                    "eth_sendTransaction",
                    [
                        {
                            "from": accounts[(i + k) % 10],
                            "to": accounts[(i + k + 1) % 10],
                            "value": "0x1",
                        }
                    ],
                )
                for k in range(2)
            ]
        )
        anvil.call("evm_mine")
        mined = time.time()
        number = anvil.head()
        timeline.mined[number] = mined
        numbers.append(number)
    return numbers


def measure(
    anvil: Anvil, server_url: str, clients: int, blocks: int, interval: float, timeline: Timeline
) -> dict[str, Any]:
    js = subprocess.Popen(
        [
            "node",
            str(ROOT / "bench" / "latency" / "clients.js"),
            server_url + "/realtime",
            str(clients),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert js.stdout is not None and js.stdin is not None
    ready = json.loads(js.stdout.readline())["ready"]
    mine_blocks(anvil, 2, interval, timeline)  # warm-up, not counted
    numbers = mine_blocks(anvil, blocks, interval, timeline)
    time.sleep(3)
    js.stdin.write("report\n")
    js.stdin.flush()
    report = json.loads(js.stdout.readline())
    js.wait(30)
    hashes = {
        int(b["number"], 16): b["hash"]
        for b in anvil.batch([("eth_getBlockByNumber", (hex(n), False)) for n in numbers])
    }
    started_raw = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"]).hgetall(STARTED_KEY)
    started = {int(k): float(v) for k, v in started_raw.items()}
    totals: list[float] = []
    stages: dict[str, list[float]] = {
        k: [] for k in ("follower", "queue", "worker", "stream", "push")
    }
    missing = 0
    for n in numbers:
        key = (n, hashes[n])
        arrivals = report["arrivals"].get(f"{n}:{hashes[n]}", [])
        if len(arrivals) < ready:
            missing += ready - len(arrivals)
        mined = timeline.mined[n] * 1000
        totals += [a - mined for a in arrivals]
        marks = [
            timeline.enqueued.get(n),
            started.get(n),
            timeline.appended.get(key),
            timeline.read.get(key),
        ]
        if None in marks or not arrivals:
            continue
        enq, start, appended, read = (m * 1000 for m in marks if m is not None)
        stages["follower"].append(enq - mined)
        stages["queue"].append(start - enq)
        stages["worker"].append(appended - start)
        stages["stream"].append(read - appended)
        stages["push"].append(statistics.median(arrivals) - read)
    return {
        "clients": ready,
        "blocks": len(numbers),
        "arrivals": len(totals),
        "missing": missing,
        "disconnects": report["disconnects"],
        "p50": pct(totals, 50),
        "p99": pct(totals, 99),
        "stages": {k: {"p50": pct(v, 50), "p99": pct(v, 99)} for k, v in stages.items()},
    }


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    with ExitStack() as stack:
        rs = stack.enter_context(RedisServer())
        os.environ["BENCH_REDIS_URL"] = rs.url
        anvil = stack.enter_context(Anvil(automine=False))
        workdir = Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="chainpulse-latency-"))
        )
        url = stack.enter_context(database(args.database, workdir))
        upgrade(url)
        logs = workdir / "logs"  # removed with the work directory
        logs.mkdir()
        env = service_env(
            DATABASE_URL=url,
            REDIS_URL=rs.url,
            ETH_RPC_URL=anvil.url,
            WORKER_METRICS_PORT=str(free_port()),
            LOG_LEVEL="warning",
            PYTHONWARNINGS="ignore",
        )
        celery = str(ROOT / ".venv" / "bin" / "celery")
        spawn(
            [celery, "-A", "bench.latency.worker", "worker", "-Q", "blocks", "--concurrency", "2"]
            + ["--loglevel", "WARNING", "--without-gossip", "--without-mingle"],
            env,
            logs / "worker.log",
            stack,
        )
        servers: dict[str, str] = {}  # build -> its server's URL (all read one stream)
        stack.callback(builds.forget, workdir)
        for build in args.builds.split(","):
            kind = "chainpulse" if build == "current" else f"chainpulse@{build}"
            port = free_port()
            serve_env = {**env, "PORT": str(port), "PYTHONPATH": str(builds.source(kind, workdir))}
            spawn(
                [str(ROOT / ".venv" / "bin" / "chainpulse"), "serve"],
                serve_env,
                logs / f"serve-{build}.log",
                stack,
            )
            server_url = servers[build] = f"http://127.0.0.1:{port}"
            wait_until(lambda p=port: port_open(p), 30, f"chainpulse serve ({build})")
            wait_until(
                lambda u=server_url: requests.get(u + "/readyz", timeout=5).status_code == 200,
                30,
                f"chainpulse serve ({build}) ready",
            )
        timeline = Timeline()
        watch = StreamWatch(rs.url, timeline)
        watch.start()
        stack.callback(watch.done.set)
        for mode in args.modes.split(","):
            spec = MODES[mode]
            settings = Settings(
                rpc_urls=(anvil.url,),
                ws_url=anvil.ws_url if spec["ws"] else None,
                database_url=url,
                redis_url=rs.url,
                poll_interval=float(spec["poll_interval"]),
            )
            follower = process.build(settings)
            original = follower.queue.enqueue

            def timed(
                jobs: list[IndexBlocks], cursor: Cursor | None, original: Any = original
            ) -> None:
                original(jobs, cursor)
                now = time.time()
                for job in jobs:
                    timeline.enqueued.setdefault(job.last, now)

            follower.queue.enqueue = timed  # type: ignore[method-assign,assignment]
            thread = threading.Thread(target=follower.run, daemon=True)
            thread.start()
            wait_until(lambda f=follower: f.cursor is not None, 30, f"the {mode} follower")
            for count in [int(c) for c in args.clients.split(",")]:
                for turn in range(args.rounds):  # the builds take turns
                    for build, server_url in servers.items():
                        print(
                            f"{mode}: {build}, {count} clients, {args.blocks} blocks, "
                            f"round {turn + 1} ...",
                            file=sys.stderr,
                        )
                        result = measure(
                            anvil, server_url, count, args.blocks, args.interval, timeline
                        )
                        result.update(mode=mode, build=build, round=turn + 1)
                        results.append(result)
                        print(json.dumps(result), file=sys.stderr)
            follower.stop.set()
            follower.wake.set()
            thread.join(20)
            process.close(follower)
    return results


def table(results: list[dict[str, Any]]) -> str:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}"

    head = (
        "build      round mode      clients blocks  p50   p99 | follower  queue  worker  stream"
        "  push (p50/p99 ms)"
    )
    lines = [head]
    for r in results:
        s = r["stages"]
        parts = [
            f"{ms(s[k]['p50'])}/{ms(s[k]['p99'])}"
            for k in ("follower", "queue", "worker", "stream", "push")
        ]
        lines.append(
            f"{r.get('build', 'current'):<10} {r.get('round', 1):>5} "
            f"{r['mode']:<9} {r['clients']:>7} {r['blocks']:>6} "
            f"{ms(r['p50']):>4} {ms(r['p99']):>5} | "
            + "  ".join(parts)
            + (f"  (missing {r['missing']})" if r["missing"] else "")
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--blocks", type=int, default=200)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between blocks")
    parser.add_argument("--clients", default="1,1000")
    parser.add_argument("--modes", default="newheads,poll100,poll1000")
    parser.add_argument(
        "--builds",
        default="current",
        help="the servers to measure, taking turns: `current` (this working tree) and git "
        "revisions (run from a worktree with this virtualenv), comma-separated",
    )
    parser.add_argument("--rounds", type=int, default=1, help="turns of every build")
    parser.add_argument(
        "--database",
        choices=["sqlite", "postgresql"],
        default="postgresql" if port_open(5432) else "sqlite",
    )
    args = parser.parse_args()
    results = run(args)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"latency-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    print(table(results))
    print(f"(database {args.database}; raw results in {path.relative_to(ROOT)})")


if __name__ == "__main__":
    main()
