"""The deployment-wide JSON-RPC call budget (`RPC_RATE_LIMIT`) on a real Redis."""

from __future__ import annotations

import bisect
import logging
import threading
import time
from typing import Any

import pytest
import redis

from chainpulse.devnet import Anvil, free_port
from indexer.errors import RateLimited
from indexer.rpc import Node
from indexer.throttle import FLOOR, KEY, PACE, RECOVER_PER_S, CallBudget, Grant, retry_after
from tests.harness.proxy import RpcProxy


def rate(client: redis.Redis, limit: float) -> float:
    """The deployment's rate now (unset: the limit's pace)."""
    raw = client.hget(KEY, "rate")
    return float(raw) if raw is not None else limit * PACE


def test_two_processes_together_never_pass_the_limit_in_any_second(redis_url: str) -> None:
    """Two budgets (two processes' clients) reserve from one limit of 100 calls/s, at
    once, until the schedule is 3 s ahead: on the limiter's own clock (Redis's), no
    one-second window holds more than 100 granted calls, and at least 90% is granted.
    (How close callers keep to that schedule in real time is bench/backfill/quota.py's
    figure: its provider counts every second.)"""
    limit, ahead = 100, 3.0
    grants: list[Grant] = []
    lock = threading.Lock()

    def draw() -> None:
        client = redis.Redis.from_url(redis_url)
        budget = CallBudget(client, limit=limit, max_wait=ahead)
        try:
            while True:
                grant = budget.reserve(10)
                with lock:
                    grants.append(grant)
        except RateLimited:
            pass  # the schedule is `ahead` seconds full
        finally:
            client.close()

    threads = [threading.Thread(target=draw) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert grants and all(g.calls <= 3 for g in grants)  # pieces of 3% of the limit
    moments = sorted(g.at for g in grants for _ in range(g.calls))
    busiest = max(bisect.bisect_left(moments, at + 1_000_000) - i for i, at in enumerate(moments))
    assert busiest <= limit
    granted = bisect.bisect_left(moments, moments[0] + int(ahead * 1_000_000))
    assert granted >= 0.9 * limit * ahead


def test_a_caller_is_refused_past_max_wait_and_a_patient_one_waits(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    budget = CallBudget(client, limit=100, max_wait=0.5)
    for _ in range(6):
        budget.slow_down(None)  # down to the floor: 5 calls/s, pieces of 3
    first = budget.reserve(3)
    assert (first.calls, first.wait) == (3, 0)  # an idle budget grants its first piece at once
    ahead = CallBudget(client, limit=100, max_wait=60)
    for _ in range(20):
        ahead.reserve(3)  # the schedule now runs 12 s ahead
    with pytest.raises(RateLimited, match=r"RPC_RATE_LIMIT=100/s\) has no room for 3 calls"):
        budget.acquire(3)  # nothing within 0.5 s: refused, nothing reserved
    patient = ahead.reserve(3)  # waits instead: after the 21 pieces before it
    assert patient.wait > 0.5
    # on Redis's clock, 63 calls at a rate between the floor and the pace
    assert 63 / 5 * 1_000_000 >= patient.at - first.at >= 63 / 95 * 1_000_000
    client.close()


def test_the_rate_halves_on_the_nodes_refusal_and_climbs_back_with_time(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    budget = CallBudget(client, limit=100, max_wait=5)
    budget.acquire(1)
    assert rate(client, 100) == 95  # paced at 95% of the provider's quota
    budget.slow_down(None)
    assert rate(client, 100) == 47.5
    for _ in range(5):
        budget.slow_down(None)
    assert rate(client, 100) == 100 * FLOOR  # never below a twentieth of the limit
    seconds, micros = client.time()
    client.hset(KEY, "seen", (seconds - 1) * 1_000_000 + micros)  # a second ago
    budget.acquire(1)
    climbed = rate(client, 100) - 100 * FLOOR
    since = (int(client.hget(KEY, "seen") or 0) - ((seconds - 1) * 1_000_000 + micros)) / 1e6
    assert climbed == pytest.approx(100 * RECOVER_PER_S * since, abs=1e-3)  # +5/s since
    assert since >= 1.0
    client.hset(KEY, "seen", (seconds - 60) * 1_000_000 + micros)  # a minute ago
    budget.acquire(1)
    assert rate(client, 100) == 95  # back to the pace, never above
    client.close()


def test_retry_after_holds_every_caller(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    budget = CallBudget(client, limit=100, max_wait=0.5)
    budget.slow_down(30.0)
    hold = int(client.hget(KEY, "hold") or 0)
    with pytest.raises(RateLimited):
        budget.acquire(1)
    patient = CallBudget(client, limit=100, max_wait=60).reserve(1)
    assert patient.at == hold  # the first moment after the hold, on Redis's clock
    client.close()


def test_without_redis_calls_go_through_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    client = redis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    budget = CallBudget(client, limit=1, max_wait=0.1)
    with caplog.at_level(logging.WARNING):
        granted = [budget.acquire(50) for _ in range(5)]
    assert granted == [50] * 5  # the whole request, unpaced
    warnings = [r for r in caplog.records if "budget is unreachable" in r.getMessage()]
    assert len(warnings) == 1  # once per 10 s


def test_a_429_slows_the_deployment_down(redis_url: str, anvil: Anvil) -> None:
    client = redis.Redis.from_url(redis_url)
    with RpcProxy(anvil.url) as proxy:
        node = Node([proxy.url], 5, CallBudget(client, limit=40, max_wait=5))
        assert node.head() >= 0
        assert rate(client, 40) == 38
        proxy.answer_next(1)
        with pytest.raises(RateLimited):
            node.head()
        assert rate(client, 40) == 19
    client.close()


def test_a_budgeted_batch_goes_in_pieces_with_its_results_in_order(
    redis_url: str, anvil: Anvil
) -> None:
    anvil.mine(5)
    client = redis.Redis.from_url(redis_url)
    sizes: list[int] = []

    def record(request: Any, reply: Any) -> Any:
        sizes.append(len(request) if isinstance(request, list) else 1)
        return reply

    with RpcProxy(anvil.url) as proxy:
        node = Node([proxy.url], 5, CallBudget(client, limit=100, max_wait=5))
        node.head()
        proxy.rewrite = record
        sizes.clear()
        heights = [i % 6 for i in range(50)]
        blocks = node.batch([("eth_getBlockByNumber", (hex(n), False)) for n in heights])
    assert [int(b["number"], 16) for b in blocks] == heights
    assert max(sizes) <= 3 and sum(sizes) == 50  # pieces of the burst, every call once
    client.close()


def test_nodes_built_from_rpc_rate_limit_share_one_budget(redis_url: str, anvil: Anvil) -> None:
    """What the workers, the follower and the commands build: one budget in Redis."""
    from indexer.config import IndexerSettings

    env = {"ETH_RPC_URL": anvil.url, "REDIS_URL": redis_url, "RPC_RATE_LIMIT": "40"}
    settings = IndexerSettings.from_env(env, dotenv=False)
    worker, follower = Node.from_settings(settings, max_wait=30), Node.from_settings(settings)
    assert worker.budget is not None and follower.budget is not None
    assert (worker.budget.limit, worker.budget.max_wait) == (40, 30)
    assert worker.head() >= 0
    client = redis.Redis.from_url(redis_url)
    assert rate(client, 40) == 38
    before = time.monotonic()
    worker.budget.slow_down(None)  # one process's refusal slows every process down
    follower.head()
    since = time.monotonic() - before  # at least as long as Redis saw between the two
    assert 19 <= rate(client, 40) <= 19 + 40 * RECOVER_PER_S * since  # halved, climbing back
    client.close()
    unset = IndexerSettings.from_env({"ETH_RPC_URL": anvil.url}, dotenv=False)
    assert Node.from_settings(unset).budget is None  # unset by default: no limit


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("", None),
        ("2", 2.0),
        (" 1.5 ", 1.5),
        ("-3", 0.0),
        ("600", 60.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),
        ("nan", None),
    ],
)
def test_retry_after_header(header: str | None, seconds: float | None) -> None:
    assert retry_after(header) == seconds
