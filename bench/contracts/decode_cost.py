"""bench/contracts/decode_cost: what decoding contract events costs a backfill (issue 26),
against the same backfill without a contracts file, in alternating repeated runs.

The chain is bench/backfill's fixture (2,000 blocks x 50 transactions by default: about
30 `Ping(bytes)` logs a block from its log-emitting contract, a `Sync` on its pair and
an `AnswerUpdated` on its feed in four blocks of five). The contracts file names 10
contracts x 3 events: the emitter, the pair and the feed (their events and two each
that never occur) and 7 contracts at addresses with no logs. Each round runs phase (b)
of bench/backfill (`chainpulse backfill --wait` with a real Celery worker into a fresh
database) without and with the file, in alternating order; the cost is 1 - the median
of the runs with it over the median of those without, printed beside the run-to-run
spread of the runs without (target: a cost of at most 5%).

Usage: .venv/bin/python -m bench.contracts.decode_cost [--rounds 3] [--blocks 2000]
       [--txs 50] [--database postgresql|sqlite]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from bench.backfill.fixture import Spec, load_or_build, start_node
from bench.backfill.pipeline import run_pipeline
from bench.common import markdown_table
from chainpulse.devnet import port_open
from workers.app import default_concurrency

TARGET = 0.05
UNUSED = [
    "Approval(address indexed owner, address indexed spender, uint256 value)",
    "Transfer(address indexed from, address indexed to, uint256 value)",
    "OwnershipTransferred(address indexed previousOwner, address indexed newOwner)",
]


def contracts_file(path: Path, pinger: str, pair: str, feed: str) -> Path:
    entries = [
        ("Emitter", pinger, ["Ping(bytes data)", *UNUSED[:2]]),
        ("Pair", pair, ["Sync(uint112 reserve0, uint112 reserve1)", *UNUSED[1:]]),
        ("Feed", feed, [
            "AnswerUpdated(int256 indexed current, uint256 indexed roundId, uint256 updatedAt)",
            *UNUSED[:2],
        ]),
        *((f"Idle{i}", "0x" + f"{0xDEAD0000 + i:040x}", UNUSED) for i in range(7)),
    ]  # fmt: skip
    path.write_text(
        "\n".join(
            f'[[contract]]\nname = "{name}"\naddress = "{address}"\n'
            f"events = [{', '.join(repr(e).replace(chr(39), chr(34)) for e in events)}]\n"
            for name, address, events in entries
        )
    )
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--blocks", type=int, default=2000)
    p.add_argument("--txs", type=int, default=50)
    p.add_argument("--database", default="postgresql", choices=("postgresql", "sqlite"))
    p.add_argument("--timeout", type=float, default=900)
    args = p.parse_args(argv)
    if args.database == "postgresql" and not port_open(5432):
        args.database = "sqlite"
    fixture = load_or_build(Spec(args.blocks, args.txs))
    node = start_node(fixture)
    rates: dict[str, list[float]] = {"without": [], "with": []}
    decoded = 0
    try:
        first_tx = node.block(1)["transactions"][0]
        pinger = str(node.call("eth_getTransactionReceipt", first_tx)["contractAddress"]).lower()
        with tempfile.TemporaryDirectory(prefix="chainpulse-decode-cost-") as directory:
            path = contracts_file(Path(directory) / "contracts.toml", pinger, fixture.pair,
                                  fixture.feed)  # fmt: skip
            assert node.process is not None
            for round_ in range(args.rounds):
                order = ["without", "with"] if round_ % 2 == 0 else ["with", "without"]
                for variant in order:
                    env = {"CONTRACTS": str(path)} if variant == "with" else {}
                    result = run_pipeline(
                        args.database, fixture, node.url, node.process.pid,
                        default_concurrency(), args.timeout, extra_env=env,
                    )  # fmt: skip
                    rate = result.blocks / result.seconds
                    rates[variant].append(rate)
                    events = result.rows.get("contract_events", 0)
                    if variant == "with":
                        decoded = events
                        assert events > 0, "no event was decoded"
                    else:
                        assert events == 0
                    print(f"round {round_ + 1}, {variant} contracts: {rate:.1f} blocks/s, "
                          f"{events} events decoded", flush=True)  # fmt: skip
    finally:
        node.stop()
    without, with_ = statistics.median(rates["without"]), statistics.median(rates["with"])
    spread = (max(rates["without"]) - min(rates["without"])) / without
    cost = 1 - with_ / without
    print(
        markdown_table(
            ["variant", "runs (blocks/s)", "median"],
            [
                ["without a contracts file", ", ".join(f"{r:.1f}" for r in rates["without"]),
                 f"{without:.1f}"],
                ["10 contracts x 3 events", ", ".join(f"{r:.1f}" for r in rates["with"]),
                 f"{with_:.1f}"],
            ],
        )
    )  # fmt: skip
    print(
        f"{args.blocks} blocks x {args.txs} txs on {args.database}, {decoded} events decoded: "
        f"cost {cost:.1%} (target <= {TARGET:.0%}); spread of the runs without: {spread:.1%}"
    )
    return 0 if cost <= TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
