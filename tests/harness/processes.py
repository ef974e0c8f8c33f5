"""Subprocesses: stopping them (politely, then for good) and walking their trees."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path


def stop(
    process: subprocess.Popen[bytes] | subprocess.Popen[str] | None,
    *,
    sig: int = signal.SIGTERM,
    grace: float = 10.0,
    group: bool = False,
) -> None:
    """Send `sig` (to the process group with `group`), wait up to `grace` seconds, then
    SIGKILL. A stopped process is woken first so that it can act on `sig`."""
    if process is None:
        return
    if process.poll() is None:
        send(process, signal.SIGCONT, group)
        send(process, sig, group)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            send(process, signal.SIGKILL, group)
            process.wait(10)
    if group:
        send(process, signal.SIGKILL, group)  # children left behind, if any


def send(process: subprocess.Popen[bytes] | subprocess.Popen[str], sig: int, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError):
        if group:
            os.killpg(process.pid, sig)
        else:
            process.send_signal(sig)


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo += children.get(current, [])
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time of `pids` (those still alive), in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / ticks
