"""Where a Celery worker's wall time goes: summaries of `py-spy record --format raw
--idle` output (one collapsed stack per line, `frame;frame;... count`).

Samples of the job-running (main) thread are wall time; a background thread counts
only when it is not parked in threading's waits. Each sample is attributed to the
innermost chainpulse frame (indexer/, workers/) and to the module of its innermost
frame (socket = waiting on the network, psycopg's connection = waiting on PostgreSQL,
json = parsing...). Main-thread samples with no task frame are the prefork child
waiting for its next job.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TASK_FRAME = "index_blocks (workers/tasks.py"
OURS = ("indexer/", "workers/")
# Innermost modules where a sample is blocked, not computing (network, database, pipes)
WAITING = {
    "socket",
    "ssl",
    "selectors",
    "threading",
    "psycopg/connection",
    "psycopg/waiting",
    "billiard/connection",
    "redis/_parsers",
    "redis/connection",
}


def _path(frame: str) -> str:
    inside = frame[frame.rfind("(") + 1 : frame.rfind(")")]
    return inside.rsplit(":", 1)[0]


def _func(frame: str) -> str:
    return frame[: frame.rfind(" (")]


def _leaf(frame: str) -> str:
    path = _path(frame)
    parts = path.split("/")
    if len(parts) == 1:
        return path.removesuffix(".py")
    return "/".join(parts[:2]).removesuffix(".py")


def summarize(files: list[Path]) -> tuple[int, Counter[str], Counter[tuple[str, str]]]:
    """(samples, samples per innermost chainpulse frame, per (frame, innermost module))."""
    total = 0
    ours: Counter[str] = Counter()
    pairs: Counter[tuple[str, str]] = Counter()
    for file in files:
        for line in file.read_text(errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = stack.split(";")
            if not frames[0].startswith("<module>"):
                # a background thread (the outbox relay): count only when it works
                if _path(frames[-1]) == "threading.py":
                    continue
                inner = next((f for f in reversed(frames) if _path(f).startswith(OURS)), "")
                label = f"(background thread) {_path(inner)}:{_func(inner)}"
                ours[label] += count
                pairs[(label, _leaf(frames[-1]))] += count
                total += count
                continue
            total += count
            if not any(f.startswith(TASK_FRAME) for f in frames):
                ours["(outside a job: waiting for the next one, celery)"] += count
                continue
            inner = next((f for f in reversed(frames) if _path(f).startswith(OURS)), frames[-1])
            label = f"{_path(inner)}:{_func(inner)}"
            ours[label] += count
            pairs[(label, _leaf(frames[-1]))] += count
    return total, ours, pairs


def summarize_profiles(directory: Path, top: int = 14) -> str:
    files = sorted(directory.glob("*-worker-*.txt"))
    if not files:
        return f"no py-spy profiles in {directory}"
    lines = []
    for kind in sorted({f.name.split("-worker-")[0] for f in files}):
        mine = [f for f in files if f.name.startswith(kind + "-worker-")]
        total, ours, pairs = summarize(mine)
        if not total:
            continue
        lines.append(
            f"worker wall time on {kind} ({len(mine)} processes, {total} samples, "
            "share of samples; innermost chainpulse frame -> innermost module):"
        )
        computing = sum(c for (_, leaf), c in pairs.items() if leaf not in WAITING)
        lines.append(
            f"  {computing / total:5.1%}  of it computing in a job (the rest waits on the node, "
            "the database, Redis or the next job); computing by frame:"
        )
        by_frame: Counter[str] = Counter()
        for (label, leaf), c in pairs.items():
            if leaf not in WAITING:
                by_frame[label] += c
        for label, count in by_frame.most_common(6):
            lines.append(f"         {count / total:5.1%}  {label}")
        lines.append("  wall time by frame:")
        for label, count in ours.most_common(top):
            leaves = sorted(
                ((leaf, c) for (lab, leaf), c in pairs.items() if lab == label),
                key=lambda kv: -kv[1],
            )[:3]
            detail = ", ".join(f"{leaf} {c / total:.0%}" for leaf, c in leaves)
            lines.append(f"  {count / total:5.1%}  {label}" + (f"  [{detail}]" if detail else ""))
    return "\n".join(lines)
