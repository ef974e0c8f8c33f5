"""The demo page in headless Chromium (Debian's, driven by Playwright): it shows a newly
mined block within seconds, a price that moved after a swap, the reorg banner after
an `anvil_reorg`, and a price gone stale. A screenshot is kept in `.test-output/` (or
CHAINPULSE_TEST_OUTPUT)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from chainpulse.devnet import wait_until
from tests.harness.browser import WAIT_MS, chromium_tab, screenshot
from tests.harness.realtime import Server
from tests.prices.conftest import DeployedMarket


@pytest.fixture
def page(market: DeployedMarket) -> Iterator[tuple[Page, Server]]:
    settings = market.stack.settings
    server = Server(settings.redis_url, settings.database_url)
    server.start()
    try:
        market.stack.follower()
        wait_until(lambda: market.stack.start_block() is not None, 30, "the follower starting")
        with chromium_tab() as tab:
            yield tab, server
    finally:
        server.stop()


def test_the_page_shows_blocks_prices_and_reorgs(
    market: DeployedMarket, page: tuple[Page, Server]
) -> None:
    tab, server = page
    s, c = market.stack, market.contracts
    c.call(market.pair, "sync", 10**18, 3000 * 10**6)  # WETH = 3000 before the page loads
    s.wait_consistent()
    tab.goto(server.url + "/")
    expect(tab.locator("#connection")).to_have_text("live", timeout=WAIT_MS)
    weth = tab.locator('.ticker[data-token="WETH"] .value')
    expect(weth).to_have_text("3000", timeout=WAIT_MS)

    s.anvil.mine()
    head = s.anvil.head()
    expect(tab.locator(f'#blocks tr[data-number="{head}"]')).to_be_visible(timeout=WAIT_MS)
    expect(tab.locator("#lag")).to_have_text("lag 0 blocks", timeout=WAIT_MS)

    c.call(market.pair, "swap", 10**17, False)  # USDC in: WETH's price rises
    expect(weth).not_to_have_text("3000", timeout=WAIT_MS)
    assert float(weth.inner_text().rstrip("…")) > 3000
    expect(tab.locator('.ticker[data-token="WETH"] polyline')).to_have_count(1)

    s.anvil.mine()
    s.wait_consistent()
    s.anvil.call("anvil_reorg", 2, [])
    banner = tab.locator("#reorg-banner")
    expect(banner).to_be_visible(timeout=WAIT_MS)
    expect(banner).to_contain_text("Reorg of depth 2")
    # the price the reorg removed is gone: back to 3000
    try:
        expect(weth).to_have_text("3000", timeout=WAIT_MS)
    except AssertionError:
        print(what_the_stack_holds(market, server))  # shown with the failure
        raise
    s.anvil.mine()
    expect(tab.locator(f'#blocks tr[data-number="{s.anvil.head()}"]')).to_be_visible(
        timeout=WAIT_MS
    )
    c.call(market.pair, "sync", 10**18, 0)  # drained: WETH's last price turns stale
    card = tab.locator('.ticker[data-token="WETH"]')
    expect(card).to_have_class("ticker stale", timeout=WAIT_MS)
    expect(card.locator(".source")).to_contain_text("stale: no-reserves")
    expect(weth).to_have_text("3000")
    shot = screenshot(tab, "demo-page.png")
    assert shot.stat().st_size > 10_000


def what_the_stack_holds(market: DeployedMarket, server: Server) -> str:
    """The prices and blocks stored, the node's blocks and the stream's last events: what
    a failure of the reorg step needs to be understood."""
    import redis
    import sqlalchemy as sa

    s = market.stack
    lines = []
    with sa.create_engine(s.database_url).connect() as conn:
        query = "SELECT token, price, block_number, at_ms, source FROM prices ORDER BY at_ms"
        lines += [f"price row {tuple(r)}" for r in conn.execute(sa.text(query))]
        query = "SELECT number, hash FROM blocks ORDER BY number DESC LIMIT 6"
        lines += [f"stored block {tuple(r)}" for r in conn.execute(sa.text(query))]
    for n in range(max(0, s.anvil.head() - 5), s.anvil.head() + 1):
        block = s.anvil.call("eth_getBlockByNumber", hex(n), False)
        lines.append(f"node block {n} {block['hash']} txs {block['transactions']}")
    client = redis.Redis.from_url(s.settings.redis_url)
    for entry, fields in client.xrange("chainpulse:events")[-15:]:
        lines.append(f"event {entry!r} {fields.get(b'data', b'')[:300]!r}")
    client.close()
    lines.append(f"--- server log tail ---\n{server.log()[-2000:]}")
    return "\n".join(lines)
