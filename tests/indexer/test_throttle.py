"""The deployment-wide JSON-RPC call budget (`RPC_RATE_LIMIT`) on a real Redis."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
import redis

from chainpulse.devnet import Anvil, free_port
from indexer.errors import RateLimited
from indexer.rpc import Node
from indexer.throttle import FLOOR, KEY, PACE, CallBudget, retry_after
from tests.harness.proxy import RpcProxy


def rate(client: redis.Redis, limit: float) -> float:
    """The deployment's rate now (unset: the limit's pace)."""
    raw = client.hget(KEY, "rate")
    return float(raw) if raw is not None else limit * PACE


def test_two_processes_together_never_pass_the_limit_in_any_second(redis_url: str) -> None:
    """Two budgets (two processes' clients) draw on one limit of 100 calls/s for 3 s:
    no one-second window holds more than 100 granted calls, and at least 90% is used."""
    limit, seconds = 100, 3.0
    grants: list[tuple[float, int]] = []
    lock = threading.Lock()
    start = time.monotonic()

    def draw() -> None:
        client = redis.Redis.from_url(redis_url)
        budget = CallBudget(client, limit=limit, max_wait=5)
        while time.monotonic() < start + seconds:
            calls = budget.acquire(10)
            with lock:
                grants.append((time.monotonic(), calls))
        client.close()

    threads = [threading.Thread(target=draw) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert all(calls <= 3 for _, calls in grants)  # pieces of 3% of the limit
    times = sorted(at for at, calls in grants for _ in range(calls))
    busiest = max(sum(1 for t in times[i:] if t < at + 1.0) for i, at in enumerate(times))
    assert busiest <= limit
    used = sum(1 for t in times if t < start + seconds)
    assert used >= 0.9 * limit * seconds


def test_a_caller_is_refused_past_max_wait_and_a_patient_one_waits(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    budget = CallBudget(client, limit=100, max_wait=0.5)
    for _ in range(6):
        budget.slow_down(None)  # down to the floor: 5 calls/s
    assert budget.acquire(3) == 3  # an idle budget grants its first piece at once
    assert budget.waited == 0
    with pytest.raises(RateLimited, match=r"RPC_RATE_LIMIT=100/s\) has no room for 3 calls"):
        budget.acquire(3)  # the next piece is 0.6 s away at 5/s: refused, nothing reserved
    patient = CallBudget(client, limit=100, max_wait=2)
    assert patient.acquire(3) == 3
    assert 0.3 < patient.waited <= 0.7
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
    time.sleep(1.0)
    budget.acquire(1)
    assert 10 <= rate(client, 100) <= 13  # +5% of the limit per second since
    seconds, micros = client.time()
    client.hset(KEY, "seen", (seconds - 60) * 1_000_000 + micros)  # a minute ago
    budget.acquire(1)
    assert rate(client, 100) == 95  # back to the pace, never above
    client.close()


def test_retry_after_holds_every_caller(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    budget = CallBudget(client, limit=100, max_wait=0.5)
    budget.slow_down(1.0)
    with pytest.raises(RateLimited):
        budget.acquire(1)
    patient = CallBudget(client, limit=100, max_wait=5)
    patient.acquire(1)
    assert patient.waited > 0.5
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
    worker.budget.slow_down(None)  # one process's refusal slows every process down
    follower.head()
    assert 19 <= rate(client, 40) < 20  # halved, and climbing back since
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
