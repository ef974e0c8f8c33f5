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

    .venv/bin/python bench/fanout/run.py            # N = 1000,5000,10000
    .venv/bin/python bench/fanout/run.py --quick    # smoke check, under a minute

Every phase is bounded by a timeout; the whole run by --budget (optional phases are
skipped once it is spent).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import queue
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from chainpulse.devnet import RedisServer, free_port, wait_until  # noqa: E402
from indexer.config import STREAM_KEY  # noqa: E402
from indexer.events import BlockIndexed, PriceUpdated, to_fields  # noqa: E402

ROOMS = 20
TOKENS = [f"TOK{i}" for i in range(ROOMS)]
CLK_TCK = os.sysconf("SC_CLK_TCK")
LOG_BASE = 1.01  # clients.js histogram buckets: latency ~ 1.01**b - 1 ms

# Broadcast rates tried, in order, when searching for the highest sustained rate (per s).
RATE_STEPS = [2, 5, 10, 15, 20, 30, 40, 60, 80, 120, 160, 240, 320, 480, 640]
# Load-mix multipliers tried at the largest N (k blocks/s, each with 20 prices).
MIX_STEPS_UP = [1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0]
MIX_STEPS_DOWN = [0.5, 0.25]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# /proc ---------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as fh:
                found += [int(c) for c in fh.read().split()]
    return found


def process_tree(pid: int) -> list[int]:
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        todo += _children(p)
    return seen


