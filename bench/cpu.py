"""Where the CPU goes during a phase, and how much of the machine others are using.

Groups are process trees (a root pid and its descendants, first match wins) or
process names, sampled at the start and the end of a phase; the machine's busy time
comes from /proc/stat. "others" is busy time that no group accounts for: on a shared
machine, other people's processes (their CPU competes with the benchmark, so a phase
with others above a few tenths of a core is noisy). Processes that start and exit
inside a phase are missed by the groups and land in "others".
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

_TICK = os.sysconf("SC_CLK_TCK")


def _processes() -> dict[int, tuple[str, int, float]]:
    """pid -> (comm, ppid, cpu seconds) for every live process."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        rest = raw[raw.rindex(")") + 2 :].split()
        # rest[0] is the state; utime and stime are stat fields 14 and 15
        out[int(entry)] = (comm, int(rest[1]), (int(rest[11]) + int(rest[12])) / _TICK)
    return out


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent not idle since boot (all cores)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / _TICK


@dataclass
class Sample:
    wall: float
    busy: float
    groups: dict[str, float]  # trees: total cpu of the live tree
    named: dict[str, dict[int, float]]  # names: pid -> cpu, so exits do not count negative
    others: dict[int, tuple[str, float]]  # pid -> (comm, cpu) of ungrouped processes


@dataclass
class Usage:
    """Average cores used between two samples."""

    seconds: float
    groups: dict[str, float]
    others: float
    machine: float
    top_others: list[tuple[str, float]] = field(default_factory=list)

    def ms_per(self, units: int) -> dict[str, float]:
        """CPU milliseconds per unit of work (e.g. per block), by group and others."""
        cpu = {k: v * self.seconds for k, v in self.groups.items()}
        cpu["others"] = self.others * self.seconds
        return {k: v * 1000 / units for k, v in cpu.items() if units}

    def describe(self) -> str:
        parts = [f"{k} {v:.2f}" for k, v in self.groups.items()]
        top = ", ".join(f"{k} {v:.2f}" for k, v in self.top_others[:3] if v >= 0.02)
        parts.append(f"others {self.others:.2f}" + (f" [{top}]" if top else ""))
        return f"cores: {', '.join(parts)} (machine {self.machine:.2f} of {os.cpu_count()})"


@dataclass
class Groups:
    trees: dict[str, int] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)

    def sample(self) -> Sample:
        procs = _processes()
        children: dict[int, list[int]] = {}
        for pid, (_, ppid, _) in procs.items():
            children.setdefault(ppid, []).append(pid)
        groups: dict[str, float] = {}
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
            groups[label] = total
        named: dict[str, dict[int, float]] = {}
        for label, name in self.names.items():
            named[label] = {
                pid: cpu
                for pid, (comm, _, cpu) in procs.items()
                if comm == name and pid not in seen
            }
            seen.update(named[label])
        others = {pid: (comm, cpu) for pid, (comm, _, cpu) in procs.items() if pid not in seen}
        return Sample(time.monotonic(), busy_seconds(), groups, named, others)

    def usage(self, before: Sample, after: Sample | None = None, **extra: float) -> Usage:
        """Cores per group between two samples; `extra` adds CPU seconds measured
        elsewhere (e.g. a child's rusage) that the samples missed."""
        after = after or self.sample()
        seconds = max(after.wall - before.wall, 1e-9)
        groups = {k: (v - before.groups.get(k, 0.0)) for k, v in after.groups.items()}
        for label, pids in after.named.items():
            was = before.named.get(label, {})
            groups[label] = sum(cpu - was.get(pid, 0.0) for pid, cpu in pids.items())
        groups.update(extra)
        by_name: dict[str, float] = {}
        for pid, (comm, cpu) in after.others.items():
            was = before.others.get(pid)
            used = cpu - was[1] if was and was[0] == comm else cpu
            by_name[comm] = by_name.get(comm, 0.0) + used
        busy = after.busy - before.busy
        others = max(0.0, busy - sum(groups.values()))
        top = sorted(((k, v / seconds) for k, v in by_name.items()), key=lambda kv: -kv[1])
        return Usage(
            seconds,
            {k: v / seconds for k, v in groups.items()},
            others / seconds,
            busy / seconds,
            top,
        )


def wait_for_quiet(max_wait: float, threshold: float, log: object = print) -> float:
    """Wait (up to `max_wait` s) until processes outside this benchmark use less than
    `threshold` cores over a second; returns what they used last."""
    groups = Groups(trees={"bench": os.getpid()})
    deadline = time.monotonic() + max_wait
    said = False
    while True:
        before = groups.sample()
        time.sleep(1.0)
        others = groups.usage(before).others
        if others < threshold or time.monotonic() >= deadline:
            if said and callable(log):
                log(f"  machine: others use {others:.2f} cores; going on")
            return others
        if not said and callable(log):
            log(f"  machine busy: others use {others:.2f} cores; waiting up to {max_wait:.0f} s")
            said = True
