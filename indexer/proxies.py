"""Chainlink proxies: the aggregator behind each, followed as it moves, and feeds that
answer without emitting `AnswerUpdated` (docs/prices.md, "Chainlink proxies").

A `chainlink` source may name the proxy a feed is published under
(`EACAggregatorProxy`). Its answers are the `AnswerUpdated` logs of the aggregator
behind it, which the proxy can switch without any event. Each source keeps its history
in `chainpulse_meta` (key `aggregators:<proxy>`): the aggregators in order with the
block each took over from (the first from block 0), and the last block checked. The
follower re-reads `aggregator()` at every sweep (`ProxyWatch.check`); when it moved, the
switch block is found by reading `aggregator()` at past blocks (a bisection back to the
last check), recorded, and the new aggregator's answers already stored from that block
on are priced from the stored logs, in one transaction under the block-commit lock.
Workers read the histories in their commit transaction, so a block committed after the
switch is priced from the new aggregator and one committed before it is re-priced.

`SilenceWatch` warns when a feed's `latestRoundData()` moves while nothing it emits is
stored: an address that answers but does not emit (a proxy that was not recognised, a
`MockV3Aggregator`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from indexer import models as m
from indexer import price_store
from indexer.errors import RpcError
from indexer.price_decoding import ANSWER_UPDATED, Pricer, answer_updated_at
from indexer.rpc import Node
from indexer.source_metadata import aggregator_of, read_aggregator, round_updated_at
from indexer.sources import PriceSources, Source

if TYPE_CHECKING:
    from indexer.store import Store

log = logging.getLogger(__name__)

PREFIX = "aggregators:"  # chainpulse_meta: `aggregators:<proxy>` -> Following as JSON


@dataclass(frozen=True)
class Following:
    """One proxy's aggregators, each with the block it took over from, and the last
    block at which `aggregator()` was read."""

    history: tuple[tuple[int, str], ...]
    checked_at: int | None = None

    def dump(self) -> str:
        history = [list(h) for h in self.history]
        return json.dumps({"history": history, "checkedAt": self.checked_at})

    @classmethod
    def load(cls, text: str) -> Following:
        value = json.loads(text)
        history = tuple((int(n), str(a)) for n, a in value["history"])
        checked = value.get("checkedAt")
        return cls(history, None if checked is None else int(checked))


def proxied(sources: PriceSources) -> list[Source]:
    """The sources that name a proxy."""
    return [s for s in sources.sources if s.aggregators]


def with_history(sources: PriceSources, kept: Mapping[str, str]) -> PriceSources:
    """`sources` with each proxy's history as kept (`aggregators:<proxy>` values by
    proxy address); a proxy with none kept stays on the aggregator read first."""
    changed = []
    for source in sources.sources:
        text = kept.get(source.address or "") if source.aggregators else None
        history = Following.load(text).history if text else source.aggregators
        changed.append(replace(source, aggregators=history))
    return sources.with_sources(tuple(changed))


@dataclass(frozen=True)
class Switch:
    source: str
    block: int  # the first block priced from `aggregator`
    aggregator: str
    repriced: int  # stored blocks with its answers, priced at the switch


class ProxyWatch:
    """Re-reads each proxy's `aggregator()`; the follower calls `check` every sweep."""

    def __init__(self, store: Store, node: Node) -> None:
        self.store = store
        self.node = node
        self.unanswered: set[str] = set()  # proxies warned about: no aggregator()

    def check(self, target: int, claim: Callable[[Connection], None] | None = None) -> list[Switch]:
        """Read each proxy's `aggregator()` at block `target` (the follower's cursor).
        `claim(conn)` runs first in each write transaction: the follower's fence."""
        switches: list[Switch] = []
        sources = self.store.sources
        if sources is None or not sources.resolved:
            return switches  # metadata not read yet: nothing to follow
        for source in proxied(sources):
            switches += self._check_one(source, target, claim)
        return switches

    def _check_one(
        self, source: Source, target: int, claim: Callable[[Connection], None] | None
    ) -> list[Switch]:
        proxy = source.address
        assert proxy is not None
        key = PREFIX + proxy
        kept = self.store.get_meta(key)
        following = Following.load(kept) if kept else Following(source.aggregators)
        start, current = following.history[-1]
        now = aggregator_of(self.node, proxy, target)
        if now is None and proxy not in self.unanswered:
            log.warning("price source %s: proxy %s answers no aggregator()", source.name, proxy)
            self.unanswered.add(proxy)
        elif now is not None:
            self.unanswered.discard(proxy)
        if now is None or now == current:
            with self.store.writing() as conn:
                if claim is not None:
                    claim(conn)
                self.store.set_meta(conn, key, replace(following, checked_at=target).dump())
            return []
        lo = max(start, following.checked_at or 0)  # the proxy pointed at `current` there
        found: list[tuple[int, str]] = []
        while now != current and lo < target:
            block, current = self._switch(source, current, lo, target, now)
            found.append((block, current))
            lo = block
        after = Following(following.history + tuple(found), target)
        sources = self.store.sources  # as it is now: another proxy may have moved too
        assert sources is not None
        resolved = with_history(sources, {proxy: after.dump()})
        pricer = Pricer(resolved)
        switches = []
        with self.store.writing() as conn:
            if claim is not None:
                claim(conn)
            self.store.set_meta(conn, key, after.dump())
            chain = self.store.chain
            for block, aggregator in found:
                # the answers of an aggregator the proxy left, had it kept answering
                conn.execute(
                    m.prices.delete().where(
                        m.prices.c.chain_id == chain,
                        m.prices.c.source == source.name,
                        m.prices.c.block_number >= block,
                    )
                )
                blocks = price_store.stored_answers(conn, chain, aggregator, block)
                events = price_store.record_prices(conn, pricer, blocks, chain, age=False)
                self.store.add_to_outbox(conn, *events)
                switches.append(Switch(source.name, block, aggregator, len(blocks)))
        self.store.use_sources(resolved)
        for switch in switches:
            log.warning(
                "price source %s: proxy %s moved to aggregator %s at block %d; "
                "%d stored block(s) with its answers priced",
                switch.source,
                proxy,
                switch.aggregator,
                switch.block,
                switch.repriced,
            )
        return switches

    def _switch(self, source: Source, old: str, lo: int, hi: int, at_hi: str) -> tuple[int, str]:
        """The first block in (lo, hi] where the proxy no longer points at `old` (it
        does at `lo`; at `hi` it points at `at_hi`), and where it points there, by
        reading past blocks' state. A node that pruned that state refuses: the switch
        is then taken at lo + 1, to `at_hi`."""
        proxy = source.address
        assert proxy is not None
        first = lo
        try:
            while hi - lo > 1:
                mid = (lo + hi) // 2
                found = read_aggregator(self.node, proxy, mid)
                if found == old:
                    lo = mid
                else:
                    hi, at_hi = mid, found or at_hi
        except RpcError as exc:
            log.warning(
                "price source %s: cannot read proxy %s's aggregator at past blocks (%s); "
                "taking its switch at block %d",
                source.name,
                proxy,
                exc,
                first + 1,
            )
            return first + 1, at_hi
        return hi, at_hi


