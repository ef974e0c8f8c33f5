"""(b) chainpulse's end-to-end backfill, through its command-line contract only.

A throwaway redis-server and a fresh database (a PostgreSQL database created for the
run and dropped after, or a temp SQLite file); `chainpulse db upgrade`; a real
`celery -A workers worker -Q blocks` (prefork); then `chainpulse backfill FROM TO
--wait`, timed from launch to exit 0. Rows are counted afterwards against the fixture.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

from bench.backfill.fetch import FetchResult
from bench.backfill.fixture import Fixture
from bench.cpu import Groups, Usage
from chainpulse.devnet import RedisServer, wait_until
from tests.harness.databases import database
from tests.harness.processes import children, stop

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"


@dataclass
class PipelineResult(FetchResult):
    """A phase (b) run: its figures as a fetch's, with where the CPU went and the rows."""

    usage: Usage | None = None
    rows: dict[str, int] = field(default_factory=dict)
    timeline: str = ""


def _run(args: list[str], env: dict[str, str], timeout: float, log: Path) -> None:
    with log.open("ab") as out:
        done = subprocess.run(
            args, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=timeout
        )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:3])} exited {done.returncode}:\n{_tail(log)}")


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").replace("\r", "\n")
    except OSError:
        return ""
    return "\n".join([ln for ln in text.splitlines() if ln.strip()][-lines:])


def run_pipeline(
    kind: str,
    fixture: Fixture,
    rpc_url: str,
    anvil_pid: int,
    concurrency: int,
    timeout: float,
    extra_env: dict[str, str] | None = None,
    profile_dir: Path | None = None,
    log: object = print,
) -> PipelineResult:
    """Backfill the fixture range into a fresh `kind` database; time and verify it.
    With PRICE_SOURCES in `extra_env` the price rows are verified too, and the result is
    labelled `<kind>+prices`."""
    say = log if callable(log) else print
    workdir = Path(tempfile.mkdtemp(prefix=f"chainpulse-bench-{kind}-"))
    logs = workdir / "logs"
    logs.mkdir()
    worker: subprocess.Popen[bytes] | None = None
    spies: list[subprocess.Popen[bytes]] = []
    try:
        with RedisServer() as redis_server, database(kind, workdir) as db_url:
            env = {
                **os.environ,
                "DATABASE_URL": db_url,
                "REDIS_URL": redis_server.url,
                "ETH_RPC_URL": rpc_url,
                **(extra_env or {}),
            }
            _run([str(BIN / "chainpulse"), "db", "upgrade"], env, 120, logs / "upgrade.log")
            worker_log = logs / "worker.log"
            with worker_log.open("ab") as out:
                worker = subprocess.Popen(
                    [
                        str(BIN / "celery"),
                        "-A",
                        "workers",
                        "worker",
                        "-Q",
                        "blocks",
                        "-P",
                        "prefork",
                        "--concurrency",
                        str(concurrency),
                        "--loglevel",
                        "INFO",
                        "-n",
                        f"bench-{uuid.uuid4().hex[:8]}@%h",
                    ],
                    env=env,
                    cwd=ROOT,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )

            def ready() -> bool:
                assert worker is not None
                if worker.poll() is not None:
                    raise RuntimeError(f"the worker exited:\n{_tail(worker_log)}")
                return " ready." in worker_log.read_text(errors="replace")

            wait_until(ready, 60, "the Celery worker start")
            if profile_dir is not None:
                spies = _start_py_spy(worker.pid, profile_dir, kind, timeout)
            trees = {"anvil": anvil_pid, "workers": worker.pid}
            if redis_server.process is not None:
                trees["redis"] = redis_server.process.pid
            trees["bench"] = os.getpid()
            names = {"postgres": "postgres"} if kind == "postgresql" else {}
            groups = Groups(trees, names)
            before = groups.sample()
            launched = time.time()
            seconds, cli_cpu = _timed_backfill(fixture, env, timeout, logs / "backfill.log")
            timeline = job_timeline(worker_log, launched, seconds, concurrency)
            usage = groups.usage(before, **{"backfill cli": cli_cpu})
            for spy in spies:
                with contextlib.suppress(ProcessLookupError):
                    spy.send_signal(signal.SIGINT)
            stop(worker, grace=20, group=True)
            rows = _count_rows(db_url, fixture)
            priced = bool(env.get("PRICE_SOURCES"))
            _check(rows, fixture, kind, priced)
            return PipelineResult(
                f"{kind}+prices" if priced else kind,
                f"celery prefork x{concurrency}",
                rows["blocks"],
                rows["transactions"],
                rows["logs"],
                seconds,
                usage,
                rows,
                timeline,
            )
    except BaseException:
        for name in ("upgrade.log", "worker.log", "backfill.log"):
            if (logs / name).exists():
                say(f"--- {kind} {name} (last lines) ---\n{_tail(logs / name)}")
        raise
    finally:
        for spy in spies:
            if spy.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    spy.send_signal(signal.SIGINT)
                try:
                    spy.wait(30)
                except subprocess.TimeoutExpired:
                    spy.kill()
        if worker is not None:
            stop(worker, grace=20, group=True)
        if profile_dir is not None and logs.exists():
            profile_dir.mkdir(parents=True, exist_ok=True)
            for path in logs.glob("*.log"):
                shutil.copy(path, profile_dir / f"{kind}-{path.name}")
        shutil.rmtree(workdir, ignore_errors=True)


