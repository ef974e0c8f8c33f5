"""bench/fanout: Socket.IO fan-out benchmark for `chainpulse serve` (issue 3, "Speed").

Starts a throwaway redis-server, then, one after the other, each server under test:
`chainpulse serve`, a plain python-socketio server on eventlet (bench/fanout/plain_server.py)
and a minimal Node socket.io 4 server (bench/fanout/baseline.js). For each it opens N
websocket clients with the official socket.io-client in separate Node processes
(bench/fanout/clients.js), appends contract-shaped events to the Redis stream
`chainpulse:events` and measures connect rate, server RSS per connection, broadcast
latency to all N clients, server CPU per delivered message, the load mix (every client in
one of 20 price rooms; per tick 1 new-block to all plus 20 price-update, one per room),
the highest sustained broadcast rate, the highest lossless mix rate at the largest N, and
the capacity of two server processes against one. Latency is receive time in the client
minus the time the driver appended the event to the stream (same machine, same clock).

    .venv/bin/python -m bench.fanout.run            # N = 1000,5000,10000
    .venv/bin/python -m bench.fanout.run --quick    # smoke check, under a minute

Every phase is bounded by a timeout; the whole run by --budget (optional phases are
skipped once it is spent).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import builds
from bench.common import log
from bench.fanout.phases import run_server
from bench.fanout.report import table
from bench.fanout.servers import make_database
from chainpulse.devnet import RedisServer

ROOT = Path(__file__).resolve().parents[2]

# Broadcast rates tried, in order, when searching for the highest sustained rate (per s).
RATE_STEPS = [2, 5, 10, 15, 20, 30, 40, 60, 80, 120, 160, 240, 320, 480, 640]
# Load-mix multipliers tried at the largest N (k blocks/s, each with 20 prices).
MIX_STEPS_UP = [1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", default="1000,5000,10000", help="client counts, comma-separated")
    ap.add_argument(
        "--servers",
        default="chainpulse,plain,node",
        help="chainpulse, chainpulse@REV (another build: a git revision), plain, "
        "plain-nodeflate, node",
    )
    ap.add_argument("--quick", action="store_true", help="N=200, short phases: a smoke check")
    ap.add_argument("--broadcasts", type=int, default=5, help="single broadcasts timed per N")
    ap.add_argument("--mix-duration", type=float, default=10.0, help="seconds per load-mix step")
    ap.add_argument("--rate-duration", type=float, default=5.0, help="seconds per rate step")
    ap.add_argument("--rate-n", type=int, default=1000, help="N for the broadcast-rate search")
    ap.add_argument("--drain", type=float, default=8.0, help="seconds to wait for stragglers")
    ap.add_argument("--max-p99", type=float, default=1000.0, help="p99 (ms) a sustained rate keeps")
    ap.add_argument(
        "--retries", type=int, default=1, help="tries again of a failed rate step (noise)"
    )
    ap.add_argument("--client-procs", type=int, default=2, help="Node load-generator processes")
    ap.add_argument(
        "--connect-concurrency", type=int, default=100, help="connects in flight per process"
    )
    ap.add_argument("--connect-timeout", type=float, default=30.0)
    ap.add_argument(
        "--no-deflate",
        dest="deflate",
        action="store_false",
        help="clients do not offer permessage-deflate",
    )
    ap.add_argument(
        "--no-scale", dest="scale", action="store_false", help="skip the two-process phase"
    )
    ap.add_argument(
        "--no-search", dest="search", action="store_false", help="skip the rate searches"
    )
    ap.add_argument(
        "--connect-only", action="store_true", help="only the connects and RSS of each N"
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure the servers this many times, taking turns, and report each round and "
        "each N's median round (the machine's speed drifts between minutes)",
    )
    ap.add_argument("--budget", type=float, default=840.0, help="seconds for the whole run")
    ap.add_argument("--env", action="append", default=[], help="KEY=VALUE for chainpulse serve")
    ap.add_argument("--json", help="write all results to this file")
    ap.add_argument("--table-from", help="print the table of a --json file (same --n, --rate-n)")
    ap.add_argument("--py-spy", help="profile Python servers with py-spy into this directory")
    ap.add_argument("--keep-logs", action="store_true", help="keep the work directory")
    args = ap.parse_args(argv)
    args.reserve = 60.0  # seconds of budget an optional phase needs to start
    if args.quick:
        args.n = "200"
        args.rate_n = 200
        args.broadcasts = 2
        args.mix_duration = 1.5
        args.rate_duration = 1.0
        args.drain = 3.0
        args.client_procs = 1
        args.retries = 0
        args.reserve = 5.0
        args.budget = min(args.budget, 150.0)
        args.rate_steps = [40.0, 320.0]
        args.mix_steps = [3.0]
    else:
        args.rate_steps = [float(r) for r in RATE_STEPS]
        args.mix_steps = MIX_STEPS_UP[1:]
    args.n = [int(x) for x in str(args.n).split(",") if x.strip()]
    if args.rate_n not in args.n:
        args.rate_n = min(args.n)
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    args.chainpulse_env = dict(kv.split("=", 1) for kv in args.env)
    return args


def git_state() -> str:
    """The commit the server runs from, and whether realtime/ has uncommitted edits."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=10, check=True
        )
        return done.stdout

    try:
        head = git("log", "-1", "--format=%h %s", "--", "realtime").strip()
        dirty = git("status", "--short", "--", "realtime", "indexer").split()
    except (OSError, subprocess.SubprocessError):
        return "unknown (git failed)"
    edits = [f for f in dirty if "/" in f]
    last = f"last realtime/ commit {head[:80]}"
    return last + (f"; uncommitted edits in {', '.join(edits)}" if edits else "")


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def table_from(path: str, args: argparse.Namespace) -> str:
    """The table of a run saved with --json (N keys come back as strings)."""
    saved = json.loads(Path(path).read_text())
    results = {
        kind: {"per_n": {int(n): res for n, res in r["per_n"].items()}} for kind, r in saved.items()
    }
    return table(results, args.n, args.rate_n)


