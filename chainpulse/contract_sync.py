"""`chainpulse contracts sync [NAME] [--wait]`: decode the history of contracts added to
the contracts file, or changed, from the stored logs (`indexer.event_sync`), as jobs on
the `blocks` queue that the workers run beside indexing; with --wait, a progress line
until every one is decoded.

The follower does the same as it starts (`workers.jobs.start_sync`), so a contract added to the file
is decoded without anyone running this; the command shows where it stands, and starts
it when no follower runs. Pieces already decoded are not sent again; pieces sent and not
yet done may be sent twice (decoding is idempotent).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TextIO

import redis
from celery import Celery

from indexer.config import IndexerSettings
from indexer.errors import ConfigError
from indexer.event_sync import states
from indexer.store import Store
from workers.jobs import QUEUE, broker, start_sync

POLL_S = 0.5
NO_WORKER_TIMEOUT_S = 60.0
STALL_S = 10.0  # no progress, and no job queued or held, this long: jobs failed


def run_sync(
    views: Sequence[IndexerSettings], name: str | None, wait: bool, out: TextIO = sys.stderr
) -> int:
    if not any(view.contracts for view in views):
        raise ConfigError("no contracts to decode: set CONTRACTS to a contracts file")
    if name is not None and not any(c.name == name for v in views for c in v.contracts):
        known = ", ".join(c.name for v in views for c in v.contracts)
        raise ConfigError(f"no contract named {name!r} in CONTRACTS (contracts: {known})")
    app = broker(views[0].redis_url)
    stores = {v.chain_name: Store(v.database_url, chain_id=v.chain_id) for v in views}
    try:
        watched: list[tuple[Store, str]] = []
        for view in views:
            chosen = [c for c in view.contracts if name is None or c.name == name]
            if not chosen:
                continue
            store = stores[view.chain_name]
            store.check_schema()
            found = start_sync(view, store, app, name)
            for contract in chosen:
                state = found[contract.name]
                print(
                    f"{contract.name} ({view.chain_name}): blocks {state.first}..{state.last}, "
                    f"{state.decoded} of {state.total} decoded",
                    file=out,
                )
                watched.append((store, contract.name))
        if not wait:
            return 0
        return _watch(watched, app, views[0].redis_url, out)
    finally:
        app.close()
        for store in stores.values():
            store.dispose()


def _watch(watched: list[tuple[Store, str]], app: Celery, redis_url: str, out: TextIO) -> int:

    client = redis.Redis.from_url(redis_url, socket_timeout=10)
    try:
        return _progress(watched, app, client, out)
    finally:
        client.close()


def _progress(
    watched: list[tuple[Store, str]], app: Celery, client: redis.Redis, out: TextIO
) -> int:
    from chainpulse.backfill import jobs_outstanding, workers_on_queue

    started = time.monotonic()
    progressed = (-1, started)  # decoded, and when that changed
    first_done: int | None = None
    last_line = 0.0
    tty = out.isatty()
    while True:
        done = total = 0
        for store, contract in watched:
            state = states(store, [contract])[contract]
            if state is not None:
                done += min(state.decoded, state.total)
                total += state.total
        if first_done is None:
            first_done = done
        elapsed = time.monotonic() - started
        rate = (done - first_done) / elapsed if elapsed > 0 else 0.0
        line = f"decoded {done} of {total} blocks ({done / total:.0%}), {rate:.0f} blocks/s" if (
            total
        ) else "nothing to decode"  # fmt: skip
        if done >= total:
            print(("\r" if tty else "") + line, file=out)
            return 0
        now = time.monotonic()
        if tty:
            print("\r" + line, end="", file=out, flush=True)
        elif now - last_line >= 5:
            print(line, file=out, flush=True)
            last_line = now
        if done != progressed[0]:
            progressed = (done, now)
        elif now - progressed[1] > STALL_S and jobs_outstanding(client) == 0:
            # nothing queued, nothing held, and no progress: pieces failed for good
            print(
                f"\n{total - done} blocks were not decoded: their jobs failed, or the workers "
                "run another contracts file (restart them after changing CONTRACTS); their "
                "logs say which. Run `chainpulse contracts sync` again to send them again",
                file=out,
            )
            return 1
        if done == first_done and elapsed > NO_WORKER_TIMEOUT_S and not workers_on_queue(app):
            print(f"\nno worker consumes the `{QUEUE}` queue: start one", file=out)
            return 1
        time.sleep(POLL_S)