def _timed_backfill(
    fixture: Fixture, env: dict[str, str], timeout: float, log: Path
) -> tuple[float, float]:
    """Seconds from launching `chainpulse backfill FROM TO --wait` to its exit 0, and its
    own CPU seconds."""
    args = [str(BIN / "chainpulse"), "backfill", str(fixture.first), str(fixture.last), "--wait"]
    with log.open("ab") as out:
        started = time.monotonic()
        proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                seconds = time.monotonic() - started
                proc.returncode = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise TimeoutError(f"chainpulse backfill did not finish within {timeout:.0f} s")
            time.sleep(0.02)
    if proc.returncode != 0:
        raise RuntimeError(f"chainpulse backfill exited {proc.returncode}:\n{_tail(log)}")
    return seconds, usage.ru_utime + usage.ru_stime


# the worker's text log lines (indexer.loglines): "<asctime> <LEVEL> <logger> <message>"
_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ \S+ (.*)$")
_SUCCEEDED = re.compile(r"Task chainpulse\.\S+ succeeded in ([0-9.]+)s: (\d+)")


def job_timeline(worker_log: Path, launched: float, seconds: float, concurrency: int) -> str:
    """Split the backfill's wall time, from the worker's INFO log: CLI start-up until
    the first job arrives, the jobs, and the tail until the CLI notices the end; and
    how busy the worker processes were while jobs were flowing."""
    received: list[float] = []
    finished: list[float] = []
    busy = 0.0
    blocks = 0
    for line in worker_log.read_text(errors="replace").splitlines():
        m = _LOG_TIME.match(line)
        if not m:
            continue
        when = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        if " received" in m.group(2) and when >= launched - 1:
            received.append(when)
        done = _SUCCEEDED.search(m.group(2))
        if done and when >= launched - 1:
            finished.append(when)
            busy += float(done.group(1))
            blocks += int(done.group(2))
    if not received or not finished:
        return "no job lines in the worker log"
    window = max(finished) - min(received)
    head = min(received) - launched
    tail = launched + seconds - max(finished)
    occupancy = busy / (window * concurrency) if window > 0 else 0.0
    return (
        f"wall {seconds:.1f} s = cli start-up to first job {head:.1f} s + jobs {window:.1f} s "
        f"+ tail {tail:.1f} s; {len(finished)} jobs, mean {busy / len(finished) * 1000:.0f} ms; "
        f"worker processes busy {occupancy:.0%} of that window; "
        f"{blocks / window if window > 0 else 0:.0f} blocks/s within it"
    )


def _count_rows(db_url: str, fixture: Fixture) -> dict[str, int]:
    engine = sa.create_engine(db_url)
    lo, hi = fixture.first, fixture.last
    try:
        with engine.connect() as conn:

            def one(sql: str) -> int:
                return int(conn.execute(sa.text(sql), {"lo": lo, "hi": hi}).scalar() or 0)

            return {
                "blocks": one("SELECT count(*) FROM blocks WHERE number BETWEEN :lo AND :hi"),
                "tx_count": one(
                    "SELECT sum(tx_count) FROM blocks WHERE number BETWEEN :lo AND :hi"
                ),
                "transactions": one(
                    "SELECT count(*) FROM transactions WHERE block_number BETWEEN :lo AND :hi"
                ),
                "logs": one("SELECT count(*) FROM logs WHERE block_number BETWEEN :lo AND :hi"),
                "reverted": one(
                    "SELECT count(*) FROM transactions WHERE status = 0"
                    " AND block_number BETWEEN :lo AND :hi"
                ),
                "deployments": one(
                    "SELECT count(*) FROM transactions WHERE contract_address IS NOT NULL"
                    " AND block_number BETWEEN :lo AND :hi"
                ),
                "prices": one("SELECT count(*) FROM prices WHERE block_number BETWEEN :lo AND :hi"),
                "contract_events": one(
                    "SELECT count(*) FROM contract_events WHERE block_number BETWEEN :lo AND :hi"
                ),
            }
    finally:
        engine.dispose()


def _check(rows: dict[str, int], fixture: Fixture, kind: str, priced: bool) -> None:
    expected = {
        "prices": fixture.price_updates if priced else 0,
        "blocks": fixture.last - fixture.first + 1,
        "tx_count": fixture.transactions,
        "transactions": fixture.transactions,
        "logs": fixture.logs,
        "reverted": fixture.reverted,
        "deployments": fixture.deployments,
    }
    wrong = {k: (rows.get(k), v) for k, v in expected.items() if rows.get(k) != v}
    if wrong:
        detail = ", ".join(
            f"{k}: {got} stored, {want} expected" for k, (got, want) in wrong.items()
        )
        raise RuntimeError(f"{kind}: rows do not match the fixture: {detail}")


def _start_py_spy(
    worker_pid: int, out_dir: Path, kind: str, timeout: float
) -> list[subprocess.Popen[bytes]]:
    """py-spy record on each prefork child (raw collapsed stacks), until SIGINT."""
    spy = BIN / "py-spy"
    if not spy.exists():
        found = shutil.which("py-spy")
        if found is None:
            raise RuntimeError("--profile needs py-spy (.venv/bin/pip install py-spy)")
        spy = Path(found)
    out_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    for pid in children(worker_pid):
        procs.append(
            subprocess.Popen(
                [
                    str(spy),
                    "record",
                    "--pid",
                    str(pid),
                    "--format",
                    "raw",
                    "--idle",
                    "--nonblocking",
                    "--rate",
                    "200",
                    "--duration",
                    str(int(timeout) + 60),
                    "--output",
                    str(out_dir / f"{kind}-worker-{pid}.txt"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    time.sleep(1.0)  # let py-spy attach before the clock starts
    return procs
