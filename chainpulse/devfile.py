"""The settings a running `chainpulse dev` chose, in `.dev/settings.env`, so that other
commands in the same folder (`status`, `backfill`, `price set`, `token`) reach the same
stack without setting anything.

The file is dotenv text with a first comment naming the dev process; it counts only
while that process lives (a stale file left by a killed dev stack is ignored), and its
values come last: the environment, then `./.env`, then this file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from chainpulse.devnet import alive

PATH = Path(".dev") / "settings.env"
_HEADER = re.compile(r"^# written by chainpulse dev \(pid (\d+)\)")


def write(values: Mapping[str, str], path: Path = PATH) -> None:
    lines = [
        f"# written by chainpulse dev (pid {os.getpid()}); read by the other chainpulse "
        "commands in this folder while it runs",
        *(f"{key}={_quote(value)}" for key, value in values.items()),
    ]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)


def remove(path: Path = PATH) -> None:
    """Remove the file if this process wrote it."""
    if owner(path) == os.getpid():
        path.unlink(missing_ok=True)


def owner(path: Path = PATH) -> int | None:
    try:
        first = path.read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    match = _HEADER.match(first)
    return int(match.group(1)) if match else None


def read(path: Path = PATH) -> dict[str, str]:
    """The running dev stack's settings, or {} when there is none."""
    pid = owner(path)
    if pid is None or not alive(pid):
        return {}
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
