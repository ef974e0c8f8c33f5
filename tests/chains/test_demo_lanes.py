"""The demo page with two chains, in headless Chromium: a lane per chain, each showing
its own chain's new blocks and finalized block, the blocks table the primary's only,
and the contract events of both chains with their arguments (from the read API, then
live). A screenshot is kept in `.test-output/` (or CHAINPULSE_TEST_OUTPUT)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.chains.conftest import OTHER, PRIMARY, Chains, Layout
from tests.harness.browser import WAIT_MS, chromium_tab, screenshot


def transfer_row(chains: Chains, chain: int, to: str, value: int) -> str:
    """Send a transfer of the chain's token; the page's row key of its event."""
    deployed = chains.deployed
    assert deployed is not None
    receipt = deployed.contracts[chain].call(deployed.tokens[chain], "transfer", to, value)
    [log] = receipt["logs"]
    return f"{chain}:{int(receipt['blockNumber'], 16)}:{int(log['logIndex'], 16)}"


@pytest.mark.parametrize("chains", [Layout(2, contracts=True)], indirect=True, ids=str)
def test_the_page_shows_a_lane_per_chain(chains: Chains) -> None:
    chains.mine(PRIMARY, 2)
    chains.mine(OTHER, 2)
    earlier = transfer_row(chains, OTHER, "0x" + "0e" * 20, 77)  # before the page opens
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
        # each chain's finalized block as its node says it; the primary's in the header too
        for chain in (PRIMARY, OTHER):
            final = int(chains.anvils[chain].block("finalized")["number"], 16)
            expect(tab.locator(f'.lane[data-chain="{chain}"] .final')).to_contain_text(
                f"final #{final}", timeout=WAIT_MS
            )
        expect(tab.locator("#finality")).to_contain_text("final #", timeout=WAIT_MS)

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

        # contract events: the other chain's from the read API, a primary one live
        events = tab.locator("#events-section")
        expect(events.locator(f'tr[data-key="{earlier}"]')).to_contain_text(
            "Token2.Transfer", timeout=WAIT_MS
        )
        expect(events.locator(f'tr[data-key="{earlier}"]')).to_contain_text("value=77")
        live = transfer_row(chains, PRIMARY, "0x" + "1e" * 20, 1234)
        row = events.locator(f'tr[data-key="{live}"]')
        expect(row).to_contain_text("Token.Transfer", timeout=WAIT_MS)
        expect(row).to_contain_text("to=0x1e1e…1e1e")
        expect(row).to_contain_text("value=1234")
        screenshot(tab, "demo-page-two-chains.png")
