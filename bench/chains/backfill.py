"""Two chains backfilling at once, each behind its own rate-limited provider (issue 25),
against each alone, in one run.

    .venv/bin/python -m bench.chains.backfill                  # 3000 blocks x 5 txs each
    .venv/bin/python -m bench.chains.backfill --blocks 600 --workers 1

3,000 blocks by default: each backfill's start and tail (a job or two in flight, paced
by the round trip rather than the quota) weigh on a shorter run's average.

Two anvils serve the fixture of `bench.backfill.fixture` as chains 31337 and 31338, each
behind its own `bench.backfill.provider.Provider` (40 ms round trip, `--quota` calls/s
over a sliding second, HTTP 429 past it), as two hosted providers with a quota each. One
chains file names both, each with `rate_limit` = its quota (a budget of its own). Each
variant starts fresh (database, Redis, `--workers` Celery workers at the default
concurrency, `CHAIN_JOB_SLOTS` at its default) and runs `chainpulse backfill --chain NAME
FROM TO --wait`: for the first chain alone, for the second alone, then for both at once.
Per chain it prints blocks/s, calls/s against its quota, the share of calls refused with
429, the busiest second its provider forwarded, and blocks failed for good. Target: with
both at once, each chain uses at least 90% of its quota, as it does alone.
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
from bench.backfill.provider import Counts, Provider
from bench.backfill.quota import BIN, start_workers
from bench.common import markdown_table
from chainpulse.devnet import Anvil, RedisServer, port_open
from tests.harness.databases import database
from tests.harness.environment import service_env
from tests.harness.processes import stop
from workers.app import default_concurrency

CHAINS = {"first": 31337, "second": 31338}
TARGET = 0.90


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--blocks", type=int, default=3000)
    p.add_argument("--txs", type=int, default=5)
    p.add_argument("--quota", type=int, default=200, help="each provider's calls per second")
    p.add_argument("--rtt", type=float, default=0.040, help="provider round trip, seconds")
    p.add_argument("--workers", type=int, default=2, help="worker processes (Celery workers)")
    p.add_argument("--database", default="postgresql", choices=["postgresql", "sqlite"])
    p.add_argument("--timeout", type=float, default=900)
    return p.parse_args(argv)


def chains_file(path: Path, providers: dict[str, Provider], quota: int) -> Path:
    path.write_text(
        "\n".join(
            f'[[chain]]\nname = "{name}"\nchain_id = {CHAINS[name]}\nrpc = "{provider.url}"\n'
            f"rate_limit = {quota}\n"
            for name, provider in providers.items()
        )
    )
    return path


def variant(
    providers: dict[str, Provider],
    names: list[str],
    fixture_range: tuple[int, int],
    args: argparse.Namespace,
) -> dict[str, tuple[float, Counts, int, str]]:
    """Backfill the chains `names` at once in a fresh deployment of every chain; per
    chain: (seconds, its provider's counts, blocks failed, how the command ended)."""
    first, last = fixture_range
    workdir = Path(tempfile.mkdtemp(prefix="chainpulse-chains-backfill-"))
    procs: list[subprocess.Popen[bytes]] = []
    results: dict[str, tuple[float, Counts, int, str]] = {}
    try:
        with RedisServer() as redis_server, database(args.database, workdir) as db_url:
            env = service_env(
                DATABASE_URL=db_url,
                REDIS_URL=redis_server.url,
                CHAINS=str(chains_file(workdir / "chains.toml", providers, args.quota)),
                LOG_LEVEL="warning",
                PYTHONWARNINGS="ignore",
            )
            chainpulse = str(BIN / "chainpulse")
            subprocess.run(
                [chainpulse, "db", "upgrade"], env=env, check=True, capture_output=True, timeout=120
            )
            procs, _ = start_workers(env, workdir, args.workers, default_concurrency())
            for provider in providers.values():
                provider.reset()
            started = time.monotonic()
            running = {
                name: subprocess.Popen(
                    [chainpulse, "backfill", "--chain", name, str(first), str(last), "--wait"],
                    env=env,
                    cwd=workdir,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for name in names
            }
            ended: dict[str, tuple[float, Counts, str]] = {}
            deadline = started + args.timeout
            while len(ended) < len(running) and time.monotonic() < deadline:
                for name, proc in running.items():
                    if name not in ended and proc.poll() is not None:
                        # its calls until now: not the other chain's, not the status call's
                        counts = providers[name].snapshot()
                        error = proc.stderr.read().strip()[-120:] if proc.stderr else ""
                        ended[name] = (
                            time.monotonic() - started,
                            counts,
                            f"exit {proc.returncode}" + (f": {error}" if proc.returncode else ""),
                        )
                time.sleep(0.05)
            for name, proc in running.items():
                if name not in ended:
                    proc.kill()
                    ended[name] = (args.timeout, providers[name].snapshot(), "timed out")
            status = subprocess.run(
                [chainpulse, "status", "--json"],
                env=env,
                cwd=workdir,
                capture_output=True,
                text=True,
                timeout=60,
            )
            failed = {
                report["name"]: len(report.get("failed", []))
                for report in (json.loads(status.stdout)["chains"] if status.stdout else [])
            }
            for name, (seconds, counts, how) in ended.items():
                results[name] = (seconds, counts, failed.get(name, -1), how)
    finally:
        for proc in procs:
            stop(proc, grace=20, group=True)
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def row(
    label: str, name: str, result: tuple[float, Counts, int, str], blocks: int, quota: int
) -> list[str]:
    seconds, counts, failed, how = result
    offered = counts.calls + counts.refused_calls
    return [
        label,
        f"{name} ({CHAINS[name]})",
        f"{blocks / seconds:.1f}",
        f"{counts.calls_per_s():.0f}",
        f"{counts.calls_per_s() / quota:.0%}",
        f"{counts.refused_calls / offered:.1%}" if offered else "0%",
        f"{counts.busiest} ({counts.busiest / quota:.0%})",
        str(failed),
        how,
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.database == "postgresql" and not port_open(5432):
        args.database = "sqlite"
    fixture = load_or_build(Spec(args.blocks, args.txs))
    blocks = fixture.last - fixture.first + 1
    nodes: list[Anvil] = []
    rows: list[list[str]] = []
    verdicts: list[str] = []
    try:
        nodes = [start_node(fixture, chain_id) for chain_id in CHAINS.values()]
        with (
            Provider(nodes[0].url, args.rtt, args.quota) as one,
            Provider(nodes[1].url, args.rtt, args.quota) as two,
        ):
            providers = {"first": one, "second": two}
            plan = [("alone", ["first"]), ("alone", ["second"]), ("both at once", list(CHAINS))]
            for label, names in plan:
                print(f"{label}: {', '.join(names)}", flush=True)
                results = variant(providers, names, (fixture.first, fixture.last), args)
                for name in names:
                    rows.append(row(label, name, results[name], blocks, args.quota))
                    print("  " + " | ".join(rows[-1]), flush=True)
                    if label == "both at once":
                        share = results[name][1].calls_per_s() / args.quota
                        ok = share >= TARGET and results[name][2] == 0
                        verdicts.append(
                            f"both at once, {name}: {share:.0%} of its quota, "
                            f"{results[name][2]} failed: {'met' if ok else 'NOT MET'} "
                            f"(target >= {TARGET:.0%}, none failed)"
                        )
    finally:
        for node in nodes:
            node.stop()
    print()
    print(
        f"{args.blocks} blocks x {args.txs} txs per chain on {args.database}; "
        f"{args.workers} worker(s) x{default_concurrency()}; each provider: "
        f"{args.rtt * 1000:.0f} ms, {args.quota} calls/s, 429 + Retry-After: 1; "
        f"each chain's rate_limit = its quota"
    )
    print(
        markdown_table(
            ["variant", "chain", "blocks/s", "calls/s", "of quota", "429s", "busiest second",
             "failed", "backfill"],
            rows,
        )
    )  # fmt: skip
    print("\n".join(verdicts))
    return 0 if verdicts and all("NOT MET" not in v for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
