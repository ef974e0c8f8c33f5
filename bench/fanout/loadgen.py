"""The load generator: Node processes running the official socket.io-client
(bench/fanout/clients.js), spoken to with JSON lines, and the publisher that appends
contract-shaped events to the stream."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import queue
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from indexer.config import STREAM_KEY
from indexer.events import BlockIndexed, PriceUpdated, to_fields

HERE = Path(__file__).resolve().parent
ROOMS = 20
TOKENS = [f"TOK{i}" for i in range(ROOMS)]
LOG_BASE = 1.01  # clients.js histogram buckets: latency ~ 1.01**b - 1 ms


@dataclass
class Hist:
    buckets: dict[int, int] = field(default_factory=dict)

    def add(self, other: dict[str, int] | Hist) -> None:
        items = other.buckets.items() if isinstance(other, Hist) else other.items()
        for b, n in items:
            self.buckets[int(b)] = self.buckets.get(int(b), 0) + int(n)

    @property
    def count(self) -> int:
        return sum(self.buckets.values())

    def quantile(self, q: float) -> float | None:
        total = self.count
        if total == 0:
            return None
        rank = max(1, math.ceil(q * total))
        seen = 0
        for b in sorted(self.buckets):
            seen += self.buckets[b]
            if seen >= rank:
                return float(LOG_BASE**b - 1)
        return None

    def summary(self) -> dict[str, float | None]:
        return {"p50": self.quantile(0.5), "p99": self.quantile(0.99), "max": self.quantile(1.0)}


# Node client processes -----------------------------------------------------------------


class ClientProc:
    """One `node clients.js` process (or another `script` that speaks the same way),
    spoken to with JSON lines; one command at a time (a reply to another is dropped)."""

    def __init__(self, index: int, logdir: Path, script: Path = HERE / "clients.js") -> None:
        self.index = index
        self.stderr = open(logdir / f"clients-{index}-{time.time_ns()}.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            ["node", "--max-old-space-size=4096", str(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            bufsize=1,
        )
        self.replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seq = 0
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                self.replies.put(json.loads(line))

    def send(self, cmd: dict[str, Any]) -> int:
        self.seq += 1
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({**cmd, "seq": self.seq}) + "\n")
        self.proc.stdin.flush()
        return self.seq

    def wait(self, seq: int, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise TimeoutError(f"client process {self.index} gave no reply to #{seq}")
            try:
                reply = self.replies.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if reply.get("seq") == seq:
                if "error" in reply:
                    raise RuntimeError(f"client process {self.index}: {reply['error']}")
                return reply

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.wait(self.send({"cmd": "close"}), 10)
        with contextlib.suppress(Exception):
            self.proc.wait(5)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(5)
        for pipe in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(Exception):
                pipe.close()  # type: ignore[union-attr]
        self.stderr.close()


class ClientPool:
    def __init__(self, procs: int, logdir: Path) -> None:
        self.procs = [ClientProc(i, logdir) for i in range(procs)]

    @property
    def pids(self) -> list[int]:
        return [p.proc.pid for p in self.procs]

    def all(self, cmds: list[dict[str, Any]], timeout: float) -> list[dict[str, Any]]:
        seqs = [p.send(c) for p, c in zip(self.procs, cmds, strict=True)]
        return [p.wait(s, timeout) for p, s in zip(self.procs, seqs, strict=True)]

    def same(self, cmd: dict[str, Any], timeout: float = 30) -> list[dict[str, Any]]:
        return self.all([cmd] * len(self.procs), timeout)

    def connect(
        self, urls: list[str], n: int, concurrency: int, timeout: float, deflate: bool
    ) -> dict[str, Any]:
        share = [
            n // len(self.procs) + (1 if i < n % len(self.procs) else 0)
            for i in range(len(self.procs))
        ]
        offsets = [sum(share[:i]) for i in range(len(share))]
        cmds = [
            {
                "cmd": "connect",
                "urls": urls,
                "count": share[i],
                "offset": offsets[i],
                "rooms": ROOMS,
                "concurrency": concurrency,
                "timeoutMs": int(timeout * 1000),
                "deflate": deflate,
            }
            for i in range(len(self.procs))
        ]
        started = time.monotonic()
        replies = self.all(cmds, timeout * 3 + 60)
        elapsed = time.monotonic() - started
        failures: dict[str, int] = {}
        for r in replies:
            for why, k in r["failures"].items():
                failures[why] = failures.get(why, 0) + k
        connected = sum(r["connected"] for r in replies)
        return {
            "connected": connected,
            "failed": sum(r["failed"] for r in replies),
            "failures": failures,
            "elapsed": elapsed,
            "rate": connected / elapsed if elapsed > 0 else 0.0,
            "connect_p99_ms": max((r["connectMs"]["p99"] or 0) for r in replies),
        }

    def reset(self) -> int:
        return sum(r["alive"] for r in self.same({"cmd": "reset"}))

    def stats(self) -> dict[str, Any]:
        replies = self.same({"cmd": "stats"}, 15)
        reasons: dict[str, int] = {}
        for r in replies:
            for why, k in r["disconnectReasons"].items():
                reasons[why] = reasons.get(why, 0) + k
        return {
            "received": sum(r["received"] for r in replies),
            "alive": sum(r["alive"] for r in replies),
            "disconnects": sum(r["disconnects"] for r in replies),
            "reasons": reasons,
            "rss_kb": sum(r["rssKb"] for r in replies),
        }

    def report(self, published: dict[str, float]) -> dict[str, Any]:
        replies = self.same({"cmd": "report", "published": published}, 60)
        hist = Hist()
        out: dict[str, Any] = {"hist": hist}
        for r in replies:
            hist.add(r["hist"])
            for k in ("expected", "received", "lost", "extra", "unexpected", "negative"):
                out[k] = out.get(k, 0) + r[k]
            for k in ("dupOrOutOfOrder", "gaps", "disconnects", "alive"):
                out[k] = out.get(k, 0) + r[k]
        return out

    def wait_quiet(self, quiet: float, limit: float) -> None:
        """Wait until no message arrives for `quiet` s (a backlog drained), at most `limit` s."""
        deadline = time.monotonic() + limit
        last, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            got = self.stats()["received"]
            if got != last:
                last, since = got, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return
            time.sleep(0.2)

    def stop(self) -> None:
        for p in self.procs:
            p.stop()


def block_hash(number: int) -> str:
    return "0x" + hashlib.sha256(f"fanout-block-{number}".encode()).hexdigest()


class Publisher:
    """Appends contract-shaped events to the stream; blocks are consecutive and linked."""

    height = 1_000_000  # shared by all publishers: heights only rise during a run

    def __init__(self, url: str) -> None:
        self.redis = redis.Redis.from_url(url, decode_responses=True)

    def close(self) -> None:
        self.redis.close()

    def tick(self, prices: bool) -> dict[str, float]:
        """Append the next block (and one price per room from it); returns key -> publish ms."""
        Publisher.height += 1
        n = Publisher.height
        now_s = int(time.time())
        block = BlockIndexed(
            blockNumber=n,
            blockHash=block_hash(n),
            parentHash=block_hash(n - 1),
            blockTimestamp=now_s,
            transactions=3,
            source="head",
        )
        pipe = self.redis.pipeline(transaction=False)
        pipe.xadd(STREAM_KEY, to_fields(block), maxlen=100_000, approximate=True)  # type: ignore[arg-type]
        keys = [f"b:{n}"]
        if prices:
            for i, token in enumerate(TOKENS):
                price = PriceUpdated(
                    token=token,
                    price=f"{1000 + i}.{n % 1000:03d}",
                    blockNumber=n,
                    blockTimestamp=now_s,
                    source="bench",
                    publishedAt=int(time.time() * 1000),
                )
                pipe.xadd(STREAM_KEY, to_fields(price), maxlen=100_000, approximate=True)  # type: ignore[arg-type]
                keys.append(f"p:{token}:{n}")
        stamp = time.time() * 1000
        pipe.execute()
        return dict.fromkeys(keys, stamp)
