"""bench/contracts/fanout: filtered contract event subscriptions against unfiltered ones,
at the same number of clients and deliveries (issue 26).

  filtered  CLIENTS clients in 1,000 filtered subscriptions of one busy channel
            (`events:Token.Transfer` with `{to: <one of 1,000 addresses>}`, so CLIENTS /
            1,000 holders each); every block carries 100 transfers, each to one of the
            addresses: each event matches one subscription
  rooms     CLIENTS clients, unfiltered, in ten channels (`events:T0`..`events:T9`);
            every block carries one event of one of them

Both deliver CLIENTS / 10 messages per block... per event in `rooms` and per block of
100 events in `filtered`: the same deliveries per second at the same block rate. The
stream is fed directly (`block.indexed` entries carrying `contractEvents`, as workers
write them) to one `chainpulse serve` on SQLite, with clients of the official
socket.io-client in two Node processes. It prints, per mode, deliveries, the server's
CPU time per delivered message (user + system, from /proc) and the p50/p99 latency from
the append to the arrival. Target: the filtered case costs no more per delivered
message.

Usage: .venv/bin/python -m bench.contracts.fanout [--clients 10000] [--rate 5]
       [--seconds 30]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import redis
import requests
import sqlalchemy as sa

from bench.common import markdown_table
from bench.latency.run import pct, spawn
from chainpulse.devnet import RedisServer, free_port, port_open, wait_until
from indexer import models as m
from indexer.events import BlockIndexed, to_fields
from indexer.queries import PRIMARY_KEY
from indexer.schema import upgrade
from tests.harness.environment import service_env

ROOT = Path(__file__).resolve().parents[2]
CHAIN = 31337
TRANSFER = "Transfer(address indexed from, address indexed to, uint256 value)"
SENDER = "0x" + "5e" * 20


def address(n: int) -> str:
    return "0x" + f"{n:040x}"


def contracts_file(path: Path) -> Path:
    path.write_text(
        "".join(
            f'[[contract]]\nname = "{name}"\naddress = "{address(0xC0 + i)}"\n'
            f'events = ["{TRANSFER}"]\n\n'
            for i, name in enumerate(["Token", *(f"T{k}" for k in range(10))])
        )
    )
    return path


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime, stime (clock ticks)


def event(contract: str, number: int, index: int, to: str) -> dict[str, Any]:
    return {
        "contract": contract, "event": "Transfer", "address": address(0xC0), "blockNumber": number,
        "blockHash": f"0x{number:064x}", "blockTimestamp": 1_700_000_000 + number,
        "logIndex": index, "transactionHash": f"0x{number:056x}{index:08x}",
        "args": {"from": SENDER, "to": to, "value": str(int(time.time() * 1_000_000))},
    }  # fmt: skip


def one_mode(mode: str, args: argparse.Namespace) -> list[str]:
    with ExitStack() as stack:
        server_redis = stack.enter_context(RedisServer())
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cp-events-")))
        url = f"sqlite:///{workdir}/db.sqlite"
        upgrade(url)
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(
                m.meta.insert(), {"chain_id": CHAIN, "key": PRIMARY_KEY, "value": str(CHAIN)}
            )
        engine.dispose()
        port = free_port()
        env = service_env(
            DATABASE_URL=url, REDIS_URL=server_redis.url, PORT=str(port),
            CONTRACTS=str(contracts_file(workdir / "contracts.toml")),
            ETH_RPC_URL="http://127.0.0.1:1", LOG_LEVEL="warning", PYTHONWARNINGS="ignore",
            RATE_LIMIT="100000",
        )  # fmt: skip
        server = spawn([str(ROOT / ".venv" / "bin" / "chainpulse"), "serve"], env,
                       workdir / "serve.log", stack)  # fmt: skip
        wait_until(lambda: port_open(port), 30, "chainpulse serve")
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: requests.get(base + "/healthz", timeout=5).status_code == 200, 30, "up")
        half = args.clients // 2
        clients = [
            subprocess.Popen(
                ["node", str(ROOT / "bench" / "contracts" / "clients.js"), base + "/realtime",
                 str(lo), str(hi), mode],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )
            for lo, hi in ((0, half), (half, args.clients))
        ]  # fmt: skip
        ready = 0
        for client in clients:
            assert client.stdout is not None
            ready += int(json.loads(client.stdout.readline())["ready"])
        bus = redis.Redis.from_url(server_redis.url)
        rng = random.Random(7)
        number = 1
        before = cpu_seconds(server.pid)
        started = time.monotonic()
        sent_events = 0
        for tick in range(int(args.seconds * args.rate)):
            time.sleep(max(0.0, started + tick / args.rate - time.monotonic()))
            if mode == "filtered":
                events = [
                    event("Token", number, i, address(rng.randrange(1000))) for i in range(100)
                ]
            else:
                events = [event(f"T{number % 10}", number, 0, address(1))]
            block = BlockIndexed(
                blockNumber=number, blockHash=f"0x{number:064x}", parentHash=f"0x{number - 1:064x}",
                blockTimestamp=1_700_000_000 + number, transactions=len(events), source="head",
                chainId=CHAIN, contractEvents=events,
            )  # fmt: skip
            bus.xadd("chainpulse:events", to_fields(block))  # type: ignore[arg-type]
            sent_events += len(events)
            number += 1
        time.sleep(3)  # the last ones arrive
        cpu = cpu_seconds(server.pid) - before
        latencies: list[float] = []
        disconnects = 0
        for client in clients:
            assert client.stdin is not None and client.stdout is not None
            client.stdin.write("report\n")
            client.stdin.flush()
            report = json.loads(client.stdout.readline())
            latencies += report["latencies"]
            disconnects += report["disconnects"]
            client.wait(30)
        bus.close()
    delivered = len(latencies)
    expected = sent_events * (args.clients // 1000) if mode == "filtered" else sent_events * (
        args.clients // 10
    )  # fmt: skip
    return [
        mode, f"{ready:,}", f"{sent_events:,}", f"{delivered:,} of {expected:,}",
        f"{cpu:.1f} s", f"{cpu / max(1, delivered) * 1e6:.1f} µs",
        f"{pct(latencies, 50):.0f} ms", f"{pct(latencies, 99):.0f} ms", str(disconnects),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--clients", type=int, default=10_000)
    p.add_argument("--rate", type=float, default=5, help="blocks per second")
    p.add_argument("--seconds", type=float, default=30)
    args = p.parse_args(argv)
    rows = []
    for mode in ("rooms", "filtered"):
        print(f"{mode}: {args.clients} clients ...", flush=True)
        rows.append(one_mode(mode, args))
        print("  " + " | ".join(rows[-1]), flush=True)
    print(
        markdown_table(
            ["mode", "subscribed", "events sent", "delivered", "server CPU",
             "CPU per delivery", "p50", "p99", "disconnects"],
            rows,
        )
    )  # fmt: skip
    per = [float(r[5].split()[0]) for r in rows]
    print(f"filtered / rooms CPU per delivered message: {per[1] / per[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