def median_round(found: list[dict[str, Any]], sizes: list[int]) -> dict[str, Any]:
    """Per N, the round whose connect rate is the median of the rounds (a real
    observation, not a mix of several), with every round's rate beside it."""
    out: dict[str, Any] = {"per_n": {}}
    for n in sizes:
        tried = [r["per_n"][n] for r in found if "connect" in r["per_n"].get(n, {})]
        if not tried:
            out["per_n"][n] = found[0]["per_n"].get(n, {})
            continue
        tried.sort(key=lambda res: res["connect"]["rate"])
        chosen = dict(tried[(len(tried) - 1) // 2])
        chosen["connect_rates"] = [round(res["connect"]["rate"]) for res in tried]
        out["per_n"][n] = chosen
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.table_from:
        print(table_from(args.table_from, args))
        return {}
    raise_nofile()
    started = time.monotonic()
    deadline = started + args.budget
    workdir = Path(tempfile.mkdtemp(prefix="chainpulse-fanout-"))
    log(f"work directory {workdir}; servers {args.servers}; N {args.n}")
    source_state = git_state()
    log(f"chainpulse under test: {source_state}")
    make_database(workdir)
    results: dict[str, dict[str, Any]] = {}
    rounds = args.rounds
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in args.servers}
    try:
        # Split what is left of the budget evenly between the servers still to run.
        turns = [kind for _ in range(rounds) for kind in args.servers]
        for i, kind in enumerate(turns):
            share = (deadline - time.monotonic()) / (len(turns) - i)
            with RedisServer() as rs:
                runs[kind].append(run_server(args, kind, rs.url, workdir, time.monotonic() + share))
        results = {kind: median_round(found, args.n) for kind, found in runs.items()}
    finally:
        builds.forget(workdir)
        if not args.keep_logs:
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - started
    text = table(results, args.n, args.rate_n)
    print(f"\nchainpulse under test: {source_state}")
    flags = " ".join(sys.argv[1:] if argv is None else argv) or "(defaults)"
    print(
        f"\nbench/fanout: {flags}; {elapsed:.0f} s; "
        f"{os.cpu_count()} CPUs; clients offer deflate: {args.deflate}"
    )
    for kind in args.servers:
        if "@" in kind:
            print(f"{kind}: {builds.describe(kind.split('@', 1)[1])}")
    if rounds > 1:
        for i in range(rounds):
            print(f"\nround {i + 1} of {rounds}:")
            print(table({k: r[i] for k, r in runs.items() if len(r) > i}, args.n, args.rate_n))
        print(f"\neach N's median round (by connect rate) of {rounds}:")
    print(text)
    for kind, r in results.items():
        for n, res in r["per_n"].items():
            if len(res.get("connect_rates", [])) > 1:
                print(f"{kind} N={n}: connect rates of the rounds {res['connect_rates']}/s")
            if res.get("error"):
                print(f"{kind} N={n}: {res['error']}")
            if res.get("connect", {}).get("failures"):
                print(f"{kind} N={n}: connect failures {res['connect']['failures']}")
            reasons = res.get("mix", {}).get("drop_reasons")
            if reasons:
                print(f"{kind} N={n}: disconnect reasons {reasons}")
    print(
        f"sustained = no loss, no dropped connection, p99 <= {args.max_p99:.0f} ms, "
        "publisher on time; latency = client receive - XADD time"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=lambda o: None))
    return results


if __name__ == "__main__":
    main()
