"""The reference pages in docs/ held to the code where a table can be checked: the event
stream's fields (docs/events.md), the tables users query (docs/database.md) and the
metrics the web and worker processes serve (docs/operations.md). The settings table has
its own test (tests/unit/test_config.py)."""

from __future__ import annotations

import re
from dataclasses import fields

import pytest
from prometheus_client import CollectorRegistry

from chainpulse.devnet import ROOT
from indexer import models as m
from indexer.events import BlockFinalized, BlockIndexed, BlockReorged, PriceUpdated
from realtime.metrics import Metrics
from workers.metrics import WorkerMetrics

DOCS = ROOT / "docs"


def row(page: str, first_cell: str) -> list[str]:
    """The cells of the table row of `page` whose first cell is `first_cell`."""
    for line in (DOCS / page).read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell} in docs/{page}")


def ticked(text: str) -> set[str]:
    return set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", text))


@pytest.mark.parametrize("event", [BlockIndexed, BlockReorged, BlockFinalized, PriceUpdated])
def test_the_event_stream_page_names_every_field(event: type) -> None:
    data = row("events.md", f"`{event.type}`")[2]  # type: ignore[attr-defined]
    names = {f.name for f in fields(event)}
    documented = {name for name in ticked(data) if re.fullmatch(r"[a-z]+[A-Z]\w*|[a-z]+", name)}
    values = {"head", "backfill"}  # `source`'s values
    assert documented - values == names


USER_TABLES = [m.blocks, m.transactions, m.logs, m.prices, m.reorgs]


@pytest.mark.parametrize("table", USER_TABLES, ids=lambda t: t.name)
def test_the_database_page_names_every_column_of_the_tables_users_query(table: m.Table) -> None:
    text = (DOCS / "database.md").read_text()
    bullet = re.search(rf"^- `{table.name}` \((.*?)\n(?=- `|\n)", text, re.M | re.S)
    assert bullet is not None, f"no entry for {table.name}"
    documented = ticked(bullet.group(1))
    topics = {f"topic{i}" for i in range(4)} if table is m.logs else set()
    assert {c.name for c in table.columns} - topics <= documented
    if topics:
        assert "topic0" in documented and "topic3" in documented


def test_the_database_page_names_every_table() -> None:
    documented = ticked((DOCS / "database.md").read_text())
    assert set(m.metadata.tables) <= documented


def families(registry: CollectorRegistry) -> set[str]:
    return {family.name for family in registry.collect()}


def documented_metrics(process: str, prefix: str) -> set[str]:
    text = row("operations.md", f"`{process}`")[2]
    names = re.findall(r"`(chainpulse_\w+|…_\w+)", text)
    return {re.sub(r"_total$", "", n.replace("…_", prefix)) for n in names}


def test_the_web_process_metrics_are_the_documented_ones() -> None:
    served = families(Metrics().registry)
    assert documented_metrics("web", "chainpulse_realtime_") == served


def test_the_worker_metrics_are_the_documented_ones() -> None:
    registry = CollectorRegistry()
    WorkerMetrics(registry=registry)
    assert documented_metrics("worker", "chainpulse_") == families(registry)
