"""Helpers around the devnet services that the indexer and worker tests share."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

from chainpulse.devnet import Anvil, wait_until
from chainpulse.settings import Settings
from indexer.pipeline import Indexer
from workers.runner import build


def stop_anvil(node: Anvil) -> None:
    """Stop `node` and close its stderr pipe, which `Anvil.stop` leaves open."""
    process = node.process
    node.stop()
    if process is not None and process.stderr is not None:
        process.stderr.close()


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _descendants(pid: int) -> list[int]:
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


@contextlib.contextmanager
def frozen(node: Anvil) -> Iterator[None]:
    """Freeze the node (SIGSTOP) so that requests hang, as with an unresponsive provider.

    `Anvil.pause` stops only the npm launcher, whose child (the real anvil) keeps
    answering; this stops the launcher and every process below it.
    """
    assert node.process is not None
    pids = _descendants(node.process.pid)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    wait_until(lambda: all(_state(pid) == "T" for pid in pids), 10, "the node to stop")
    try:
        yield
    finally:
        for pid in reversed(pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def build_indexer(
    rpc_url: str, database_url: str, redis_url: str, stream_maxlen: int = 100_000
) -> Indexer:
    """An Indexer built the way a worker process builds one (workers.runner.build)."""
    settings = Settings(
        rpc_urls=(rpc_url,),
        database_url=database_url,
        redis_url=redis_url,
        stream_maxlen=stream_maxlen,
    )
    return build(settings).indexer


def close_indexer(indexer: Indexer) -> None:
    indexer.store.dispose()
    indexer.bus.close()