def cpu_seconds(pids: Iterable[int]) -> float:
    total = 0.0
    for root in pids:
        for pid in process_tree(root):
            with (
                contextlib.suppress(OSError, IndexError, ValueError),
                open(f"/proc/{pid}/stat") as fh,
            ):
                fields = fh.read().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def machine_busy_seconds() -> float:
    """CPU seconds all processes spent busy (user, nice, system, irq, softirq, steal)."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK


def rss_kb(pids: Iterable[int]) -> int:
    total = 0
    for root in pids:
        for pid in process_tree(root):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
    return total


# Latency histograms --------------------------------------------------------------------


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
    """One `node clients.js` process, spoken to with JSON lines."""

    def __init__(self, index: int, logdir: Path) -> None:
        self.index = index
        self.stderr = open(logdir / f"clients-{index}-{time.time_ns()}.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            ["node", "--max-old-space-size=4096", str(HERE / "clients.js")],
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


# Publishing ----------------------------------------------------------------------------


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


# Servers under test --------------------------------------------------------------------


@dataclass
class Server:
    name: str
    procs: list[subprocess.Popen[bytes]]
    ports: list[int]
    logs: list[Any]

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    @property
    def urls(self) -> list[str]:
        return [f"ws://127.0.0.1:{port}/realtime" for port in self.ports]

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for fh in self.logs:
            fh.close()


def _answers(port: int) -> bool:
    url = f"http://127.0.0.1:{port}/socket.io/?EIO=4&transport=polling"
    with urllib.request.urlopen(url, timeout=2) as reply:
        return bool(reply.status == 200)


def start_server(
    kind: str, count: int, redis_url: str, workdir: Path, extra_env: dict[str, str]
) -> Server:
    procs: list[subprocess.Popen[bytes]] = []
    ports: list[int] = []
    logs: list[Any] = []
    for i in range(count):
        port = free_port()
        env = {**os.environ, "PORT": str(port), "REDIS_URL": redis_url}
        env.pop("PYTHONWARNINGS", None)
        if kind == "chainpulse":
            env["DATABASE_URL"] = f"sqlite:///{workdir / 'bench.db'}"
            env.update(extra_env)
            cmd = [str(ROOT / ".venv" / "bin" / "chainpulse"), "serve"]
        elif kind == "chainpulse-gc":  # chainpulse serve, logging slow garbage collections
            env["DATABASE_URL"] = f"sqlite:///{workdir / 'bench.db'}"
            env.update(extra_env, MEMPROBE_GC="1", MEMPROBE_TRACE="0")
            cmd = [str(ROOT / ".venv" / "bin" / "python"), str(HERE / "memprobe.py"), "serve"]
        elif kind == "chainpulse-tuned":
            # chainpulse serve with a remedy patched in by bench/fanout/memprobe.py, to
            # measure it before it is made in realtime/ (earlier: GC thresholds, small
            # eventlet.wsgi buffers, O(own rooms) disconnect; all since adopted).
            # Now: no database read per subscribe (in-memory price snapshots only).
            env["DATABASE_URL"] = f"sqlite:///{workdir / 'bench.db'}"
            env.update(extra_env, MEMPROBE_TRACE="0", MEMPROBE_NO_SUBSCRIBE_DB="1")
            cmd = [str(ROOT / ".venv" / "bin" / "python"), str(HERE / "memprobe.py"), "serve"]
        elif kind.startswith("plain"):
            env["PLAIN_COMPRESSION"] = "0" if kind == "plain-nodeflate" else "1"
            cmd = [str(ROOT / ".venv" / "bin" / "python"), str(HERE / "plain_server.py")]
        elif kind == "node":
            cmd = ["node", str(HERE / "baseline.js")]
        else:
            raise ValueError(f"unknown server {kind}")
        fh = open(workdir / f"{kind}-{i}-{port}.log", "w")  # noqa: SIM115
        logs.append(fh)
        procs.append(
            subprocess.Popen(cmd, env=env, cwd=workdir, stdout=fh, stderr=subprocess.STDOUT)
        )
        ports.append(port)
    server = Server(kind, procs, ports, logs)
    try:
        for port in ports:

            def up(port: int = port) -> bool:
                if not server.alive():
                    raise RuntimeError(f"{kind} exited; see its log in {workdir}")
                return _answers(port)

            wait_until(up, 60, f"{kind} answering on port {port}")
    except Exception:
        server.stop()
        raise
    time.sleep(0.5)  # let the stream reader block on XREAD (warm_up covers a late one)
    return server


def make_database(workdir: Path) -> None:
    from sqlalchemy import create_engine

    from indexer.models import metadata

    engine = create_engine(f"sqlite:///{workdir / 'bench.db'}")
    metadata.create_all(engine)
    engine.dispose()


# Phases --------------------------------------------------------------------------------


@dataclass
class Ctx:
    args: argparse.Namespace
    pool: ClientPool
    pub: Publisher
    server: Server
    deadline: float

    def left(self) -> float:
        return self.deadline - time.monotonic()


def load_phase(
    ctx: Ctx, block_rate: float, prices: bool, duration: float, drain: float
) -> dict[str, Any]:
    """Publish `block_rate` blocks/s (each with 20 prices when `prices`) for `duration` s."""
    pool, pub, server = ctx.pool, ctx.pub, ctx.server
    alive = pool.reset()
    before = pool.stats()["disconnects"]
    ticks = max(1, round(duration * block_rate))
    interval = 1.0 / block_rate
    published: dict[str, float] = {}
    s_cpu0, c_cpu0, t0 = cpu_seconds(server.pids), cpu_seconds(pool.pids), time.monotonic()
    m_cpu0, d_cpu0 = machine_busy_seconds(), time.process_time()
    behind = 0.0
    for i in range(ticks):
        due = t0 + i * interval
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        else:
            behind = max(behind, -wait)
        published.update(pub.tick(prices))
    publish_s = time.monotonic() - t0
    expected = ticks * alive * (2 if prices else 1)
    end = time.monotonic() + drain
    got = 0
    while time.monotonic() < end:
        got = pool.stats()["received"]
        if got >= expected:
            break
        time.sleep(0.1)
    wall = time.monotonic() - t0
    s_cpu = cpu_seconds(server.pids) - s_cpu0
    c_cpu = cpu_seconds(pool.pids) - c_cpu0
    other = machine_busy_seconds() - m_cpu0 - s_cpu - c_cpu - (time.process_time() - d_cpu0)
    rep = pool.report(published)
    stats = pool.stats()
    hist: Hist = rep["hist"]
    dropped = stats["disconnects"] - before
    result = {
        "block_rate": block_rate,
        "prices": prices,
        "ticks": ticks,
        "clients": alive,
        "expected": rep["expected"],
        "received": rep["received"],
        "lost": rep["lost"],
        "dups": rep["extra"] + rep["dupOrOutOfOrder"],
        "gaps": rep["gaps"],
        "dropped": dropped,
        "drop_reasons": stats["reasons"],
        "latency_ms": hist.summary(),
        "server_cpu_s": s_cpu,
        "server_cpu_us_per_msg": (s_cpu * 1e6 / rep["received"]) if rep["received"] else None,
        "loadgen_cpu_pct": 100 * c_cpu / wall,
        "server_cpu_pct": 100 * s_cpu / wall,
        "other_cpu_pct": 100 * max(0.0, other) / wall,
        "publisher_behind_s": behind,
        "publish_s": publish_s,
        "wall_s": wall,
        "hist": hist,
    }
    p99 = result["latency_ms"]["p99"]
    result["lossless"] = rep["lost"] == 0 and dropped == 0 and rep["expected"] > 0
    result["sustained"] = bool(
        result["lossless"] and p99 is not None and p99 <= ctx.args.max_p99 and behind < 0.5
    )
    log(
        f"  {server.name}: {block_rate:g}/s{' +prices' if prices else ''} x{ticks}: "
        f"got {rep['received']}/{rep['expected']} lost {rep['lost']} dropped {dropped} "
        f"p50 {fmt_ms(result['latency_ms']['p50'])} p99 {fmt_ms(p99)} "
        f"max {fmt_ms(result['latency_ms']['max'])} server {result['server_cpu_pct']:.0f}% "
        f"loadgen {result['loadgen_cpu_pct']:.0f}% others {result['other_cpu_pct']:.0f}%"
    )
    return result


def warm_up(ctx: Ctx) -> bool:
    """Publish single blocks until one reaches every client (the reader may start late)."""
    for _ in range(8):
        alive = ctx.pool.reset()
        ctx.pub.tick(False)
        end = time.monotonic() + 4
        while time.monotonic() < end:
            if ctx.pool.stats()["received"] >= alive:
                time.sleep(0.3)
                return True
            time.sleep(0.1)
        ctx.pool.wait_quiet(1.0, 20)
    return False


def broadcast_latency(ctx: Ctx, count: int) -> dict[str, Any]:
    """`count` single new-block broadcasts, one at a time, each awaited by all clients."""
    hist = Hist()
    lost = dropped = 0
    cpu = 0.0
    received = 0
    for _ in range(count):
        r = load_phase(ctx, 1.0, False, 0.5, ctx.args.drain)
        hist.add(r["hist"])
        lost += r["lost"]
        dropped += r["dropped"]
        cpu += r["server_cpu_s"]
        received += r["received"]
        time.sleep(0.3)
    return {
        "latency_ms": hist.summary(),
        "lost": lost,
        "dropped": dropped,
        "server_cpu_us_per_msg": cpu * 1e6 / received if received else None,
    }


def rate_search(
    ctx: Ctx, steps: list[float], prices: bool, duration: float
) -> tuple[float | None, list[dict[str, Any]]]:
    """Raise the rate step by step until one is not sustained; the last one that was."""
    best: float | None = None
    tried: list[dict[str, Any]] = []
    for rate in steps:
        if ctx.left() < duration + ctx.args.drain + 10:
            log("  budget spent: rate search stops here")
            break
        ok = False
        for attempt in range(1 + ctx.args.retries):
            if attempt:
                log("  failed: once more, in case that was the machine and not the server")
            r = load_phase(ctx, rate, prices, duration, ctx.args.drain)
            tried.append({k: v for k, v in r.items() if k != "hist"})
            # the issue asks for the highest lossless mix rate, and a sustained broadcast rate
            ok = bool(r["lossless"] if prices else r["sustained"])
            if ok:
                break
            ctx.pool.wait_quiet(2.0, 30)
            if r["dropped"] or ctx.left() < duration + ctx.args.drain + 10:
                break  # connections are gone: a second try would not measure the same thing
        if not ok:
            break
        best = rate
        time.sleep(0.5)
    return best, tried


# Driver --------------------------------------------------------------------------------


def fmt_ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.1f}" if v < 100 else f"{v:.0f}"


def run_server(
    args: argparse.Namespace, kind: str, redis_url: str, workdir: Path, deadline: float
) -> dict[str, Any]:
    out: dict[str, Any] = {"per_n": {}}
    sizes = sorted(args.n)
    for n in sizes:
        if time.monotonic() > deadline - args.reserve / 2:
            log(f"{kind}: budget spent, N={n} skipped")
            out["per_n"][n] = {"skipped": "budget"}
            continue
        log(f"{kind}: N={n}")
        out["per_n"][n] = res = {}
        try:
            server = start_server(kind, 1, redis_url, workdir, args.chainpulse_env)
        except Exception as exc:  # noqa: BLE001 - reported in the table
            log(f"{kind} did not start: {exc}")
            res["error"] = f"did not start: {exc}"
            break
        pool = ClientPool(min(args.client_procs, max(1, n // 100)), workdir)
        pub = Publisher(redis_url)
        try:
            ctx = Ctx(args, pool, pub, server, deadline)
            measure_n(ctx, n, res, sizes)
            if n == args.rate_n and args.scale and args.search:
                pool.stop()
                server.stop()
                res["scale"] = scale_phase(args, kind, redis_url, workdir, deadline, n, res)
        except Exception as exc:  # noqa: BLE001 - reported in the table
            log(f"{kind} N={n} failed: {exc!r}")
            res["error"] = repr(exc)
        finally:
            pool.stop()
            server.stop()
            pub.close()
    return out


def start_profile(
    args: argparse.Namespace, server: Server, n: int
) -> subprocess.Popen[bytes] | None:
    """py-spy (collapsed stacks) on a Python server from now until `stop_profile`."""
    if not args.py_spy or server.name == "node":
        return None
    out = Path(args.py_spy) / f"{server.name}-{n}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    spy = str(ROOT / ".venv" / "bin" / "py-spy")
    cmd = [spy, "record", "--pid", str(server.pids[0]), "--rate", "200", "--format", "raw"]
    cmd += ["--output", str(out), "--nonblocking"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_profile(spy: subprocess.Popen[bytes] | None) -> None:
    if spy is None or spy.poll() is not None:
        return
    spy.send_signal(signal.SIGINT)
    try:
        spy.wait(30)
    except subprocess.TimeoutExpired:
        spy.kill()
        spy.wait()


def measure_n(ctx: Ctx, n: int, res: dict[str, Any], sizes: list[int]) -> None:
    spies: list[subprocess.Popen[bytes] | None] = []
    try:
        _measure_n(ctx, n, res, sizes, spies)
    finally:
        for spy in spies:
            stop_profile(spy)


def _measure_n(
    ctx: Ctx,
    n: int,
    res: dict[str, Any],
    sizes: list[int],
    spies: list[subprocess.Popen[bytes] | None],
) -> None:
    args, pool, server = ctx.args, ctx.pool, ctx.server
    rss0 = rss_kb(server.pids)
    spies.append(start_profile(args, server, n))  # from the connects on
    cpu0 = cpu_seconds(server.pids)
    conn = pool.connect(
        server.urls, n, args.connect_concurrency, args.connect_timeout, args.deflate
    )
    res["connect"] = conn
    res["connect_server_cpu_ms_per_conn"] = (
        (cpu_seconds(server.pids) - cpu0) * 1000 / conn["connected"] if conn["connected"] else None
    )
    log(
        f"  connected {conn['connected']}/{n} in {conn['elapsed']:.1f} s "
        f"({conn['rate']:.0f}/s) failures {conn['failures']}"
    )
    time.sleep(0.5 if args.quick else 2.0)
    rss1 = rss_kb(server.pids)
    res["rss_before_kb"] = rss0
    res["rss_connected_kb"] = rss1
    res["rss_per_conn_kb"] = (rss1 - rss0) / conn["connected"] if conn["connected"] else None
    if not conn["connected"]:
        return
    if not warm_up(ctx):
        res["error"] = "no broadcast reached the clients"
        return
    res["broadcast"] = broadcast_latency(ctx, args.broadcasts)
    rss2 = rss_kb(server.pids)
    res["rss_after_traffic_kb"] = rss2
    res["rss_per_conn_traffic_kb"] = (rss2 - rss0) / conn["connected"]
    mix = load_phase(ctx, 1.0, True, args.mix_duration, args.drain)
    res["mix"] = {k: v for k, v in mix.items() if k != "hist"}
    if not mix["lossless"] or mix["dropped"]:
        ctx.pool.wait_quiet(2.0, 30)
    res["rss_after_mix_kb"] = rss_kb(server.pids)
    if args.search and n == args.rate_n and ctx.left() > args.reserve:
        log(f"  {server.name}: broadcast rate search at N={n}")
        best, tried = rate_search(ctx, args.rate_steps, False, args.rate_duration)
        res["max_rate"] = best
        res["rate_steps"] = tried
    if args.search and n == sizes[-1] and ctx.left() > args.reserve:
        log(f"  {server.name}: load-mix rate search at N={n}")
        if mix["lossless"]:
            best, tried = rate_search(ctx, args.mix_steps, True, args.mix_duration)
            res["max_mix_rate"] = best or 1.0
        else:
            best, tried = rate_search(ctx, MIX_STEPS_DOWN, True, args.mix_duration)
            res["max_mix_rate"] = best or 0.0
            res["max_mix_rate_note"] = "after a failed 1x step (connections may have dropped)"
        res["mix_steps"] = tried
        at = [t for t in tried if t["block_rate"] == res["max_mix_rate"] and t["lossless"]]
        res["max_mix_rate_p99"] = (
            (at[0] if at else mix)["latency_ms"]["p99"] if res["max_mix_rate"] else None
        )


def scale_phase(
    args: argparse.Namespace,
    kind: str,
    redis_url: str,
    workdir: Path,
    deadline: float,
    n: int,
    single: dict[str, Any],
) -> dict[str, Any]:
    """Two server processes, clients split: the highest sustained broadcast rate."""
    if time.monotonic() > deadline - args.reserve:
        return {"skipped": "budget"}
    log(f"{kind}: two processes, N={n}")
    server = start_server(kind, 2, redis_url, workdir, args.chainpulse_env)
    pool = ClientPool(min(args.client_procs, max(1, n // 100)), workdir)
    pub = Publisher(redis_url)
    try:
        ctx = Ctx(args, pool, pub, server, deadline)
        conn = pool.connect(
            server.urls, n, args.connect_concurrency, args.connect_timeout, args.deflate
        )
        if not conn["connected"] or not warm_up(ctx):
            return {"error": "clients did not connect or receive"}
        first = single.get("max_rate")
        # from one step below the single process's best, so that a value is found
        below = [r for r in args.rate_steps if first is not None and r < first]
        steps = below[-1 if not args.quick else len(below) :] + [
            r for r in args.rate_steps if first is None or r >= first
        ]
        best, tried = rate_search(ctx, steps, False, args.rate_duration)
        one = single.get("max_rate")
        return {
            "connected": conn["connected"],
            "max_rate": best,
            "steps": tried,
            "deliveries_per_s": (best or 0) * conn["connected"],
            "ratio": (best / one) if best and one else None,
            "loadgen_cpu_pct": next(
                (t["loadgen_cpu_pct"] for t in tried if t["block_rate"] == best and t["sustained"]),
                tried[-1]["loadgen_cpu_pct"] if tried else None,
            ),
            "server_cpu_pct": next(
                (t["server_cpu_pct"] for t in tried if t["block_rate"] == best and t["sustained"]),
                None,
            ),
        }
    finally:
        pool.stop()
        server.stop()
        pub.close()


# Table ---------------------------------------------------------------------------------


def table(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    kinds = list(results)
    ref = "node" if "node" in kinds else None
    # the highest lossless mix rate: no loss and no dropped connection (p99 reported beside)
    rows: list[tuple[str, str, Callable[[dict[str, Any]], float | None], str]] = []

    def per_n(n: int, path: tuple[str, ...]) -> Callable[[dict[str, Any]], float | None]:
        def get(r: dict[str, Any]) -> float | None:
            cur: Any = r["per_n"].get(n, {})
            for p in path:
                if not isinstance(cur, dict):
                    return None
                cur = cur.get(p)
            return cur if isinstance(cur, int | float) else None

        return get

    for n in sorted(args.n):
        rows += [
            ("connect rate (conn/s)", f"{n:,}", per_n(n, ("connect", "rate")), "{:.0f}"),
            ("connect failures", f"{n:,}", per_n(n, ("connect", "failed")), "{:.0f}"),
            (
                "server CPU per connect (ms)",
                f"{n:,}",
                per_n(n, ("connect_server_cpu_ms_per_conn",)),
                "{:.2f}",
            ),
            (
                "RSS per connection, connected (KB)",
                f"{n:,}",
                per_n(n, ("rss_per_conn_kb",)),
                "{:.1f}",
            ),
            (
                "RSS per connection, after traffic (KB)",
                f"{n:,}",
                per_n(n, ("rss_per_conn_traffic_kb",)),
                "{:.1f}",
            ),
            (
                "broadcast latency p50 (ms)",
                f"{n:,}",
                per_n(n, ("broadcast", "latency_ms", "p50")),
                "{:.1f}",
            ),
            (
                "broadcast latency p99 (ms)",
                f"{n:,}",
                per_n(n, ("broadcast", "latency_ms", "p99")),
                "{:.1f}",
            ),
            (
                "broadcast latency max (ms)",
                f"{n:,}",
                per_n(n, ("broadcast", "latency_ms", "max")),
                "{:.1f}",
            ),
            (
                "server CPU per delivered msg, broadcast (us)",
                f"{n:,}",
                per_n(n, ("broadcast", "server_cpu_us_per_msg")),
                "{:.1f}",
            ),
            (
                "broadcasts: dropped connections",
                f"{n:,}",
                per_n(n, ("broadcast", "dropped")),
                "{:.0f}",
            ),
            (
                "mix 1/s: clients connected at start",
                f"{n:,}",
                per_n(n, ("mix", "clients")),
                "{:.0f}",
            ),
            ("mix 1/s: dropped connections", f"{n:,}", per_n(n, ("mix", "dropped")), "{:.0f}"),
            ("mix 1/s: lost messages", f"{n:,}", per_n(n, ("mix", "lost")), "{:.0f}"),
            (
                "mix 1/s: latency p50 (ms)",
                f"{n:,}",
                per_n(n, ("mix", "latency_ms", "p50")),
                "{:.1f}",
            ),
            (
                "mix 1/s: latency p99 (ms)",
                f"{n:,}",
                per_n(n, ("mix", "latency_ms", "p99")),
                "{:.1f}",
            ),
            (
                "mix 1/s: latency max (ms)",
                f"{n:,}",
                per_n(n, ("mix", "latency_ms", "max")),
                "{:.1f}",
            ),
            (
                "mix 1/s: server CPU per delivered msg (us)",
                f"{n:,}",
                per_n(n, ("mix", "server_cpu_us_per_msg")),
                "{:.1f}",
            ),
            (
                "mix 1/s: server CPU (% of a core)",
                f"{n:,}",
                per_n(n, ("mix", "server_cpu_pct")),
                "{:.0f}",
            ),
            (
                "mix 1/s: load generator CPU (% of a core)",
                f"{n:,}",
                per_n(n, ("mix", "loadgen_cpu_pct")),
                "{:.0f}",
            ),
            (
                "mix 1/s: other processes' CPU (% of a core)",
                f"{n:,}",
                per_n(n, ("mix", "other_cpu_pct")),
                "{:.0f}",
            ),
        ]
    rn = args.rate_n
    rows += [
        ("highest sustained broadcast rate (/s)", f"{rn:,}", per_n(rn, ("max_rate",)), "{:g}"),
        ("  same, two server processes (/s)", f"{rn:,}", per_n(rn, ("scale", "max_rate")), "{:g}"),
        ("  two processes / one", f"{rn:,}", per_n(rn, ("scale", "ratio")), "{:.2f}"),
        (
            "  load generator CPU at 2-proc best (% core)",
            f"{rn:,}",
            per_n(rn, ("scale", "loadgen_cpu_pct")),
            "{:.0f}",
        ),
    ]
    big = max(args.n)

    def capacity(r: dict[str, Any]) -> float | None:
        us = per_n(big, ("broadcast", "server_cpu_us_per_msg"))(r)
        return 1e6 / us if us else None

    rows += [
        (
            "CPU-bound capacity, 1e6 / CPU per msg (deliveries/s/core)",
            f"{big:,}",
            capacity,
            "{:.0f}",
        )
    ]
    rows += [
        (
            "highest lossless mix rate (blocks/s, x20 prices)",
            f"{big:,}",
            per_n(big, ("max_mix_rate",)),
            "{:g}",
        ),
        (
            "  p99 latency at that rate (ms)",
            f"{big:,}",
            per_n(big, ("max_mix_rate_p99",)),
            "{:.0f}",
        ),
    ]

    heads = ["figure", "N", *kinds]
    if ref:
        heads += [f"{k}/{ref}" for k in kinds if k != ref]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for label, n_label, get, fmt in rows:
        vals = [get(results[k]) for k in kinds]
        cells = [label, n_label] + ["-" if v is None else fmt.format(v) for v in vals]
        if ref:
            rv = get(results[ref])
            for k, v in zip(kinds, vals, strict=True):
                if k == ref:
                    continue
                cells.append("-" if v is None or not rv else f"{v / rv:.2f}x")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", default="1000,5000,10000", help="client counts, comma-separated")
    ap.add_argument(
        "--servers",
        default="chainpulse,plain,node",
        help="chainpulse, plain, plain-nodeflate, node",
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
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "log", "-1", "--format=%h %s", "--", "realtime"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--short", "--", "realtime", "indexer"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.split()
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
    return table(results, args)


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
    try:
        # Split what is left of the budget evenly between the servers still to run.
        for i, kind in enumerate(args.servers):
            share = (deadline - time.monotonic()) / (len(args.servers) - i)
            with RedisServer() as rs:
                results[kind] = run_server(args, kind, rs.url, workdir, time.monotonic() + share)
    finally:
        if not args.keep_logs:
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - started
    text = table(results, args)
    print(f"\nchainpulse under test: {source_state}")
    flags = " ".join(sys.argv[1:] if argv is None else argv) or "(defaults)"
    print(
        f"\nbench/fanout: {flags}; {elapsed:.0f} s; "
        f"{os.cpu_count()} CPUs; clients offer deflate: {args.deflate}"
    )
    print(text)
    for kind, r in results.items():
        for n, res in r["per_n"].items():
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
