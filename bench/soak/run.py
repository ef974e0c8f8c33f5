"""bench/soak: `chainpulse serve` holding 2,000 clients for 10 minutes under a steady
load, with a reconnect storm in the middle; one table row per minute.

Each client (socket.io-client, in `--procs` Node processes: bench/soak/clients.js) is
subscribed to one of 20 price rooms. Every second the driver indexes a block as a worker
would (its row in a SQLite database, then `block.indexed` on the stream) and publishes 50
`price.updated`, spread over the second and over the rooms. At the start of minute
`--storm-at` every client disconnects and reconnects with `lastBlock`, as front-ends do,
and resumes from the database.

Per minute: the server's RSS and CPU, messages expected, received and lost, p99 latency
(receive time minus the time the event was appended to the stream). A client expects
every block (resume covers the storm) and the prices of its room published while it was
subscribed (prices published while a client is away are not resent, by contract; the
second before it chose to disconnect is not counted, as they may still be on the wire).

Targets (issue: reliability): nothing lost, the storm included; RSS grows by at most 5%
from the end of minute 6 to the end of minute 10 (after the storm, which raises the
allocator's high-water mark without being a leak).

    .venv/bin/python -m bench.soak.run                          # 2,000 clients, 10 minutes
    .venv/bin/python -m bench.soak.run --clients 500 --minutes 3 --storm-at 2   # a quick look
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa

from bench.common import log, markdown_table
from bench.fanout.loadgen import ClientProc, Hist, block_hash
from bench.fanout.servers import make_database, start_server
from chainpulse.devnet import RedisServer
from indexer.config import STREAM_KEY
from indexer.events import BlockIndexed, PriceUpdated, to_fields
from indexer.models import blocks
from tests.harness.processes import cpu_seconds, rss_kb

ROOT = Path(__file__).resolve().parents[2]

HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--clients", type=int, default=2000)
    ap.add_argument("--minutes", type=int, default=10)
    ap.add_argument("--storm-at", type=int, default=5, help="minute of the reconnect storm")
    ap.add_argument("--rooms", type=int, default=20)
    ap.add_argument("--prices", type=int, default=50, help="price updates per second")
    ap.add_argument("--procs", type=int, default=2, help="Node client processes")
    ap.add_argument("--drain", type=float, default=5.0, help="seconds a minute's messages get")
    ap.add_argument("--env", action="append", default=[], help="KEY=VALUE for chainpulse serve")
    ap.add_argument("--json", help="write the rows to this file")
    return ap.parse_args(argv)


class SoakClients(ClientProc):
    """bench/soak/clients.js; `ask` holds a lock, so that the storm and a minute's
    report can be asked for from two threads."""

    def __init__(self, workdir: Path, index: int) -> None:
        super().__init__(index, workdir, HERE / "clients.js")
        self.lock = threading.Lock()

    def ask(self, cmd: dict[str, Any], timeout: float = 300) -> dict[str, Any]:
        with self.lock:
            return self.wait(self.send(cmd), timeout)


def each(procs: list[SoakClients], make: Any) -> list[dict[str, Any]]:
    """Ask every process at once (`make(i)` is process i's command)."""
    replies: list[dict[str, Any]] = [{} for _ in procs]

    def one(i: int) -> None:
        replies[i] = procs[i].ask(make(i))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(procs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return replies


class Publisher:
    """Blocks as a worker indexes them (row, then stream entry) and prices."""

    def __init__(self, redis_url: str, database_url: str, rooms: int) -> None:
        self.redis = redis.Redis.from_url(redis_url)
        self.engine = sa.create_engine(database_url)
        self.rooms = rooms
        self.height = 1_000
        self.price_seq = 0

    def block(self) -> str:
        self.height += 1
        n = self.height
        now_s = int(time.time())
        with self.engine.begin() as conn:
            conn.execute(
                blocks.insert(),
                {
                    "number": n,
                    "hash": block_hash(n),
                    "parent_hash": block_hash(n - 1),
                    "timestamp": now_s,
                    "tx_count": 3,
                    "gas_used": 63_000,
                    "gas_limit": 30_000_000,
                    "base_fee_per_gas": 10**9,
                    "miner": "0x" + "ab" * 20,
                    "indexed_at": datetime.now(UTC),
                },
            )
        event = BlockIndexed(n, block_hash(n), block_hash(n - 1), now_s, 3, "head")
        self.redis.xadd(STREAM_KEY, to_fields(event), maxlen=100_000, approximate=True)  # type: ignore[arg-type]
        return f"b:{n}"

    def price(self) -> str:
        self.price_seq += 1
        room = self.price_seq % self.rooms
        exact = f"{1000 + room}.{self.price_seq}"
        event = PriceUpdated(
            token=f"TOK{room}",
            price=exact,
            blockNumber=self.height,
            blockTimestamp=int(time.time()),
            source="soak",
            publishedAt=int(time.time() * 1000),
        )
        self.redis.xadd(STREAM_KEY, to_fields(event), maxlen=100_000, approximate=True)  # type: ignore[arg-type]
        return f"p:TOK{room}:{exact}"

    def close(self) -> None:
        self.redis.close()
        self.engine.dispose()


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    workdir = Path(tempfile.mkdtemp(prefix="chainpulse-soak-"))
    make_database(workdir)
    rows: list[dict[str, Any]] = []
    env = dict(kv.split("=", 1) for kv in args.env)
    with RedisServer() as rs:
        server = start_server("chainpulse", 1, rs.url, workdir, env)
        procs = [SoakClients(workdir, i) for i in range(args.procs)]
        publisher = Publisher(rs.url, f"sqlite:///{workdir / 'bench.db'}", args.rooms)
        try:
            publisher.block()  # the clients' first block, so that they resume from one
            share = [
                args.clients // args.procs + (i < args.clients % args.procs)
                for i in range(args.procs)
            ]
            offsets = [sum(share[:i]) for i in range(args.procs)]
            log(f"connecting {args.clients} clients")
            got = each(
                procs,
                lambda i: {
                    "cmd": "connect",
                    "url": server.urls[0],
                    "count": share[i],
                    "offset": offsets[i],
                    "rooms": args.rooms,
                },
            )
            log(f"connected {sum(r['connected'] for r in got)}")
            rows = soak(args, server, procs, publisher)
        finally:
            publisher.close()
            for p in procs:
                p.stop()
            server.stop()
            shutil.rmtree(workdir, ignore_errors=True)
    return rows


def soak(
    args: argparse.Namespace, server: Any, procs: list[SoakClients], pub: Publisher
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    reports: list[threading.Thread] = []
    storm: dict[str, Any] = {}
    started = time.monotonic()
    cpu = cpu_seconds(server.pids)
    for minute in range(1, args.minutes + 1):
        if minute == args.storm_at:

            def go() -> None:
                replies = each(procs, lambda i: {"cmd": "storm"})
                storm.update(
                    connected=sum(r["connected"] for r in replies), ms=max(r["ms"] for r in replies)
                )
                log(f"reconnect storm: {storm['connected']} back in {storm['ms'] / 1000:.1f} s")

            threading.Thread(target=go, daemon=True).start()
        published: dict[str, float] = {}
        end = started + minute * 60
        second = started + (minute - 1) * 60
        while second < end:
            published[pub.block()] = time.time() * 1000
            for k in range(args.prices):
                due = second + (k + 0.5) / args.prices
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                published[pub.price()] = time.time() * 1000
            second += 1
            wait = second - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        now_cpu = cpu_seconds(server.pids)
        row: dict[str, Any] = {
            "minute": minute,
            "rss_mb": rss_kb(server.pids) / 1024,
            "cpu_pct": 100 * (now_cpu - cpu) / 60,
            "storm": minute == args.storm_at,
        }
        cpu = now_cpu
        rows.append(row)
        thread = threading.Thread(target=report, args=(args, procs, published, row), daemon=True)
        thread.start()
        reports.append(thread)
    for thread in reports:
        thread.join(120)
    return rows


def report(
    args: argparse.Namespace,
    procs: list[SoakClients],
    published: dict[str, float],
    row: dict[str, Any],
) -> None:
    time.sleep(args.drain)  # the minute's last messages arrive
    replies = each(procs, lambda i: {"cmd": "report", "published": published})
    hist = Hist()
    for r in replies:
        hist.add(r["hist"])
    row.update(
        expected=sum(r["expected"] for r in replies),
        received=sum(r["received"] for r in replies),
        lost=sum(r["lost"] for r in replies),
        duplicates=sum(r["duplicates"] for r in replies),
        gaps=sum(r["gaps"] for r in replies),
        dropped=sum(r["disconnects"] for r in replies),
        p99_ms=hist.quantile(0.99),
    )
    log(
        f"minute {row['minute']}: RSS {row['rss_mb']:.1f} MB, CPU {row['cpu_pct']:.0f}%, "
        f"{row['received']}/{row['expected']} lost {row['lost']} p99 {row['p99_ms'] or 0:.0f} ms"
    )


def table(rows: list[dict[str, Any]]) -> str:
    heads = [
        "minute",
        "server RSS (MB)",
        "expected",
        "received",
        "lost",
        "p99 (ms)",
        "server CPU (% core)",
    ]
    out = [
        [
            f"{r['minute']}{' (storm)' if r['storm'] else ''}",
            f"{r['rss_mb']:.1f}",
            f"{r.get('expected', 0):,}",
            f"{r.get('received', 0):,}",
            f"{r.get('lost', 0):,}",
            f"{r['p99_ms']:.0f}" if r.get("p99_ms") is not None else "-",
            f"{r['cpu_pct']:.0f}",
        ]
        for r in rows
    ]
    return markdown_table(heads, out)


def verdict(args: argparse.Namespace, rows: list[dict[str, Any]]) -> str:
    lost = sum(r.get("lost", 0) for r in rows)
    extra = sum(r.get("duplicates", 0) + r.get("gaps", 0) for r in rows)
    lines = [f"lost {lost} (target 0); duplicates and gaps seen by clients {extra}"]
    after = [r for r in rows if r["minute"] > args.storm_at]
    if len(after) >= 2:
        first, last = after[0], after[-1]
        growth = 100 * (last["rss_mb"] - first["rss_mb"]) / first["rss_mb"]
        lines.append(
            f"RSS from minute {first['minute']} to {last['minute']}: "
            f"{first['rss_mb']:.1f} -> {last['rss_mb']:.1f} MB ({growth:+.1f}%, target <= +5%)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.monotonic()
    rows = run(args)
    flags = " ".join(sys.argv[1:] if argv is None else argv) or "(defaults)"
    print(f"\nbench/soak: {flags}; {time.monotonic() - started:.0f} s")
    print(
        f"{args.clients} clients in {args.rooms} rooms; 1 block/s and {args.prices} "
        f"prices/s; reconnect storm at minute {args.storm_at}"
    )
    print(table(rows))
    print(verdict(args, rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
