"""The fan-out report: one row per figure, one column per server, and each server's
ratio to the Node baseline. The rows are data: a label, where the figure sits in a
server's results, and its format."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.common import markdown_table

Path_ = tuple[str, ...]

# Figures measured at every N: (label, path in per_n[N], format)
PER_N: list[tuple[str, Path_, str]] = [
    ("connect rate (conn/s)", ("connect", "rate"), "{:.0f}"),
    ("connect failures", ("connect", "failed"), "{:.0f}"),
    ("server CPU per connect (ms)", ("connect_server_cpu_ms_per_conn",), "{:.2f}"),
    ("RSS per connection, connected (KB)", ("rss_per_conn_kb",), "{:.1f}"),
    ("RSS per connection, after traffic (KB)", ("rss_per_conn_traffic_kb",), "{:.1f}"),
    ("broadcast latency p50 (ms)", ("broadcast", "latency_ms", "p50"), "{:.1f}"),
    ("broadcast latency p99 (ms)", ("broadcast", "latency_ms", "p99"), "{:.1f}"),
    ("broadcast latency max (ms)", ("broadcast", "latency_ms", "max"), "{:.1f}"),
    (
        "server CPU per delivered msg, broadcast (us)",
        ("broadcast", "server_cpu_us_per_msg"),
        "{:.1f}",
    ),
    ("broadcasts: dropped connections", ("broadcast", "dropped"), "{:.0f}"),
    ("mix 1/s: clients connected at start", ("mix", "clients"), "{:.0f}"),
    ("mix 1/s: dropped connections", ("mix", "dropped"), "{:.0f}"),
    ("mix 1/s: lost messages", ("mix", "lost"), "{:.0f}"),
    ("mix 1/s: latency p50 (ms)", ("mix", "latency_ms", "p50"), "{:.1f}"),
    ("mix 1/s: latency p99 (ms)", ("mix", "latency_ms", "p99"), "{:.1f}"),
    ("mix 1/s: latency max (ms)", ("mix", "latency_ms", "max"), "{:.1f}"),
    ("mix 1/s: server CPU per delivered msg (us)", ("mix", "server_cpu_us_per_msg"), "{:.1f}"),
    ("mix 1/s: server CPU (% of a core)", ("mix", "server_cpu_pct"), "{:.0f}"),
    ("mix 1/s: load generator CPU (% of a core)", ("mix", "loadgen_cpu_pct"), "{:.0f}"),
    ("mix 1/s: other processes' CPU (% of a core)", ("mix", "other_cpu_pct"), "{:.0f}"),
]

# Figures of the broadcast-rate search, at --rate-n
AT_RATE_N: list[tuple[str, Path_, str]] = [
    ("highest sustained broadcast rate (/s)", ("max_rate",), "{:g}"),
    ("  same, two server processes (/s)", ("scale", "max_rate"), "{:g}"),
    ("  two processes / one", ("scale", "ratio"), "{:.2f}"),
    ("  load generator CPU at 2-proc best (% core)", ("scale", "loadgen_cpu_pct"), "{:.0f}"),
]

# Figures of the load-mix search, at the largest N
AT_LARGEST_N: list[tuple[str, Path_, str]] = [
    ("highest lossless mix rate (blocks/s, x20 prices)", ("max_mix_rate",), "{:g}"),
    ("  p99 latency at that rate (ms)", ("max_mix_rate_p99",), "{:.0f}"),
]

Getter = Callable[[dict[str, Any]], float | None]


def at(n: int, path: Path_) -> Getter:
    """The figure at `path` of a server's results for N = `n`, or None."""

    def get(result: dict[str, Any]) -> float | None:
        cur: Any = result["per_n"].get(n, {})
        for key in path:
            if not isinstance(cur, dict):
                return None
            cur = cur.get(key)
        return cur if isinstance(cur, int | float) else None

    return get


def capacity(n: int) -> Getter:
    """Deliveries per second one core could make, from CPU per broadcast message."""

    def get(result: dict[str, Any]) -> float | None:
        us = at(n, ("broadcast", "server_cpu_us_per_msg"))(result)
        return 1e6 / us if us else None

    return get


def table(results: dict[str, dict[str, Any]], sizes: list[int], rate_n: int) -> str:
    largest = max(sizes)
    rows: list[tuple[str, int, Getter, str]] = [
        (label, n, at(n, path), fmt) for n in sorted(sizes) for label, path, fmt in PER_N
    ]
    rows += [(label, rate_n, at(rate_n, path), fmt) for label, path, fmt in AT_RATE_N]
    rows.append(
        (
            "CPU-bound capacity, 1e6 / CPU per msg (deliveries/s/core)",
            largest,
            capacity(largest),
            "{:.0f}",
        )
    )
    rows += [(label, largest, at(largest, path), fmt) for label, path, fmt in AT_LARGEST_N]

    kinds = list(results)
    ref = "node" if "node" in kinds else None
    heads = ["figure", "N", *kinds]
    if ref:
        heads += [f"{k}/{ref}" for k in kinds if k != ref]
    cells = []
    for label, n, get, fmt in rows:
        values = {k: get(results[k]) for k in kinds}
        row = [label, f"{n:,}"] + ["-" if v is None else fmt.format(v) for v in values.values()]
        if ref:
            base = values[ref]
            row += [
                "-" if v is None or not base else f"{v / base:.2f}x"
                for k, v in values.items()
                if k != ref
            ]
        cells.append(row)
    return markdown_table(heads, cells)
