"""`chainpulse status`: the node's head, the highest indexed block, the lag, missing
ranges, failed blocks, the queue depth and the outbox backlog, the active follower and
whether indexing is halted by a reorg deeper than allowed. A part that cannot be
reached is reported as an error next to the rest."""

from __future__ import annotations

from typing import Any

import redis

from indexer.config import Settings, mask_url
from indexer.errors import ChainpulseError
from indexer.ranges import describe
from indexer.reorg import read_halt
from indexer.rpc import Node
from indexer.store import Store
from workers.app import QUEUE


def collect_status(settings: Settings) -> dict[str, Any]:
    report: dict[str, Any] = {"errors": []}
    try:
        report["head"] = Node(settings.rpc_urls, settings.rpc_timeout).head()
    except ChainpulseError as exc:
        report["head"] = None
        report["errors"].append(str(exc))
    store = Store(settings.database_url)
    try:
        summary = store.summary()
        failures = store.failures()
        report.update(
            indexed=summary["highest"],
            lowest=summary["lowest"],
            blocks=summary["count"],
            gaps=summary["gaps"],
            chainId=summary["chainId"],
            outbox=summary["outbox"],
            failed=[{"number": f["number"], "error": f["error"]} for f in failures],
            halted=read_halt(store),
        )
    except ChainpulseError as exc:
        report.update(
            indexed=None,
            lowest=None,
            blocks=None,
            gaps=[],
            chainId=None,
            outbox=None,
            failed=[],
            halted=None,
        )
        report["errors"].append(str(exc))
    finally:
        store.dispose()
    if report.get("halted"):
        report["errors"].append(f"indexing is halted: {report['halted']['reason']}")
    head, indexed = report.get("head"), report.get("indexed")
    report["lag"] = head - indexed if head is not None and indexed is not None else None
    try:
        client = redis.Redis.from_url(
            settings.redis_url, socket_connect_timeout=3, socket_timeout=3
        )
        report["queue"] = int(client.llen(QUEUE))
        report["follower"] = _follower(client)
    except redis.RedisError as exc:
        report["queue"] = None
        report["follower"] = None
        report["errors"].append(f"Redis at {mask_url(settings.redis_url)} is unreachable: {exc}")
    return report


def _follower(client: redis.Redis) -> dict[str, Any] | None:
    from follower.lease import holder
    from follower.queue import read_cursor

    lock = holder(client)
    if lock is None:
        return None
    cursor = read_cursor(client)
    return {**lock, "cursor": cursor.number if cursor else None}


def render_status(report: dict[str, Any]) -> str:
    def show(value: Any) -> str:
        return "unknown" if value is None else str(value)

    gaps = ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in report["gaps"]) or "none"
    failed = report["failed"]
    lines = [
        f"chain id     {show(report.get('chainId'))}",
        f"node head    {show(report.get('head'))}",
        f"indexed      {show(report.get('indexed'))} (from {show(report.get('lowest'))}, "
        f"{show(report.get('blocks'))} blocks)",
        f"lag          {show(report.get('lag'))}",
        f"missing      {gaps}",
        f"failed       {describe(f['number'] for f in failed) if failed else 'none'}",
        f"queue depth  {show(report.get('queue'))}",
        f"outbox       {show(report.get('outbox'))} events waiting for Redis",
        f"follower     "
        f"{'unknown' if report.get('queue') is None else _show_follower(report.get('follower'))}",
    ]
    halted = report.get("halted")
    if halted:
        lines.append(f"HALTED       since {halted.get('detectedAt')}; see README, Reorgs")
    if failed:
        lines.append(f"last error   {failed[-1]['error']}")
    lines += [f"error        {e}" for e in report["errors"]]
    return "\n".join(lines)


def _show_follower(follower: dict[str, Any] | None) -> str:
    if not follower:
        return "none active"
    return (
        f"active (token {follower['token']}, owner {follower['owner']}, "
        f"enqueued up to {follower['cursor'] if follower['cursor'] is not None else 'nothing yet'})"
    )
