"""A node that answers garbage for one request (truncated JSON, HTTP 500, replies that
answer each other's calls, a block without its receipts, a block whose parent hash is
wrong): the job fails with a clear,
retryable one-line error and writes and announces nothing, or (the wrong parent hash)
checks the stored chain, reads the blocks again and stores what the node holds. Either
way the database ends equal to the node."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from chainpulse.devnet import Anvil
from indexer import models as m
from indexer.errors import RetryableError
from indexer.pipeline import Indexer
from tests.harness.indexer import (
    counts,
    first_block_indexed,
    migrated_indexer,
    stored_as_on_node,
    stream_ids,
)
from tests.harness.proxy import (
    RpcProxy,
    receipt_without_block_hash,
    receipts_missing,
    swapped,
    wrong_parent,
)


@pytest.fixture
def proxy(anvil: Anvil) -> Iterator[RpcProxy]:
    with RpcProxy(anvil.url) as p:
        yield p


@pytest.fixture
def indexer(proxy: RpcProxy, tmp_path: Path, redis_url: str) -> Iterator[Indexer]:
    with migrated_indexer(proxy.url, f"sqlite:///{tmp_path}/chainpulse.db", redis_url) as built:
        yield built


def once(rewrite: Callable[[Any], Any]) -> Callable[[Any, Any], Any]:
    """A proxy rewrite that spoils the first reply and passes the rest."""
    done = {"yes": False}

    def spoil(_request: Any, reply: Any) -> Any:
        if done["yes"]:
            return reply
        done["yes"] = True
        return rewrite(reply)

    return spoil


@pytest.mark.parametrize(
    ("garbage", "says"),
    [
        ("truncated JSON", "sent a malformed response"),
        ("HTTP 500", "HTTP 500"),
        ("a block's receipts for the block", "answered the call for block 2 with something"),
        ("another height's block", "answered the call for block 2 with something"),
        ("a receipt without its block hash", "answered the receipts of block 2 with something"),
        ("no receipts yet", "transactions but the node gave 0 receipts"),
    ],
)
def test_a_garbage_reply_fails_the_job_cleanly_and_the_retry_indexes_all(
    anvil: Anvil, proxy: RpcProxy, indexer: Indexer, redis_url: str, garbage: str, says: str
) -> None:
    head = first_block_indexed(anvil, indexer, 3, 5)
    before = counts(indexer)
    if garbage == "truncated JSON":
        proxy.answer_next(1, 200, b'[{"jsonrpc":"2.0","id":1,"result":{"number":"0x')
    elif garbage == "HTTP 500":
        proxy.answer_next(1, 500, b"Internal Server Error")
    elif garbage == "a receipt without its block hash":
        proxy.rewrite = once(receipt_without_block_hash)
    elif garbage == "no receipts yet":
        proxy.rewrite = once(receipts_missing)
    elif garbage == "another height's block":
        proxy.rewrite = once(swapped(0, 2))  # calls: block 2, its receipts, block 3, ...
    else:
        proxy.rewrite = once(swapped(0, 1))
    with pytest.raises(RetryableError) as failed:
        indexer.index(2, head, "backfill")
    message = str(failed.value)
    assert says in message and "\n" not in message, message
    assert counts(indexer) == before  # nothing half-written
    assert len(stream_ids(redis_url)) == 1  # nothing announced
    indexer.index(2, head, "backfill")  # the job's retry
    stored_as_on_node(anvil, indexer, head)
    assert len(stream_ids(redis_url)) == head


def test_a_block_with_a_wrong_parent_hash_is_checked_and_read_again(
    anvil: Anvil, proxy: RpcProxy, indexer: Indexer, redis_url: str
) -> None:
    head = first_block_indexed(anvil, indexer, 3, 5)
    proxy.rewrite = once(wrong_parent)
    indexer.index(2, head, "backfill")
    stored_as_on_node(anvil, indexer, head)
    assert len(stream_ids(redis_url)) == head
    with indexer.store.engine.connect() as conn:
        reorgs = conn.execute(sa.select(sa.func.count()).select_from(m.reorgs)).scalar_one()
    assert reorgs == 0  # nothing was orphaned: the node had not reorganised
