"""Where the CPU goes during a phase: CPU seconds per process group, read from /proc.

Groups are process trees (a root pid and its descendants) or process names, sampled
at the start and the end of a phase; the machine's total busy time comes from
/proc/stat. Processes that start and exit inside a phase are missed, so the named
groups are a lower bound and "other" absorbs the rest.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[str, int, float] | None:
    """(comm, ppid, cpu seconds) of a live process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    rest = raw[raw.rindex(")") + 2 :].split()
    # rest[0] is state; utime, stime are fields 14, 15 of stat (rest[11], rest[12])
    return comm, int(rest[1]), (int(rest[11]) + int(rest[12])) / _TICK


def _processes() -> dict[int, tuple[str, int, float]]:
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = _stat(int(entry))
            if info is not None:
                out[int(entry)] = info
    return out


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent not idle since boot (all cores)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / _TICK


@dataclass
class Groups:
    """Process groups: trees rooted at pids, and processes matched by name."""

    trees: dict[str, int] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)

    def sample(self) -> dict[str, float]:
        procs = _processes()
        children: dict[int, list[int]] = {}
        for pid, (_, ppid, _) in procs.items():
            children.setdefault(ppid, []).append(pid)
        out: dict[str, float] = {}
        seen: set[int] = set()
        for label, root in self.trees.items():
            total, stack = 0.0, [root]
            while stack:
                pid = stack.pop()
                if pid in seen or pid not in procs:
                    continue
                seen.add(pid)
                total += procs[pid][2]
                stack.extend(children.get(pid, []))
            out[label] = total
        for label, name in self.names.items():
            out[label] = sum(
                cpu for pid, (comm, _, cpu) in procs.items() if comm == name and pid not in seen
            )
        out["(machine busy)"] = busy_seconds()
        out["(wall)"] = time.monotonic()
        return out


def delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    return {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}


def describe(used: Mapping[str, float], extra: Mapping[str, float] | None = None) -> str:
    """'anvil 1.20, workers 0.50, ...': cores used on average between the two samples."""
    combined = {**used, **(extra or {})}
    seconds = combined.pop("(wall)", 0.0)
    busy = combined.pop("(machine busy)", 0.0)
    known = sum(combined.values())
    parts = [f"{k} {v / seconds:.2f}" for k, v in combined.items() if seconds > 0]
    if busy and seconds > 0:
        parts.append(f"other {max(0.0, busy - known) / seconds:.2f}")
        parts.append(f"(machine {busy / seconds:.2f} of {os.cpu_count()})")
    return "cores used: " + ", ".join(parts)
