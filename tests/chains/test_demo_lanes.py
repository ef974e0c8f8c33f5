"""The demo page with two chains, in headless Chromium: a lane per chain, each showing
its own chain's new blocks, and the blocks table the primary's only. A screenshot is
kept in `.test-output/` (or CHAINPULSE_TEST_OUTPUT)."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.chains.conftest import OTHER, PRIMARY, Chains
from tests.harness.browser import WAIT_MS, chromium_tab, screenshot


def test_the_page_shows_a_lane_per_chain(chains: Chains) -> None:
    chains.mine(PRIMARY, 2)
    chains.mine(OTHER, 2)
    chains.wait_indexed()
    with chromium_tab() as tab:
        tab.goto(chains.server.url + "/")
        expect(tab.locator("#connection")).to_have_text("live", timeout=WAIT_MS)
        lanes = tab.locator("#lanes .lane")
        expect(lanes).to_have_count(2, timeout=WAIT_MS)
        for chain in (PRIMARY, OTHER):
            head = chains.anvils[chain].head()
            lane = tab.locator(f'.lane[data-chain="{chain}"]')
            expect(lane.locator(f'.chip[data-number="{head}"]')).to_be_visible(timeout=WAIT_MS)
        expect(tab.locator(f'.lane[data-chain="{PRIMARY}"] .lane-name')).to_contain_text("one")

        # live: the other chain's new block reaches its lane, not the primary's table
        chains.mine(OTHER)
        chains.mine(OTHER)
        other_head = chains.anvils[OTHER].head()
        other_lane = tab.locator(f'.lane[data-chain="{OTHER}"]')
        expect(other_lane.locator(f'.chip[data-number="{other_head}"]')).to_be_visible(
            timeout=WAIT_MS
        )
        chains.mine(PRIMARY)
        primary_head = chains.anvils[PRIMARY].head()
        expect(tab.locator(f'#blocks tr[data-number="{primary_head}"]')).to_be_visible(
            timeout=WAIT_MS
        )
        rows = tab.locator("#blocks tr[data-number]").evaluate_all(
            "rows => rows.map(r => [Number(r.dataset.number), r.children[1].title])"
        )
        primary = chains.anvils[PRIMARY]
        assert rows and all(primary.block(n)["hash"] == h for n, h in rows), rows
        screenshot(tab, "demo-page-two-chains.png")
