"""Block-range arithmetic: parsing user ranges, cutting jobs, naming gaps."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from indexer.errors import BadRange


def parse_range(start: str, end: str) -> tuple[int, int]:
    """FROM and TO as given on the command line: whole numbers, 0 <= FROM <= TO."""
    values = []
    for name, raw in (("FROM", start), ("TO", end)):
        try:
            value = (
                int(raw.strip(), 0) if raw.strip().lower().startswith("0x") else int(raw.strip())
            )
        except ValueError:
            raise BadRange(f"{name} must be a block number, got {raw!r}") from None
        if value < 0:
            raise BadRange(f"{name} must not be negative, got {value}")
        values.append(value)
    lo, hi = values
    if lo > hi:
        raise BadRange(f"FROM ({lo}) is greater than TO ({hi})")
    return lo, hi


def runs(numbers: Iterable[int]) -> list[tuple[int, int]]:
    """Maximal runs of consecutive heights, as inclusive (first, last) pairs."""
    out: list[tuple[int, int]] = []
    for n in sorted(set(numbers)):
        if out and n == out[-1][1] + 1:
            out[-1] = (out[-1][0], n)
        else:
            out.append((n, n))
    return out


def chunks(numbers: Sequence[int], size: int) -> list[tuple[int, int]]:
    """Consecutive runs of `numbers`, cut into jobs of at most `size` heights."""
    out = []
    for first, last in runs(numbers):
        for lo in range(first, last + 1, size):
            out.append((lo, min(lo + size - 1, last)))
    return out


def describe(numbers: Iterable[int], limit: int = 10) -> str:
    """'3-5, 9, 12-20' (at most `limit` runs, then '… and N more')."""
    parts = [f"{a}" if a == b else f"{a}-{b}" for a, b in runs(numbers)]
    text = ", ".join(parts[:limit])
    if len(parts) > limit:
        text += f", … and {len(parts) - limit} more ranges"
    return text
