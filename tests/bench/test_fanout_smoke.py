"""Smoke check of bench/fanout: its --quick run against the Node baseline delivers everything.

No timing is asserted: this checks the harness (clients, publisher, accounting), not speed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
@pytest.mark.skipif(
    not (ROOT / "node_modules" / "socket.io").exists(), reason="npm packages are not installed"
)
@pytest.mark.timeout(180)
def test_quick_run_against_the_node_baseline_receives_every_message() -> None:
    from bench.fanout import run

    results = run.main(["--quick", "--servers", "node", "--no-search", "--no-scale"])

    res = results["node"]["per_n"][200]
    assert res.get("error") is None
    assert res["connect"]["connected"] == 200
    assert res["broadcast"]["lost"] == 0
    assert res["broadcast"]["dropped"] == 0
    mix = res["mix"]
    assert mix["expected"] == 2 * mix["ticks"] * 200
    assert mix["received"] == mix["expected"]
    assert mix["lost"] == 0
    assert mix["dropped"] == 0
    assert mix["dups"] == 0
