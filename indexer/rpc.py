"""JSON-RPC access to the Ethereum node, through web3.py's HTTP provider.

The provider's own retries are off: retry policy belongs to the caller (Celery's
backoff for jobs, the follower's loop), so retries never stack. Responses stay raw
JSON; `indexer.blocks` decodes only what is stored, which is several times faster
than web3's default result formatters; they are parsed with orjson, which takes
half the time of the standard library's parser on 100 KB full blocks.

Failover: `ETH_RPC_URL` may list several endpoints. A call goes to the current one;
on a retryable failure it moves on to the next, and raises once all have failed.
Every endpoint must serve the same chain id.

With a `CallBudget` (`RPC_RATE_LIMIT`), a batch goes in the pieces the deployment's
budget grants, each sent when its calls fit, and a rate-limit answer slows the whole
deployment down (`indexer.throttle`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, cast

import orjson
import redis
import requests
from web3 import HTTPProvider
from web3.types import RPCEndpoint, RPCResponse

from indexer.config import IndexerSettings
from indexer.errors import (
    BlockNotFound,
    ChainMismatch,
    NodeUnavailable,
    RateLimited,
    RetryableError,
    RpcError,
)
from indexer.throttle import KEY as BUDGET_KEY
from indexer.throttle import CallBudget, retry_after
from indexer.urls import mask_url

log = logging.getLogger(__name__)

RawBlock = dict[str, Any]
RawReceipt = dict[str, Any]
Call = tuple[str, Sequence[Any]]

METHOD_NOT_FOUND = -32601
MAX_BATCH_CALLS = 100  # per-transaction receipts go in batches of this many calls
PIECES_IN_FLIGHT = 4  # a budgeted batch's pieces sent at once, each when it is granted
_RATE_LIMIT_CODES = {-32005, -32029, 429}
_RATE_LIMIT_WORDS = ("rate limit", "too many requests", "limit exceeded", "exceeded the quota")


class JsonRpcProvider(HTTPProvider):
    """web3's HTTP provider, parsing replies with orjson (straight from the bytes)."""

    @staticmethod
    def decode_rpc_response(raw_response: bytes) -> RPCResponse:
        return cast(RPCResponse, orjson.loads(raw_response))


