"""Another build of chainpulse beside this one, for before/after figures in one run: a
git worktree of a revision, whose server runs from its own code with this checkout's
virtualenv (the same locked dependencies).

A server kind `chainpulse@REV` (bench/fanout) or a `--builds` entry (bench/latency) names
one; `chainpulse` alone is this working tree.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from chainpulse.devnet import ROOT

VENDOR = Path("realtime") / "web" / "vendor"  # git-ignored; copied from this checkout


def checkout(revision: str, workdir: Path) -> Path:
    """A worktree of `revision` under `workdir` (made once per workdir)."""
    tree = workdir / f"build-{revision}"
    if not tree.exists():
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "--force", str(tree), revision],
            check=True,
            capture_output=True,
            timeout=120,
        )
        if (ROOT / VENDOR).exists():
            shutil.copytree(ROOT / VENDOR, tree / VENDOR, dirs_exist_ok=True)
    return tree


def forget(workdir: Path) -> None:
    """Remove the worktrees made under `workdir`."""
    for tree in workdir.glob("build-*"):
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
            capture_output=True,
            timeout=120,
            check=False,
        )
    subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"], capture_output=True, check=False)


def source(kind: str, workdir: Path) -> Path:
    """Where a server kind's code is: `chainpulse@REV` a worktree, else this checkout."""
    _, at, revision = kind.partition("@")
    return checkout(revision, workdir) if at else ROOT


def describe(revision: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), "log", "-1", "--format=%h %s", revision],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return done.stdout.strip()[:90] or revision
