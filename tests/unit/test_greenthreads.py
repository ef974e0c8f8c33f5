"""realtime.transport.greenthreads on a real eventlet hub: jobs run in reused green threads,
straight from the hub when called there, a job that waits does not hold up the next
one, a failing job leaves its thread serving, and the request pool is what
eventlet.wsgi's accept loop needs (links, a bound, waitall)."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import greenlet
import pytest

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    import eventlet
    from eventlet.hubs import get_hub

from realtime.transport.greenthreads import GreenThreads, RequestPool


def from_hub(func: Any, *args: Any) -> None:
    """Call `func` in the hub's own greenlet (as a listener's callback is), and wait."""
    done = eventlet.event.Event()

    def call() -> None:
        assert greenlet.getcurrent() is get_hub().greenlet
        func(*args)
        done.send()

    get_hub().schedule_call_global(0, call)
    done.wait()


def test_jobs_after_one_another_share_one_thread() -> None:
    threads = GreenThreads()
    ran: list[Any] = []
    for i in range(5):
        threads.run(lambda i=i: ran.append((i, greenlet.getcurrent())))
        eventlet.sleep(0)
    assert [i for i, _ in ran] == [0, 1, 2, 3, 4]
    assert len({id(g) for _, g in ran}) == 1
    assert len(threads.idle) == 1


def test_from_the_hub_a_job_runs_before_run_returns_and_the_hub_goes_on() -> None:
    threads = GreenThreads()
    order: list[str] = []

    def hub_side() -> None:
        threads.run(lambda: order.append("job"))
        order.append("hub after run")
        threads.run(lambda: order.append("second job"))

    from_hub(hub_side)
    assert order == ["job", "hub after run", "second job"]
    assert len(threads.idle) == 1  # both jobs ran in one thread


def test_a_job_that_waits_keeps_its_thread_and_the_next_job_takes_another() -> None:
    threads = GreenThreads()
    order: list[str] = []

    def slow() -> None:
        order.append("slow starts")
        eventlet.sleep(0.05)
        order.append("slow ends")

    def hub_side() -> None:
        threads.run(slow)
        threads.run(lambda: order.append("quick"))

    from_hub(hub_side)
    assert order == ["slow starts", "quick"]
    eventlet.sleep(0.2)
    assert order == ["slow starts", "quick", "slow ends"]
    assert len(threads.idle) == 2


def test_a_failing_job_is_logged_and_its_thread_serves_the_next(
    caplog: pytest.LogCaptureFixture,
) -> None:
    threads = GreenThreads()
    ran: list[str] = []

    def boom() -> None:
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, logger="realtime.transport.greenthreads"):
        threads.run(boom)
        eventlet.sleep(0)
        threads.run(lambda: ran.append("after"))
        eventlet.sleep(0)
    assert ran == ["after"]
    assert "boom" in caplog.text
    assert len(threads.idle) == 1


def test_idle_threads_are_bounded() -> None:
    threads = GreenThreads(idle_max=3)
    gate = eventlet.event.Event()
    for _ in range(10):
        threads.run(gate.wait)  # ten at once: ten threads
    eventlet.sleep(0)
    gate.send()
    eventlet.sleep(0)
    assert len(threads.idle) == 3


def test_a_parked_thread_that_is_killed_is_not_handed_jobs() -> None:
    threads = GreenThreads()
    threads.run(lambda: None)
    eventlet.sleep(0)
    [parked] = threads.idle
    get_hub().schedule_call_global(0, parked.throw, greenlet.GreenletExit)  # a kill
    eventlet.sleep(0.01)
    assert parked.dead and threads.idle == []
    ran: list[str] = []
    threads.run(lambda: ran.append("served"))
    eventlet.sleep(0)
    assert ran == ["served"]


def test_the_request_pool_links_bounds_and_waits() -> None:
    pool = RequestPool(GreenThreads(), size=2)
    gate = eventlet.event.Event()
    served: list[int] = []
    cleaned: list[int] = []

    def request(n: int) -> None:
        gate.wait()
        served.append(n)

    def spawn_three() -> None:
        for n in range(3):
            pool.spawn(request, n).link(lambda req, n: cleaned.append(n), n)

    spawner = eventlet.spawn(spawn_three)
    eventlet.sleep(0.05)
    assert pool.running == 2 and not spawner.dead  # the third waits for room
    gate.send()
    spawner.wait()
    pool.waitall()
    assert sorted(served) == [0, 1, 2] and sorted(cleaned) == [0, 1, 2]
    assert pool.running == 0


def test_a_request_that_fails_still_cleans_up_and_frees_its_place() -> None:
    pool = RequestPool(GreenThreads(), size=1)
    cleaned: list[str] = []

    def failing() -> None:
        raise OSError("the client went away")

    pool.spawn(failing).link(lambda req: cleaned.append("first"))
    pool.spawn(lambda: None).link(lambda req: cleaned.append("second"))
    pool.waitall()
    assert cleaned == ["first", "second"]
    request = pool.spawn(lambda: None)
    pool.waitall()
    request.link(lambda req: cleaned.append("linked late"))
    assert cleaned[-1] == "linked late"
