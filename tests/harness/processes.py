"""Subprocesses: stopping them (politely, then for good) and walking their trees."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterable
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


def children(pid: int) -> list[int]:
    """The processes `pid` started (any of its threads), from /proc."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(c) for c in (task / "children").read_text().split()]
    return found


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it."""
    seen: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.append(current)
            todo += children(current)
    return seen


def cpu_seconds(roots: Iterable[int]) -> float:
    """User plus system CPU seconds of the live process trees under `roots`."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for root in roots:
        for pid in descendants(root):
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
    return total / ticks


def rss_kb(roots: Iterable[int]) -> int:
    """Resident memory of the live process trees under `roots`, in KB."""
    total = 0
    for root in roots:
        for pid in descendants(root):
            with contextlib.suppress(OSError, ValueError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
    return total
