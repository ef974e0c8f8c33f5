"""The Grafana dashboard (ops/grafana/chainpulse.json) queries only metrics that a
process exposes, and shows each one operators are told to watch."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from follower.metrics import SCRAPED, FollowerMetrics
from realtime.metrics import Metrics
from workers.metrics import WorkerMetrics

DASHBOARD = Path(__file__).resolve().parents[2] / "ops" / "grafana" / "chainpulse.json"

WATCHED = {
    "chainpulse_indexing_lag_blocks",
    "chainpulse_indexing_lag_seconds",
    "chainpulse_blocks_indexed_total",
    "chainpulse_transactions_indexed_total",
    "chainpulse_job_failures_total",
    "chainpulse_job_retries_total",
    "chainpulse_queue_depth",
    "chainpulse_outbox_backlog",
    "chainpulse_reorg_depth_blocks_bucket",
    "chainpulse_follower_active",
    "chainpulse_follower_fencing_token",
    "chainpulse_realtime_connected_clients",
    "chainpulse_realtime_messages_pushed_total",
    "chainpulse_realtime_refusals_total",
    "chainpulse_realtime_stream_lag_seconds",
}


def exposed() -> set[str]:
    """Every sample name the server, follower and worker registries can expose."""
    worker = CollectorRegistry()
    WorkerMetrics(worker)
    names = set(SCRAPED)
    for registry in (Metrics().registry, FollowerMetrics().registry, worker):
        for family in registry.collect():
            names.add(family.name)
            if family.type == "counter":
                names.add(family.name + "_total")
            if family.type == "histogram":
                names.update(family.name + suffix for suffix in ("_bucket", "_count", "_sum"))
    return names


def queried() -> dict[str, str]:
    """Sample name -> the title of a panel that queries it."""
    dashboard = json.loads(DASHBOARD.read_text())
    out: dict[str, str] = {}
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            for name in re.findall(r"chainpulse_[a-z_]+", target["expr"]):
                out.setdefault(name, panel["title"])
    return out


def test_the_dashboard_queries_only_exposed_metrics() -> None:
    unknown = {name: title for name, title in queried().items() if name not in exposed()}
    assert unknown == {}


def test_the_dashboard_shows_every_watched_metric() -> None:
    assert WATCHED - set(queried()) == set()


def test_every_panel_has_a_title_and_the_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["templating"]["list"][0]["name"] == "datasource"
    for panel in dashboard["panels"]:
        assert panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