class Node:
    """A JSON-RPC node behind one or more HTTP endpoints (failover in listed order)."""

    def __init__(
        self, urls: Sequence[str], timeout: float = 10.0, budget: CallBudget | None = None
    ) -> None:
        if not urls:
            raise ValueError("at least one JSON-RPC URL is needed")
        self.urls = tuple(urls)
        self._providers = [
            JsonRpcProvider(
                url, request_kwargs={"timeout": timeout}, exception_retry_configuration=None
            )
            for url in self.urls
        ]
        self._current = 0
        self._lock = threading.Lock()
        self._chain_ids: dict[int, int] = {}
        self._receipts_by_block = True
        self.budget = budget
        self._pieces: ThreadPoolExecutor | None = None

    @classmethod
    def from_settings(cls, settings: IndexerSettings, max_wait: float = 10.0) -> Node:
        """The node of `settings` (one chain's: `settings.chains()`), with the call
        budget its quota names when it has one (`RPC_RATE_LIMIT`, or the chain's
        `rate_limit`): the chain's own, or the `rate_budget` it shares with other chains.
        Connects to nothing yet."""
        budget = None
        if settings.rpc_rate_limit is not None:
            client = redis.Redis.from_url(
                settings.redis_url, socket_timeout=2, socket_connect_timeout=2
            )
            key = (
                settings.chain_key(BUDGET_KEY)
                if settings.rate_budget is None
                else f"{BUDGET_KEY}:budget:{settings.rate_budget}"
            )
            budget = CallBudget(client, settings.rpc_rate_limit, max_wait, key)
        return cls(settings.rpc_urls, settings.rpc_timeout, budget)

    @property
    def url(self) -> str:
        return self.urls[self._current]

    def describe(self) -> str:
        return ", ".join(mask_url(u) for u in self.urls)

    # Transport ----------------------------------------------------------------------

    def batch(self, calls: Sequence[Call]) -> list[Any]:
        """Send `calls` in one JSON-RPC batch; results in call order.

        Raises RetryableError subclasses for transient trouble (after trying every
        endpoint) and RpcError for a JSON-RPC error that retrying will not change.
        """
        last: RetryableError | None = None
        for _ in range(len(self._providers)):
            index = self._current
            try:
                results = self._batch_on(index, calls)
            except RetryableError as exc:
                last = exc
                with self._lock:
                    if self._current == index:
                        self._current = (index + 1) % len(self._providers)
                if len(self._providers) > 1:
                    log.warning(
                        "endpoint %s failed (%s); failing over", mask_url(self.urls[index]), exc
                    )
                continue
            return results
        assert last is not None
        raise last

    def call(self, method: str, *params: Any) -> Any:
        return self.batch([(method, params)])[0]

    def _batch_on(self, index: int, calls: Sequence[Call]) -> list[Any]:
        if index not in self._chain_ids and calls[0][0] != "eth_chainId":
            self._check_chain_id(index)
        if self.budget is None:
            return self._send(index, calls)
        if len(calls) <= self.budget.burst:
            self.budget.acquire(len(calls))
            return self._send(index, calls)
        return self._send_in_pieces(index, calls, self.budget)

    def _send_in_pieces(self, index: int, calls: Sequence[Call], budget: CallBudget) -> list[Any]:
        """Send `calls` in the pieces `budget` grants, each as soon as it is granted,
        up to PIECES_IN_FLIGHT at once: the round trips overlap the pacing, so one job
        alone can keep the budget used. Results in call order; the first failure raises
        (no piece is sent after it)."""
        with self._lock:
            if self._pieces is None:
                self._pieces = ThreadPoolExecutor(PIECES_IN_FLIGHT, thread_name_prefix="rpc-piece")
            pieces = self._pieces
        slots = threading.BoundedSemaphore(PIECES_IN_FLIGHT)
        sent: list[Future[list[Any]]] = []

        def send(piece: Sequence[Call]) -> list[Any]:
            try:
                return self._send(index, piece)
            finally:
                slots.release()

        done = 0
        try:
            while done < len(calls) and not any(f.done() and f.exception() for f in sent):
                slots.acquire()  # a free slot first: a granted piece is sent at once
                try:
                    size = budget.acquire(len(calls) - done)
                except BaseException:
                    slots.release()
                    raise
                sent.append(pieces.submit(send, calls[done : done + size]))
                done += size
        finally:
            wait(sent)  # nothing of this batch outlives the call
        results: list[Any] = []
        for future in sent:
            results += future.result()
        return results

    def _send(self, index: int, calls: Sequence[Call]) -> list[Any]:
        provider = self._providers[index]
        url = mask_url(self.urls[index])
        try:
            replies = provider.make_batch_request([(RPCEndpoint(m), list(p)) for m, p in calls])
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            if status == 429:
                if self.budget is not None:
                    headers = exc.response.headers if exc.response is not None else {}
                    self.budget.slow_down(retry_after(headers.get("Retry-After")))
                raise RateLimited(f"node at {url} answered HTTP 429 (rate limited)") from exc
            if status >= 500 or status in (408, 425):
                raise NodeUnavailable(f"node at {url} answered HTTP {status}") from exc
            raise RpcError(f"node at {url} answered HTTP {status}") from exc
        except requests.Timeout as exc:
            raise NodeUnavailable(f"node at {url} timed out") from exc
        except (requests.ConnectionError, OSError) as exc:
            raise NodeUnavailable(f"node at {url} is unreachable ({type(exc).__name__})") from exc
        except ValueError as exc:  # not JSON
            raise NodeUnavailable(f"node at {url} sent a malformed response") from exc
        try:
            if isinstance(replies, dict):  # the whole batch was refused with one error
                _raise_rpc_error(url, calls[0][0], replies.get("error") or {})
            if not isinstance(replies, list) or len(replies) != len(calls):
                raise NodeUnavailable(f"node at {url} answered {len(calls)} calls incompletely")
            results = []
            for (method, _), reply in zip(calls, replies, strict=True):
                if reply.get("error"):
                    _raise_rpc_error(url, method, reply["error"])
                results.append(reply.get("result"))
        except RateLimited:
            if self.budget is not None:
                self.budget.slow_down(None)
            raise
        return results

    def _check_chain_id(self, index: int) -> None:
        chain_id = int(self._batch_on(index, [("eth_chainId", ())])[0], 16)
        known = set(self._chain_ids.values())
        if known and chain_id not in known:
            raise ChainMismatch(
                f"node at {mask_url(self.urls[index])} serves chain {chain_id}, "
                f"other endpoints serve chain {known.pop()}"
            )
        self._chain_ids[index] = chain_id

    # Chain reads ----------------------------------------------------------------------

    def chain_id(self) -> int:
        return int(self.call("eth_chainId"), 16)

    def head(self) -> int:
        return int(self.call("eth_blockNumber"), 16)

    def block_header(self, tag: int | str) -> RawBlock | None:
        """The block without transaction bodies, or None when the node has none."""
        result = self.call("eth_getBlockByNumber", _tag(tag), False)
        return dict(result) if result else None

    def block_hashes(self, numbers: Sequence[int]) -> dict[int, str | None]:
        """Canonical hashes for `numbers` in one round trip (None above the head)."""
        if not numbers:
            return {}
        results = self.batch([("eth_getBlockByNumber", (hex(n), False)) for n in numbers])
        for n, r in zip(numbers, results, strict=True):
            if r is not None:
                self._check_block(n, r)
        return {
            n: (r["hash"].lower() if r else None) for n, r in zip(numbers, results, strict=True)
        }

    def _check_block(self, number: int, block: Any) -> None:
        """A reply to `eth_getBlockByNumber(number)` is that block (a node or proxy that
        mixes up replies must not have one block stored under another's height)."""
        try:
            ok = isinstance(block, dict) and int(block["number"], 16) == number
            ok = ok and isinstance(block["hash"], str) and isinstance(block["parentHash"], str)
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise NodeUnavailable(
                f"node at {mask_url(self.url)} answered the call for block {number} with "
                "something else"
            )

    def blocks_with_receipts(
        self, numbers: Sequence[int]
    ) -> list[tuple[RawBlock, list[RawReceipt]]]:
        """Full blocks and their receipts, in one round trip for all of `numbers`.

        Invariant: each returned receipt list belongs to the returned block (same hash);
        a block that changed between the two reads raises a retryable error.
        """
        if self._receipts_by_block:
            calls: list[Call] = []
            for n in numbers:
                calls += [
                    ("eth_getBlockByNumber", (hex(n), True)),
                    ("eth_getBlockReceipts", (hex(n),)),
                ]
            try:
                results = self.batch(calls)
            except RpcError as exc:
                if exc.code != METHOD_NOT_FOUND:
                    raise
                log.info("node lacks eth_getBlockReceipts; fetching receipts per transaction")
                self._receipts_by_block = False
                return self.blocks_with_receipts(numbers)
            pairs = [(results[2 * i], results[2 * i + 1]) for i in range(len(numbers))]
        else:
            blocks = self.batch([("eth_getBlockByNumber", (hex(n), True)) for n in numbers])
            tx_calls: list[Call] = [
                ("eth_getTransactionReceipt", (tx["hash"],))
                for block in blocks
                if block
                for tx in block["transactions"]
            ]
            fetched: list[Any] = []
            for i in range(0, len(tx_calls), MAX_BATCH_CALLS):
                fetched += self.batch(tx_calls[i : i + MAX_BATCH_CALLS])
            receipts = iter(fetched)
            pairs = [
                (b, [next(receipts) for _ in b["transactions"]] if b else None) for b in blocks
            ]
        out = []
        for n, (block, receipts) in zip(numbers, pairs, strict=True):
            if block is None or receipts is None:
                raise BlockNotFound(f"block {n} is not available from the node yet")
            self._check_block(n, block)
            if not isinstance(receipts, list) or not all(
                r is None or (isinstance(r, dict) and isinstance(r.get("blockHash"), str))
                for r in receipts
            ):
                raise NodeUnavailable(
                    f"node at {mask_url(self.url)} answered the receipts of block {n} with "
                    "something else"
                )
            for receipt in receipts:
                if receipt is None or receipt["blockHash"].lower() != block["hash"].lower():
                    raise BlockNotFound(f"block {n} changed while it was read (reorg in progress)")
            if len(receipts) != len(block["transactions"]):
                # a node that has the block but not yet all of its receipts (anvil, right
                # after mining): storing it so would lose its logs and their prices
                raise BlockNotFound(
                    f"block {n} has {len(block['transactions'])} transactions but the node "
                    f"gave {len(receipts)} receipts; reading it again"
                )
            out.append((block, receipts))
        return out


def _tag(tag: int | str) -> str:
    return hex(tag) if isinstance(tag, int) else tag


def _raise_rpc_error(url: str, method: str, error: Any) -> None:
    if not isinstance(error, dict):  # some providers send a bare string
        error = {"message": str(error)}
    code = error.get("code")
    message = str(error.get("message", "no message"))
    lowered = message.lower()
    if code in _RATE_LIMIT_CODES or any(word in lowered for word in _RATE_LIMIT_WORDS):
        raise RateLimited(f"node at {url} rate-limited {method}: {message}")
    raise RpcError(
        f"node at {url} refused {method}: {message} (code {code})", code, error.get("data")
    )
