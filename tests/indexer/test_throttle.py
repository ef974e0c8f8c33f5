"""The deployment-wide JSON-RPC call budget (`RPC_RATE_LIMIT`) on a real Redis."""

from __future__ import annotations

import logging

import pytest
import redis

from chainpulse.devnet import Anvil, free_port
from indexer.errors import RateLimited
from indexer.rpc import Node
from indexer.throttle import KEY, CallBudget, retry_after
from tests.harness.proxy import RpcProxy


def rate(client: redis.Redis, limit: float) -> float:
    """The deployment's rate now (unset: the limit)."""
    raw = client.hget(KEY, "rate")
    return float(raw) if raw is not None else limit


def test_a_reservation_is_shared_and_refused_past_max_wait(redis_url: str) -> None:
    one, two = redis.Redis.from_url(redis_url), redis.Redis.from_url(redis_url)
    first = CallBudget(one, limit=10, max_wait=0.5)
    second = CallBudget(two, limit=10, max_wait=0.5)  # another process's
    first.acquire(10)  # a whole second's calls, from idle: no wait
    assert first.waited == 0
    with pytest.raises(RateLimited, match=r"RPC_RATE_LIMIT=10/s\) has no room for 4 calls"):
        second.acquire(4)  # fits only once the first 10 are a second old: refused
    patient = CallBudget(two, limit=10, max_wait=2)
    patient.acquire(4)  # waits for that second
    assert 0.5 < patient.waited <= 1.1
    patient.acquire(6)  # fits beside the 4, in the same window
    assert patient.waited <= 1.1
    one.close()
    two.close()


def test_the_rate_halves_on_the_nodes_refusal_and_recovers(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    budget = CallBudget(client, limit=100, max_wait=5)
    budget.acquire(1)
    assert rate(client, 100) == 100
    budget.slow_down(None)
    assert rate(client, 100) == 50
    for _ in range(5):
        budget.slow_down(None)
    assert rate(client, 100) == 5  # never below a twentieth of the limit
    for _ in range(3):
        budget.acquire(1)  # each granted request adds back a hundredth
    assert rate(client, 100) == 8
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
        for _ in range(5):
            budget.acquire(50)
    warnings = [r for r in caplog.records if "budget is unreachable" in r.getMessage()]
    assert len(warnings) == 1  # once per 10 s


def test_a_429_slows_the_deployment_down(redis_url: str, anvil: Anvil) -> None:
    client = redis.Redis.from_url(redis_url)
    with RpcProxy(anvil.url) as proxy:
        node = Node([proxy.url], 5, CallBudget(client, limit=40, max_wait=5))
        assert node.head() >= 0
        assert rate(client, 40) == 40
        proxy.answer_next(1)
        with pytest.raises(RateLimited):
            node.head()
        assert rate(client, 40) == 20
    client.close()


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
