"""The jobs on the `blocks` queue, `IndexBlocks` and `DecodeLogs`, and the broker their
enqueuers share.

A job crosses Celery as keyword arguments (`first`, `last`, `source`, `force`, and
`chain`, the chain id, for any chain but the primary) of the task
`chainpulse.index_blocks`; jobs queued by older releases as positional
`(first, last, source, force)` decode the same way (they are the primary's).
Enqueuers (the follower, `chainpulse backfill`) send by task name through `broker`, so
they never import the task itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

from celery import Celery

from indexer.config import IndexerSettings
from indexer.errors import FatalError
from indexer.event_sync import SyncState, pieces, plan
from indexer.events import BlockSource
from indexer.store import Store

QUEUE = "blocks"
TASK = "chainpulse.index_blocks"
DECODE_TASK = "chainpulse.decode_logs"


class JobArgs(TypedDict):
    first: int
    last: int
    source: BlockSource
    force: bool
    chain: NotRequired[int]  # absent for the primary chain (the job form of before chains)


class BadJob(FatalError):
    """A job message that no worker can run (wrong types, impossible range)."""


@dataclass(frozen=True)
class IndexBlocks:
    """Index heights `first`..`last` (inclusive), announced with `source`; `force`
    re-indexes heights already stored."""

    first: int
    last: int
    source: BlockSource = "backfill"
    force: bool = False
    chain: int | None = None  # the chain's id; None: the primary

    def __post_init__(self) -> None:
        ints = all(isinstance(n, int) and not isinstance(n, bool) for n in (self.first, self.last))
        if not ints or self.first < 0 or self.last < self.first:
            raise BadJob(f"bad job range {self.first!r}..{self.last!r}")
        if self.source not in ("head", "backfill"):
            raise BadJob(f"bad job source {self.source!r}")
        if not isinstance(self.force, bool):
            raise BadJob(f"bad job force flag {self.force!r}")
        if self.chain is not None and (
            not isinstance(self.chain, int) or isinstance(self.chain, bool) or self.chain < 1
        ):
            raise BadJob(f"bad job chain {self.chain!r}")

    @property
    def heights(self) -> list[int]:
        return list(range(self.first, self.last + 1))

    def to_kwargs(self) -> JobArgs:
        """The Celery encoding: the task's keyword arguments; `chain` only for a chain
        other than the primary (the primary's jobs keep the form of before chains, so
        workers of the release before run them during a rolling deploy)."""
        kwargs: JobArgs = {
            "first": self.first,
            "last": self.last,
            "source": self.source,
            "force": self.force,
        }
        if self.chain is not None:
            kwargs["chain"] = self.chain
        return kwargs

    @classmethod
    def from_message(cls, args: Any, kwargs: Any) -> IndexBlocks:
        """Decode a task message, keyword (current) or positional (older releases)."""
        names = ("first", "last", "source", "force", "chain")
        values = dict(zip(names, args or (), strict=False))
        values.update({k: v for k, v in (kwargs or {}).items() if k in names})
        if "first" not in values or "last" not in values:
            raise BadJob(f"a job needs first and last, got args {args!r} kwargs {kwargs!r}")
        return cls(**values)


@dataclass(frozen=True)
class DecodeLogs:
    """Decode the stored logs of heights `first`..`last` for the contracts named
    (`indexer.event_sync`): no call to the node. `chain`: its id, None for the primary."""

    first: int
    last: int
    contracts: tuple[str, ...]
    chain: int | None = None

    def __post_init__(self) -> None:
        ints = all(isinstance(n, int) and not isinstance(n, bool) for n in (self.first, self.last))
        if not ints or self.first < 0 or self.last < self.first:
            raise BadJob(f"bad decode range {self.first!r}..{self.last!r}")
        if not self.contracts or not all(isinstance(c, str) for c in self.contracts):
            raise BadJob(f"bad decode contracts {self.contracts!r}")

    def to_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "first": self.first,
            "last": self.last,
            "contracts": list(self.contracts),
        }
        if self.chain is not None:
            kwargs["chain"] = self.chain
        return kwargs

    @classmethod
    def from_message(cls, kwargs: Any) -> DecodeLogs:
        if not isinstance(kwargs, dict) or not {"first", "last", "contracts"} <= set(kwargs):
            raise BadJob(f"a decode job needs first, last and contracts, got {kwargs!r}")
        contracts = kwargs["contracts"]
        if not isinstance(contracts, list):
            raise BadJob(f"bad decode contracts {contracts!r}")
        return cls(kwargs["first"], kwargs["last"], tuple(contracts), kwargs.get("chain"))


def start_sync(
    settings: IndexerSettings, store: Store, app: Celery, only: str | None = None
) -> dict[str, SyncState]:
    """Plan the history of one chain's contracts (or of the one named `only`) and send
    the pieces not decoded yet; each contract's state."""
    contracts = [c for c in settings.contracts if only is None or c.name == only]
    if not contracts:
        return {}
    found = plan(store, contracts)
    chain = None if settings.is_primary else settings.chain_id
    by_piece: dict[tuple[int, int], list[str]] = {}
    for name, state in found.items():
        for lo, hi in pieces(state):
            if lo not in state.done:
                by_piece.setdefault((lo, hi), []).append(name)
    for (lo, hi), names in sorted(by_piece.items()):
        job = DecodeLogs(lo, hi, tuple(sorted(names)), chain)
        app.send_task(DECODE_TASK, kwargs=job.to_kwargs(), queue=QUEUE)
    return found


def broker_options(visibility_timeout: int) -> dict[str, Any]:
    """Redis transport options for producers and consumers of the `blocks` queue."""
    return {
        "visibility_timeout": visibility_timeout,
        # kombu looks for jobs of vanished workers every interval x throttle seconds,
        # 10 x 10 by default: far longer than the timeout. Look often, and every time.
        "unacked_restore_interval": max(1, min(10, visibility_timeout // 4)),
        "unacked_restore_throttle": 1,
        # The sweep holds a Redis mutex that expires after 300 s by default: a worker
        # killed while sweeping would stop every restore for five minutes.
        "unacked_mutex_expire": max(5, visibility_timeout // 2),
    }


def broker(redis_url: str) -> Celery:
    """A Celery app that sends jobs to the `blocks` queue and asks its workers questions;
    it runs no task."""
    app = Celery("chainpulse-enqueue", broker=redis_url, set_as_current=False)
    app.conf.update(
        task_default_queue=QUEUE,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_timeout=5,
        broker_connection_retry_on_startup=True,
    )
    return app
