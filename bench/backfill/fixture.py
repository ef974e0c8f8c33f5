"""The benchmark's fixture chain: built once on anvil, saved as an anvil state dump.

Block 1 deploys the log-emitting contract, the test pair and the test feed; blocks
2..N+1 carry the load: `txs` transactions each, about `log_share` of them calls that
emit one log, plus a revert every `revert_every` blocks and a deployment every
`deploy_every` blocks, and in all but every `quiet_every`-th block a swap on the pair
(a `Sync`) and a new feed answer (an `AnswerUpdated`): price updates in most blocks. The dump and
a small JSON of expected counts live under `bench/.fixtures/`, keyed by these
parameters and the anvil version, so a later run with the same parameters loads it
instead of building it again.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from chainpulse.contracts import Contracts
from chainpulse.devnet import PINGER_INIT, Activity, Anvil, anvil_binary
from indexer.price_decoding import ANSWER_UPDATED, SYNC

FIXTURES = Path(__file__).resolve().parents[1] / ".fixtures"
FORMAT = 4  # bump when the way the chain is built changes (4: Ping(bytes) data ABI-encoded)


@dataclass(frozen=True)
class Spec:
    blocks: int
    txs: int
    log_share: float = 0.6
    revert_every: int = 5
    deploy_every: int = 25
    quiet_every: int = 5  # blocks without price updates: one in this many

    @property
    def first(self) -> int:
        return 2  # block 1 deploys the contract

    @property
    def last(self) -> int:
        return self.first + self.blocks - 1

    def key(self, anvil_version: str) -> str:
        return (
            f"chain-f{FORMAT}-anvil{anvil_version}-b{self.blocks}-t{self.txs}"
            f"-l{round(self.log_share * 100)}-r{self.revert_every}-d{self.deploy_every}"
            f"-q{self.quiet_every}"
        )

    def priced(self, i: int) -> bool:
        """Whether load block `i` (0-based) carries price updates."""
        return i % self.quiet_every != self.quiet_every - 1


@dataclass
class Fixture:
    """A saved chain and what a correct indexer must find in blocks first..last."""

    spec: Spec
    state_path: str
    first: int
    last: int
    head: int
    transactions: int
    logs: int
    reverted: int
    deployments: int
    probe_block: int
    probe_hash: str
    build_seconds: float
    pair: str  # the test pair (token0 18 decimals, token1 6)
    feed: str  # the test feed (8 decimals)
    price_updates: int  # Sync and AnswerUpdated logs in first..last
    built_now: bool = False

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("built_now")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fixture:
        data = dict(data)
        data["spec"] = Spec(**data["spec"])
        return cls(**data)


def anvil_version() -> str:
    out = subprocess.run(
        [anvil_binary(), "--version"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    # "anvil Version: 1.7.1\nCommit SHA: ..."
    for word in out.split():
        if word[:1].isdigit():
            return word.split("-")[0]
    return "unknown"


def load_or_build(spec: Spec, log: Any = print) -> Fixture:
    """The fixture for `spec`: from `bench/.fixtures/` when saved, else built now."""
    FIXTURES.mkdir(parents=True, exist_ok=True)
    key = spec.key(anvil_version())
    meta_path = FIXTURES / f"{key}.meta.json"
    state_path = FIXTURES / f"{key}.state.json"
    if meta_path.exists() and state_path.exists():
        fixture = Fixture.from_json(json.loads(meta_path.read_text()))
        fixture.state_path = str(state_path)
        log(
            f"fixture: loaded {state_path.name} "
            f"({state_path.stat().st_size / 1e6:.0f} MB; built earlier in "
            f"{fixture.build_seconds:.0f} s)"
        )
        return fixture
    log(f"fixture: building {spec.blocks} blocks x {spec.txs} txs on anvil ...")
    fixture = build(spec, state_path, log)
    meta_path.write_text(json.dumps(fixture.to_json(), indent=1))
    return fixture


def build(spec: Spec, state_path: Path, log: Any = print) -> Fixture:
    started = time.monotonic()
    deadline = started + 120 + spec.blocks * spec.txs * 0.01  # generous: ~0.4 ms/tx seen
    with Anvil(extra_args=["--accounts", "20"]) as node:
        activity = Activity(node)
        contracts = Contracts(node)
        node.call("evm_setAutomine", False)
        deployments = [
            {"from": activity.accounts[0], "data": PINGER_INIT, "gas": hex(200_000)},
            contracts.deployment("TestPair", 1000 * 10**18, 2_000_000 * 10**6),
            contracts.deployment("TestFeed"),
            contracts.deployment("TestToken", "Wrapped Ether", "WETH", 18, 10**30),
            contracts.deployment("TestToken", "USD Coin", "USDC", 6, 10**30),
        ]
        hashes = node.batch([("eth_sendTransaction", [tx]) for tx in deployments])
        node.mine()  # block 1
        receipts = node.batch([("eth_getTransactionReceipt", [h]) for h in hashes])
        pinger, pair, feed, weth, usdc = (str(r["contractAddress"]).lower() for r in receipts)
        activity.pinger = pinger
        contracts.kinds.update({pair: "TestPair", feed: "TestFeed"})
        # the pair's tokens, as chainpulse reads them (token0 WETH, token1 USDC)
        set_tokens = contracts.transaction(pair, "setTokens", weth, usdc)
        if node.head() != 1:
            raise RuntimeError(f"expected the contracts in block 1, head is {node.head()}")
        for i in range(spec.blocks):
            if time.monotonic() > deadline:
                raise TimeoutError(f"fixture build passed its deadline at block {i}")
            reverts = 1 if i % spec.revert_every == 0 else 0
            deploys = 1 if i % spec.deploy_every == 0 else 0
            calls = activity.transactions(spec.txs, spec.log_share, reverts, deploys)
            if i == 0:
                calls.append(("eth_sendTransaction", [set_tokens]))
            if spec.priced(i):
                calls.append(
                    (
                        "eth_sendTransaction",
                        [contracts.transaction(pair, "swap", 10**17, i % 2 == 0)],
                    )
                )
                calls.append(
                    (
                        "eth_sendTransaction",
                        [contracts.transaction(feed, "submit", 2000 * 10**8 + i)],
                    )
                )
            node.batch(calls)
            node.mine()
            if (i + 1) % 500 == 0:
                log(f"  {i + 1} blocks in {time.monotonic() - started:.1f} s")
        mined = time.monotonic() - started
        head = node.head()
        if head != spec.last:
            raise RuntimeError(f"expected head {spec.last}, node is at {head}")
        counts = _count(node, spec)
        for n in range(spec.first, spec.last + 1):
            if counts["per_block"][n] < spec.txs:
                raise RuntimeError(f"block {n} has {counts['per_block'][n]} txs, not {spec.txs}")
        probe = (spec.first + spec.last) // 2
        probe_hash = node.block(probe)["hash"]
        dumped = node.call("anvil_dumpState")  # 0x + gzip of the JSON state
    tmp = state_path.with_suffix(".tmp")
    tmp.write_bytes(gzip.decompress(bytes.fromhex(dumped[2:])))
    os.replace(tmp, state_path)
    seconds = time.monotonic() - started
    log(
        f"fixture: built in {seconds:.1f} s (mining {mined:.1f} s), "
        f"state dump {state_path.stat().st_size / 1e6:.0f} MB"
    )
    fixture = Fixture(
        spec=spec,
        state_path=str(state_path),
        first=spec.first,
        last=spec.last,
        head=head,
        transactions=counts["transactions"],
        logs=counts["logs"],
        reverted=counts["reverted"],
        deployments=counts["deployments"],
        probe_block=probe,
        probe_hash=probe_hash,
        build_seconds=round(seconds, 1),
        pair=pair,
        feed=feed,
        price_updates=counts["price_updates"],
        built_now=True,
    )
    log(
        f"fixture: blocks {fixture.first}..{fixture.last}: {fixture.transactions} txs, "
        f"{fixture.logs} logs, {fixture.reverted} reverted, {fixture.deployments} deployments"
    )
    return fixture


def _count(node: Anvil, spec: Spec) -> dict[str, Any]:
    per_block: dict[int, int] = {}
    totals = {"transactions": 0, "logs": 0, "reverted": 0, "deployments": 0, "price_updates": 0}
    price_topics = {SYNC, ANSWER_UPDATED}
    numbers = list(range(spec.first, spec.last + 1))
    for start in range(0, len(numbers), 50):
        chunk = numbers[start : start + 50]
        receipts = node.batch([("eth_getBlockReceipts", [hex(n)]) for n in chunk])
        for n, block_receipts in zip(chunk, receipts, strict=True):
            per_block[n] = len(block_receipts)
            totals["transactions"] += len(block_receipts)
            for r in block_receipts:
                totals["logs"] += len(r["logs"])
                totals["price_updates"] += sum(
                    1 for x in r["logs"] if x["topics"] and x["topics"][0] in price_topics
                )
                totals["reverted"] += r["status"] == "0x0"
                totals["deployments"] += r.get("contractAddress") is not None
    return {"per_block": per_block, **totals}


def start_node(fixture: Fixture, chain_id: int = 31337) -> Anvil:
    """An anvil serving the fixture chain (as chain `chain_id`), checked: head, a block
    and its receipts."""
    started = time.monotonic()
    node = Anvil(load_state=fixture.state_path, chain_id=chain_id).start()
    try:
        head = node.head()
        if head != fixture.head:
            raise RuntimeError(f"restored anvil is at block {head}, expected {fixture.head}")
        block = node.block(fixture.probe_block, True)
        receipts = node.call("eth_getBlockReceipts", hex(fixture.probe_block))
        if block["hash"] != fixture.probe_hash or len(receipts) != len(block["transactions"]):
            raise RuntimeError(f"restored anvil serves a different block {fixture.probe_block}")
        if len(block["transactions"]) < fixture.spec.txs:
            raise RuntimeError(f"restored block {fixture.probe_block} lost its transactions")
    except BaseException:
        node.stop()
        raise
    print(f"anvil: restored {fixture.head} blocks in {time.monotonic() - started:.1f} s")
    return node


def sources_file(fixture: Fixture, path: Path) -> Path:
    """A price sources file for the fixture's pair and feed."""
    path.write_text(
        f"""[[source]]
name = "pair"
kind = "uniswap_v2"
token = "WETH"
quote = "USDC"
address = "{fixture.pair}"
base = "token0"
decimals0 = 18
decimals1 = 6

[[source]]
name = "feed"
kind = "chainlink"
token = "ETH"
quote = "USD"
address = "{fixture.feed}"
decimals = 8
"""
    )
    return path
