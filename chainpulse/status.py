"""`chainpulse status`: per chain, the node's head, the highest indexed block, the lag,
missing ranges, failed blocks, the active follower and whether indexing is halted by a
reorg deeper than allowed; and the queue depth and the outbox backlog. A part that
cannot be reached is reported as an error next to the rest."""

from __future__ import annotations

from typing import TypedDict

import redis

from follower.lease import LOCK_KEY, holder
from follower.queue import CURSOR_KEY, read_cursor
from indexer.config import IndexerSettings
from indexer.errors import ChainpulseError
from indexer.ranges import describe
from indexer.reorg import HaltJson, read_halt
from indexer.rpc import Node
from indexer.store import Store
from indexer.urls import mask_url
from workers.jobs import QUEUE


class FailedBlock(TypedDict):
    number: int
    error: str


class ActiveFollower(TypedDict):
    token: int
    owner: str
    ttl: float  # seconds left on its lock
    cursor: int | None  # the last height it enqueued


class StatusReport(TypedDict):
    """What `status --json` prints for a chain (a script's contract: fields are only
    ever added). Without a chains file it is the whole output; with one, the output is
    `{"chains": [StatusReport, ...]}`, the primary first."""

    name: str  # the chain's name in the chains file; "main" without one
    head: int | None
    indexed: int | None
    lowest: int | None
    blocks: int | None
    lag: int | None
    gaps: list[list[int]]  # inclusive [first, last] runs of missing heights
    chainId: int | None
    outbox: int | None
    failed: list[FailedBlock]
    halted: HaltJson | None
    queue: int | None
    follower: ActiveFollower | None
    errors: list[str]


def collect_status(settings: IndexerSettings) -> StatusReport:
    """The status of the chain of `settings` (one of `settings.chains()`)."""
    report: StatusReport = {
        "name": settings.chain_name,
        "head": None,
        "indexed": None,
        "lowest": None,
        "blocks": None,
        "lag": None,
        "gaps": [],
        "chainId": None,
        "outbox": None,
        "failed": [],
        "halted": None,
        "queue": None,
        "follower": None,
        "errors": [],
    }
    try:
        report["head"] = Node.from_settings(settings).head()
    except ChainpulseError as exc:
        report["errors"].append(str(exc))
    store = Store(settings.database_url, chain_id=settings.chain_id)
    try:
        summary = store.summary()
        failures = store.failures()
        halt = read_halt(store)
        report["indexed"], report["lowest"] = summary.highest, summary.lowest
        report["blocks"], report["gaps"] = summary.count, [[a, b] for a, b in summary.gaps]
        report["chainId"], report["outbox"] = summary.chain_id, summary.outbox
        report["failed"] = [{"number": f.number, "error": f.error} for f in failures]
        report["halted"] = halt.as_json() if halt is not None else None
        if halt is not None:
            report["errors"].append(f"indexing is halted: {halt.reason}")
    except ChainpulseError as exc:
        report["errors"].append(str(exc))
    finally:
        store.dispose()
    head, indexed = report["head"], report["indexed"]
    report["lag"] = head - indexed if head is not None and indexed is not None else None
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=3)
    try:
        report["queue"] = int(client.llen(QUEUE))
        report["follower"] = _follower(client, settings)
    except redis.RedisError as exc:
        report["queue"] = None
        report["follower"] = None
        report["errors"].append(f"Redis at {mask_url(settings.redis_url)} is unreachable: {exc}")
    finally:
        client.close()
    return report


def _follower(client: redis.Redis, settings: IndexerSettings) -> ActiveFollower | None:
    lock = holder(client, settings.chain_key(LOCK_KEY))
    if lock is None:
        return None
    cursor = read_cursor(client, settings.chain_key(CURSOR_KEY))
    return {
        "token": lock.token,
        "owner": lock.owner,
        "ttl": lock.ttl,
        "cursor": cursor.number if cursor else None,
    }


def render_status(report: StatusReport) -> str:
    def show(value: object) -> str:
        return "unknown" if value is None else str(value)

    gaps = ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in report["gaps"]) or "none"
    failed = report["failed"]
    lines = [
        f"chain        {report['name']}",
        f"chain id     {show(report['chainId'])}",
        f"node head    {show(report['head'])}",
        f"indexed      {show(report['indexed'])} (from {show(report['lowest'])}, "
        f"{show(report['blocks'])} blocks)",
        f"lag          {show(report['lag'])}",
        f"missing      {gaps}",
        f"failed       {describe(f['number'] for f in failed) if failed else 'none'}",
        f"queue depth  {show(report['queue'])}",
        f"outbox       {show(report['outbox'])} events waiting for Redis",
        f"follower     "
        f"{'unknown' if report['queue'] is None else _show_follower(report['follower'])}",
    ]
    halted = report["halted"]
    if halted:
        lines.append(f"HALTED       since {halted['detectedAt']}; see docs/operations.md, Reorgs")
    if failed:
        lines.append(f"last error   {failed[-1]['error']}")
    lines += [f"error        {e}" for e in report["errors"]]
    return "\n".join(lines)


def _show_follower(follower: ActiveFollower | None) -> str:
    if not follower:
        return "none active"
    return (
        f"active (token {follower['token']}, owner {follower['owner']}, "
        f"enqueued up to {follower['cursor'] if follower['cursor'] is not None else 'nothing yet'})"
    )
