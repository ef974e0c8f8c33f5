"""The reorg walk as pure logic: which stored blocks a repair removes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.errors import ReorgTooDeep
from indexer.events import BlockRef
from indexer.reorg import plan_repair


def chain(tag: str, lo: int, hi: int) -> dict[int, str]:
    return {n: f"0x{tag}{n}" for n in range(lo, hi + 1)}


def test_nothing_to_do_when_every_stored_block_is_canonical() -> None:
    assert plan_repair(chain("a", 5, 10), chain("a", 0, 12), floor=3) is None


def test_a_same_height_reorg_removes_the_changed_tail() -> None:
    canonical = {**chain("a", 0, 7), **chain("b", 8, 10)}
    plan = plan_repair(chain("a", 0, 10), canonical, floor=1)
    assert plan is not None
    assert plan.ancestor == BlockRef(7, "0xa7")
    assert plan.removed == [BlockRef(n, f"0xa{n}") for n in (8, 9, 10)]
    assert plan.added == [BlockRef(n, f"0xb{n}") for n in (8, 9, 10)]


def test_a_shorter_chain_removes_blocks_above_the_node_head() -> None:
    canonical: dict[int, str | None] = {**chain("a", 0, 6), 7: None, 8: None}
    plan = plan_repair(chain("a", 0, 8), canonical, floor=0)
    assert plan is not None
    assert plan.ancestor == BlockRef(6, "0xa6")
    assert [r.number for r in plan.removed] == [7, 8] and plan.added == []


def test_a_stale_orphan_between_gaps_is_found() -> None:
    stored = {10: "0xa10", 12: "0xz12", 14: "0xa14"}
    plan = plan_repair(stored, chain("a", 9, 14), floor=5)
    assert plan is not None and plan.removed == [BlockRef(12, "0xz12")]
    assert plan.ancestor == BlockRef(11, "0xa11")


def test_an_orphan_below_the_floor_is_too_deep() -> None:
    canonical = {**chain("a", 0, 4), **chain("b", 5, 10)}
    with pytest.raises(ReorgTooDeep):
        plan_repair(chain("a", 0, 10), canonical, floor=6)


@settings(max_examples=200, deadline=None)
@given(
    length=st.integers(2, 60),
    depth=st.integers(0, 30),
    shorter=st.integers(0, 5),
    floor=st.integers(0, 60),
)
def test_the_plan_removes_exactly_the_orphans(
    length: int, depth: int, shorter: int, floor: int
) -> None:
    depth = min(depth, length - 1)
    stored = chain("a", 0, length - 1)
    fork = length - depth  # first height that differs
    canonical: dict[int, str | None] = {
        **chain("a", 0, fork - 1),
        **chain("b", fork, length - 1 - shorter if depth else length - 1),
    }
    for n in range(length):
        canonical.setdefault(n, None)
    orphans = [n for n in range(length) if canonical[n] != stored[n]]
    if not orphans:
        assert plan_repair(stored, canonical, floor) is None
        return
    if orphans[0] < floor:
        with pytest.raises(ReorgTooDeep):
            plan_repair(stored, canonical, floor)
        return
    plan = plan_repair(stored, canonical, floor)
    assert plan is not None
    assert [r.number for r in plan.removed] == orphans
    assert all(canonical[r.number] == r.hash for r in plan.added)
    assert plan.ancestor.number < orphans[0]
    assert canonical[plan.ancestor.number] == plan.ancestor.hash
