"""The fault suite's checks of what a client saw (tests/harness/live.py) find what they
are meant to find: they are pure logic, and a check that cannot fail proves nothing."""

from __future__ import annotations

from typing import Any

from tests.harness.events import block_hash
from tests.harness.live import Watcher

NODE = {n: block_hash(n) for n in range(1, 20)}


def block(n: int, fork: int = 0, parent: int | None = None) -> dict[str, Any]:
    p = n - 1 if parent is None else parent
    return {"number": n, "hash": block_hash(n, fork), "parentHash": block_hash(p, fork)}


def price(token: str, exact: str, n: int, snapshot: bool = False) -> dict[str, Any]:
    update: dict[str, Any] = {"token": token, "priceExact": exact, "blockNumber": n}
    return {**update, "snapshot": True} if snapshot else update


def problems(*events: tuple[str, Any], served: dict[int, str] | None = None) -> list[str]:
    watcher = Watcher()
    for event, data in events:
        watcher.record(event, data)
    return watcher.problems(NODE, lambda n: (served or {}).get(n), {"ETH": "3"})


def test_a_clean_run_has_no_problems() -> None:
    assert (
        problems(
            ("new-block", block(3)),
            ("price-update", price("ETH", "2", 3)),
            ("new-block", block(4)),
            ("price-update", price("ETH", "3", 4, snapshot=True)),  # after a resubscribe
            ("price-update", price("ETH", "3", 4)),
            ("new-block", block(5)),
        )
        == []
    )


def test_repeats_gaps_and_foreign_blocks_are_found() -> None:
    prices = ("price-update", price("ETH", "3", 4))
    assert "a repeat or out of order" in " ".join(
        problems(("new-block", block(3)), ("new-block", block(3)), prices)
    )
    assert "claims to link" in " ".join(
        problems(("new-block", block(3)), ("new-block", block(5, parent=3)), prices)
    )
    assert "is not the node's" in " ".join(problems(("new-block", block(3, fork=1)), prices))
    assert "does not link" in " ".join(
        problems(("new-block", block(3)), ("new-block", block(4, parent=2)), prices)
    )


def test_a_skip_is_allowed_only_when_the_api_serves_its_heights() -> None:
    skip = (("new-block", block(3)), ("new-block", block(6, parent=99)))
    prices = ("price-update", price("ETH", "3", 6))
    assert problems(*skip, prices, served={4: NODE[4], 5: NODE[5]}) == []
    assert "skipped height 5" in " ".join(problems(*skip, prices, served={4: NODE[4]}))


def test_prices_pushed_twice_or_stale_are_found() -> None:
    twice = problems(("price-update", price("ETH", "3", 4)), ("price-update", price("ETH", "3", 4)))
    assert any("pushed twice" in p for p in twice)
    stale = problems(("price-update", price("ETH", "2", 4)))
    assert any("last pushed 2, stored 3" in p for p in stale)
