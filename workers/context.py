"""Per-process resources for jobs: node client, database, event bus.

Built when a worker process starts (`worker_process_init`), never at import time,
so prefork children each get their own connections; building connects to nothing,
it only loads the drivers, so the first job does not pay for that.
"""

from __future__ import annotations

import logging
import threading

from celery.signals import worker_process_init, worker_process_shutdown

from indexer.bus import EventBus
from indexer.config import Settings
from indexer.pipeline import Indexer
from indexer.rpc import Node
from indexer.store import Store
from workers.app import app

log = logging.getLogger(__name__)

RELAY_INTERVAL_S = 5.0

_lock = threading.Lock()
_indexer: Indexer | None = None
_bound = False
_relay_thread: threading.Thread | None = None


def build(settings: Settings) -> Indexer:
    return Indexer(
        node=Node(settings.rpc_urls, settings.rpc_timeout),
        store=Store(settings.database_url),
        bus=EventBus.from_url(settings.redis_url, settings.stream_key, settings.stream_maxlen),
        max_reorg_depth=settings.max_reorg_depth,
    )


def store(settings: Settings) -> Store:
    """This process's Store, usable even when the node is down or on another chain."""
    global _indexer
    with _lock:
        if _indexer is None:
            _indexer = build(settings)
        return _indexer.store


def indexer(settings: Settings) -> Indexer:
    """This process's Indexer, bound to the node's chain id on first use."""
    global _indexer, _bound
    with _lock:
        if _indexer is None:
            _indexer = build(settings)
        if not _bound:
            _indexer.store.bind_chain(_indexer.node.chain_id())
            _bound = True
            _start_relay()
        return _indexer


def _start_relay() -> None:
    """Relay outbox entries left behind when Redis was down, even while no job arrives."""
    global _relay_thread
    if _relay_thread is not None and _relay_thread.is_alive():
        return

    def loop() -> None:
        while True:
            threading.Event().wait(RELAY_INTERVAL_S)
            current = _indexer
            if current is None:
                continue
            try:
                current.relay()
            except Exception:  # the database may be away too; try again next round
                log.exception("outbox relay failed")

    _relay_thread = threading.Thread(target=loop, name="outbox-relay", daemon=True)
    _relay_thread.start()


@worker_process_init.connect
def _on_process_init(**_: object) -> None:
    global _indexer, _bound
    global _relay_thread
    with _lock:
        _indexer, _bound, _relay_thread = None, False, None
        try:
            _indexer = build(app.conf.chainpulse_settings)
        except Exception:  # e.g. a malformed DATABASE_URL: the first job reports it
            log.exception("could not prepare this worker process; its first job will retry")


@worker_process_shutdown.connect
def _on_process_shutdown(**_: object) -> None:
    if _indexer is not None:
        _indexer.store.dispose()
