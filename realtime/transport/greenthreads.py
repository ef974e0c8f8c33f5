"""Green threads kept for the next job once done.

A new green thread per small job costs more than the job: a `GreenThread` with its
event and links, a greenlet, and under Python 3.11 a 16 KB frame stack mapped, faulted
in and unmapped again. The server runs two kinds of small jobs per client: reading
what a WebSocket sent (`connection.Connection.read`), and serving a new connection's
first request (eventlet.wsgi's request, through `RequestPool`).

`GreenThreads.run(job)` called in the hub (a descriptor became readable) switches
straight into an idle thread, as eventlet's own trampoline wakes a green thread: the
job runs, the thread parks again, and the hub goes on where it was. So one thread
serves, in turn, every connection the hub found readable, with no timer per job; only
a job that waits (for the network, a database read) keeps its thread, and the next job
takes another. Called from a green thread, `run` schedules the switch instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import eventlet.event
import greenlet
from eventlet.hubs import get_hub

log = logging.getLogger(__name__)


class GreenThreads:
    """At most `idle_max` threads wait idle; a job finds one, or starts a new one."""

    def __init__(self, idle_max: int = 64) -> None:
        self.idle: list[Any] = []
        self.idle_max = idle_max

    def run(self, job: Callable[[], object]) -> None:
        hub = get_hub()
        thread = self.idle.pop() if self.idle else greenlet.greenlet(self._loop, hub.greenlet)
        if greenlet.getcurrent() is hub.greenlet:
            thread.switch(job)  # back here once it parks, or waits on something
        else:
            hub.schedule_call_global(0, thread.switch, job)

    def _loop(self, job: Callable[[], object]) -> None:
        hub, me = get_hub(), greenlet.getcurrent()
        while True:
            try:
                job()
            except Exception:
                log.exception("a job of the server's green threads failed")
            if len(self.idle) >= self.idle_max:
                return
            self.idle.append(me)
            try:
                job = hub.switch()  # parked until `run` hands it the next job
            except BaseException:  # thrown in while parked (a kill): leave the idle list
                if me in self.idle:
                    self.idle.remove(me)
                raise


class Request:
    """A request under way in a `RequestPool`: what eventlet.wsgi links its clean-up to."""

    __slots__ = ("pool", "func", "args", "links", "done")

    def __init__(self, pool: RequestPool, func: Callable[..., object], args: tuple[Any, ...]):
        self.pool = pool
        self.func = func
        self.args = args
        self.links: list[tuple[Callable[..., object], tuple[Any, ...]]] = []
        self.done = False

    def link(self, func: Callable[..., object], *args: Any) -> None:
        if self.done:
            func(self, *args)
        else:
            self.links.append((func, args))

    def run(self) -> None:
        try:
            self.func(*self.args)
        finally:
            self.done = True
            links, self.links = self.links, []
            try:
                for func, args in links:
                    func(self, *args)
            finally:
                self.pool.finished()


class RequestPool:
    """eventlet.wsgi.server's pool (its `custom_pool`): each request runs in one of
    `threads`, at most `size` at a time (accepting waits for one to end, as with
    eventlet's GreenPool)."""

    def __init__(self, threads: GreenThreads, size: int) -> None:
        self.threads = threads
        self.size = size
        self.running = 0
        self._changed: eventlet.event.Event | None = None

    def spawn(self, func: Callable[..., object], *args: Any) -> Request:
        while self.running >= self.size:
            self._wait()
        request = Request(self, func, args)
        self.running += 1
        self.threads.run(request.run)
        return request

    def waitall(self) -> None:
        while self.running:
            self._wait()

    def finished(self) -> None:
        self.running -= 1
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.send()

    def _wait(self) -> None:
        if self._changed is None:
            self._changed = eventlet.event.Event()
        self._changed.wait()
