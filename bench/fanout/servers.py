"""The servers under test: `chainpulse serve`, a plain python-socketio server on eventlet
(plain_server.py) and a minimal Node socket.io 4 server (baseline.js)."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import builds
from chainpulse.devnet import ROOT, free_port, wait_until
from tests.harness.environment import CHAINPULSE, service_env
from tests.harness.processes import stop

HERE = Path(__file__).resolve().parent


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
            stop(p)
        for fh in self.logs:
            fh.close()


def answers(port: int) -> bool:
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
        env = service_env(PORT=str(port), REDIS_URL=redis_url)
        env.pop("PYTHONWARNINGS", None)
        if kind == "chainpulse" or kind.startswith("chainpulse@"):
            env["DATABASE_URL"] = f"sqlite:///{workdir / 'bench.db'}"
            env.update(extra_env)
            env["PYTHONPATH"] = str(builds.source(kind, workdir))  # another build's code
            cmd = [CHAINPULSE, "serve"]
        elif kind == "chainpulse-gc":  # chainpulse serve, logging slow garbage collections
            env["DATABASE_URL"] = f"sqlite:///{workdir / 'bench.db'}"
            env.update(extra_env, MEMPROBE_GC="1", MEMPROBE_TRACE="0")
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
                return answers(port)

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
