"""(a) The raw fetch limit: pull blocks with their transactions and receipts from the
node as fast as this machine can, storing nothing; and (a') web3.py's default path for
reference.

Raw: one JSON-RPC batch per `batch` blocks (eth_getBlockByNumber full +
eth_getBlockReceipts per block) on `connections` threads, each with its own keep-alive
`requests.Session`. Replies are parsed (json.loads) and counted, as any indexer has to.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

import requests


@dataclass
class FetchResult:
    label: str
    config: str
    blocks: int
    transactions: int
    logs: int
    seconds: float

    @property
    def blocks_per_s(self) -> float:
        return self.blocks / self.seconds if self.seconds else 0.0

    @property
    def txs_per_s(self) -> float:
        return self.transactions / self.seconds if self.seconds else 0.0


def raw_fetch(
    url: str, first: int, last: int, batch: int, connections: int, timeout: float
) -> FetchResult:
    """Fetch blocks first..last; raise if any reply is an error or the deadline passes."""
    numbers = list(range(first, last + 1))
    chunks = [numbers[i : i + batch] for i in range(0, len(numbers), batch)]
    lock = threading.Lock()
    pending = iter(chunks)
    totals = {"blocks": 0, "transactions": 0, "logs": 0}
    errors: list[BaseException] = []
    started = time.monotonic()
    deadline = started + timeout

    def work() -> None:
        session = requests.Session()
        try:
            while not errors:
                with lock:
                    chunk = next(pending, None)
                if chunk is None:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"raw fetch passed its {timeout:.0f} s deadline")
                blocks, txs, logs = _fetch_chunk(session, url, chunk)
                with lock:
                    totals["blocks"] += blocks
                    totals["transactions"] += txs
                    totals["logs"] += logs
        except BaseException as exc:  # surfaced to the caller below
            errors.append(exc)
        finally:
            session.close()

    threads = [threading.Thread(target=work, daemon=True) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1.0, deadline - time.monotonic() + 5))
    seconds = time.monotonic() - started
    if errors:
        raise errors[0]
    if any(t.is_alive() for t in threads):
        raise TimeoutError(f"raw fetch passed its {timeout:.0f} s deadline")
    if totals["blocks"] != len(numbers):
        raise RuntimeError(f"raw fetch got {totals['blocks']} blocks of {len(numbers)}")
    return FetchResult(
        "raw",
        f"batch {batch} blocks, {connections} connections",
        totals["blocks"],
        totals["transactions"],
        totals["logs"],
        seconds,
    )


def _fetch_chunk(session: requests.Session, url: str, chunk: list[int]) -> tuple[int, int, int]:
    calls = []
    for i, n in enumerate(chunk):
        calls.append(
            {
                "jsonrpc": "2.0",
                "id": 2 * i,
                "method": "eth_getBlockByNumber",
                "params": [hex(n), True],
            }
        )
        calls.append(
            {
                "jsonrpc": "2.0",
                "id": 2 * i + 1,
                "method": "eth_getBlockReceipts",
                "params": [hex(n)],
            }
        )
    reply = session.post(
        url,
        data=json.dumps(calls, separators=(",", ":")),
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    reply.raise_for_status()
    by_id = {r["id"]: r for r in json.loads(reply.content)}
    txs = logs = 0
    for i, n in enumerate(chunk):
        block, receipts = by_id[2 * i], by_id[2 * i + 1]
        for r in (block, receipts):
            if "error" in r or r.get("result") is None:
                raise RuntimeError(f"block {n}: {r.get('error', 'no result')}")
        if len(block["result"]["transactions"]) != len(receipts["result"]):
            raise RuntimeError(f"block {n}: receipts do not match transactions")
        txs += len(receipts["result"])
        logs += sum(len(rc["logs"]) for rc in receipts["result"])
    return len(chunk), txs, logs


def sweep(
    url: str,
    first: int,
    last: int,
    batches: Iterable[int],
    connections: Iterable[int],
    timeout: float,
    log: object = print,
) -> list[FetchResult]:
    """raw_fetch over first..last for every (batch, connections) pair."""
    results = []
    for c in connections:
        for b in batches:
            result = raw_fetch(url, first, last, b, c, timeout)
            results.append(result)
            if callable(log):
                log(f"  raw {result.config:32s} {result.blocks_per_s:7.1f} blocks/s")
    return results


def web3_fetch(url: str, first: int, last: int, timeout: float) -> FetchResult:
    """web3.py with its default result formatters, one block after another."""
    from web3 import Web3

    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 60}))
    txs = logs = 0
    started = time.monotonic()
    for n in range(first, last + 1):
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"web3 fetch passed its {timeout:.0f} s deadline at block {n}")
        block = w3.eth.get_block(n, True)
        receipts = w3.eth.get_block_receipts(n)
        if len(block["transactions"]) != len(receipts):
            raise RuntimeError(f"block {n}: receipts do not match transactions")
        txs += len(receipts)
        logs += sum(len(r["logs"]) for r in receipts)
    seconds = time.monotonic() - started
    return FetchResult(
        "web3",
        "get_block(n, True) + get_block_receipts(n), 1 connection",
        last - first + 1,
        txs,
        logs,
        seconds,
    )