class SilenceWatch:
    """Warns, once per episode, about a feed whose `latestRoundData()` has an answer
    newer than any `AnswerUpdated` stored from it for `blocks` blocks
    (`PRICE_SILENCE_WARN`)."""

    def __init__(self, store: Store, node: Node, blocks: int) -> None:
        self.store = store
        self.node = node
        self.blocks = blocks
        self.since: dict[str, int] = {}  # source -> stored tip when it was first behind
        self.warned: set[str] = set()

    def check(self) -> list[str]:
        """The sources warned about in this call."""
        sources = self.store.sources
        top = self.store.top()
        if not self.blocks or sources is None or top is None:
            return []
        warned = []
        for source in sources.sources:
            if source.kind == "chainlink" and self._silent(source, top[0]):
                warned.append(source.name)
        return warned

    def _silent(self, source: Source, tip: int) -> bool:
        assert source.address is not None
        answered = round_updated_at(self.node, source.address, tip)
        emitter = source.emitter_at(tip)
        with self.store.errors(), self.store.engine.connect() as conn:
            # the newest AnswerUpdated stored from the address that emits for it (its
            # price rows would not do: an answer already too old is stored as stale)
            data = conn.execute(
                sa.select(m.logs.c.data)
                .where(
                    m.logs.c.chain_id == self.store.chain,
                    m.logs.c.address == emitter,
                    m.logs.c.topic0 == ANSWER_UPDATED,
                    m.logs.c.block_number <= tip,
                )
                .order_by(m.logs.c.block_number.desc(), m.logs.c.log_index.desc())
                .limit(1)
            ).scalar_one_or_none()
        try:
            stored = answer_updated_at(data) if data is not None else None
        except ValueError:
            stored = None  # not the event's shape: as good as none stored
        if answered is None or (stored is not None and stored >= answered):
            self.since.pop(source.name, None)
            self.warned.discard(source.name)
            return False
        since = self.since.setdefault(source.name, tip)
        if tip - since < self.blocks or source.name in self.warned:
            return False
        self.warned.add(source.name)
        log.warning(
            "price source %s: %s's latestRoundData() answered at %d (chain time), but no "
            "AnswerUpdated from it was stored for %d blocks (since block %d): does the "
            "address emit AnswerUpdated? A proxy is followed to its aggregator; a "
            "MockV3Aggregator emits none",
            source.name,
            source.address,
            answered,
            tip - since,
            since,
        )
        return True
