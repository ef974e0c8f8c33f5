"""Backfill against a hosted provider's rate limit (issue 12, "Backfill against a hosted
provider"): chainpulse with `RPC_RATE_LIMIT` and without it, in the same run.

    .venv/bin/python -m bench.backfill.quota                 # 1500 blocks x 5 txs
    .venv/bin/python -m bench.backfill.quota --quota 200 --rtt 0.04 --blocks 600

The node is anvil behind `bench.backfill.provider.Provider` (40 ms round trip, 200
calls/s over a sliding second, HTTP 429 with `Retry-After: 1` past it, batches over
100 calls refused). Each variant backfills the fixture into a fresh database with a
fresh Redis: limiter off or on (`RPC_RATE_LIMIT` = `--share` of the quota), with one
worker at the default concurrency or three worker processes started separately. It
prints blocks/s, calls/s against the quota, the share of calls refused with 429, the
busiest second the provider forwarded (its own sliding window, wall clock: what the
limiter's grants came to in real time, never more than the quota), job retries (the
workers' `/metrics`) and blocks failed for good. Targets with the limiter: at least 90%
of the quota used, no block failed, 429s under 1% of calls.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.backfill.fixture import Spec, load_or_build, start_node
from bench.backfill.provider import Provider
from bench.common import markdown_table
from chainpulse.devnet import RedisServer, free_port, port_open, wait_until
from tests.harness.databases import database
from tests.harness.environment import service_env
from tests.harness.metrics import scrape, total
from tests.harness.processes import stop
from workers.app import default_concurrency

ROOT = Path(__file__).resolve().parents[2]

BIN = ROOT / ".venv" / "bin"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--blocks", type=int, default=1500)
    p.add_argument("--txs", type=int, default=5)
    p.add_argument("--quota", type=int, default=200, help="provider calls per second")
    p.add_argument("--rtt", type=float, default=0.040, help="provider round trip, seconds")
    p.add_argument("--share", type=float, default=1.0, help="RPC_RATE_LIMIT / quota")
    p.add_argument("--database", default="postgresql", choices=["postgresql", "sqlite"])
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--only", default="", help="comma-separated variant names to run")
    return p.parse_args(argv)


def start_workers(
    env: dict[str, str], workdir: Path, count: int, concurrency: int
) -> tuple[list[subprocess.Popen[bytes]], list[int]]:
    """`count` Celery workers on `-Q blocks`, each its own metrics port, started and
    ready; (their processes, their metrics ports)."""
    procs: list[subprocess.Popen[bytes]] = []
    ports: list[int] = []
    for i in range(count):
        port = free_port()
        ports.append(port)
        with (workdir / f"worker{i}.log").open("ab") as out:
            procs.append(
                subprocess.Popen(
                    [
                        str(BIN / "celery"),
                        "-A",
                        "workers",
                        "worker",
                        "-Q",
                        "blocks",
                        "--concurrency",
                        str(concurrency),
                        "-n",
                        f"quota{i}@%h",
                        "--without-gossip",
                        "--without-mingle",
                    ],
                    env={
                        **env,
                        "WORKER_METRICS_PORT": str(port),
                        "WORKER_METRICS_DIR": str(workdir / f"metrics{i}"),
                    },
                    cwd=workdir,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    try:
        for port in ports:
            wait_until(lambda p=port: port_open(p), 60, "a worker's metrics port")
        time.sleep(2)  # the pool processes start after the port
    except BaseException:
        for proc in procs:
            stop(proc, grace=20, group=True)
        raise
    return procs, ports


def run_variant(
    provider: Provider,
    fixture_range: tuple[int, int],
    kind: str,
    workers: int,
    concurrency: int,
    limit: float | None,
    timeout: float,
) -> list[str]:
    first, last = fixture_range
    workdir = Path(tempfile.mkdtemp(prefix="chainpulse-quota-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with RedisServer() as redis_server, database(kind, workdir) as db_url:
            env = service_env(
                DATABASE_URL=db_url,
                REDIS_URL=redis_server.url,
                ETH_RPC_URL=provider.url,
                LOG_LEVEL="warning",
                PYTHONWARNINGS="ignore",
            )
            if limit is not None:
                env["RPC_RATE_LIMIT"] = f"{limit:g}"
            subprocess.run(
                [str(BIN / "chainpulse"), "db", "upgrade"],
                env=env,
                check=True,
                capture_output=True,
                timeout=120,
            )
            procs, ports = start_workers(env, workdir, workers, concurrency)
            provider.reset()
            started = time.monotonic()
            done = subprocess.run(
                [str(BIN / "chainpulse"), "backfill", str(first), str(last), "--wait"],
                env=env,
                cwd=workdir,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            seconds = time.monotonic() - started
            counts = provider.snapshot()  # the backfill's calls, not the status call's
            status = subprocess.run(
                [str(BIN / "chainpulse"), "status", "--json"],
                env=env,
                cwd=workdir,
                capture_output=True,
                text=True,
                timeout=60,
            )
            failed = len(json.loads(status.stdout).get("failed", [])) if status.stdout else -1
            retries = sum(
                total(scrape(f"http://127.0.0.1:{p}/metrics"), "chainpulse_job_retries_total")
                for p in ports
            )
    finally:
        for proc in procs:
            stop(proc, grace=20, group=True)
        shutil.rmtree(workdir, ignore_errors=True)
    blocks = last - first + 1
    offered = counts.calls + counts.refused_calls
    name = f"{'with' if limit else 'without'} limiter, {workers} x{concurrency}"
    return [
        name,
        f"{blocks / seconds:.1f}",
        f"{counts.calls_per_s():.0f}",
        f"{counts.calls_per_s() / provider.quota:.0%}",
        f"{counts.refused_calls / offered:.1%}" if offered else "0%",
        f"{counts.busiest} ({counts.busiest / provider.quota:.0%})",
        f"{retries:.0f}",
        str(failed),
        f"exit {done.returncode}" + (f": {done.stderr.strip()[-120:]}" if done.returncode else ""),
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.database == "postgresql" and not port_open(5432):
        args.database = "sqlite"
    fixture = load_or_build(Spec(args.blocks, args.txs))
    node = start_node(fixture)
    concurrency = default_concurrency()
    variants = {
        "off-1": (1, concurrency, None),
        "on-1": (1, concurrency, args.quota * args.share),
        "off-3": (3, concurrency, None),
        "on-3": (3, concurrency, args.quota * args.share),
    }
    chosen = [v for v in args.only.split(",") if v] or list(variants)
    rows = []
    try:
        with Provider(node.url, args.rtt, args.quota) as provider:
            for name in chosen:
                workers, conc, limit = variants[name]
                print(
                    f"{name}: {workers} worker(s) x{conc}, RPC_RATE_LIMIT={limit or 'unset'}",
                    flush=True,
                )
                rows.append(
                    run_variant(
                        provider,
                        (fixture.first, fixture.last),
                        args.database,
                        workers,
                        conc,
                        limit,
                        args.timeout,
                    )
                )
                print("  " + " | ".join(rows[-1]), flush=True)
    finally:
        node.stop()
    print()
    print(
        f"{args.blocks} blocks x {args.txs} txs on {args.database}; provider: "
        f"{args.rtt * 1000:.0f} ms, {args.quota} calls/s, 429 + Retry-After: 1, "
        f"batches <= 100 calls; limiter at {args.share:.0%} of the quota"
    )
    print(
        markdown_table(
            [
                "variant",
                "blocks/s",
                "calls/s",
                "of quota",
                "429s",
                "busiest second",
                "retries",
                "failed",
                "backfill",
            ],
            rows,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
