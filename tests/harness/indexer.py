"""An Indexer in the test process, built the way a worker process builds one."""

from __future__ import annotations

from chainpulse.settings import Settings
from indexer.pipeline import Indexer
from workers.runner import build


def build_indexer(
    rpc_url: str, database_url: str, redis_url: str, stream_maxlen: int = 100_000
) -> Indexer:
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
