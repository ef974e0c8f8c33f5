"""A fake of the transport's seam (`realtime.transport.fanout.Fanout`), in plain Python,
for the push rules' unit tests: what each client was sent, in order, and its rooms.

As with the real transport, a job (`spawn`) runs after the code that started it, here
when the test says (`settle`), and so do timers (`fire`); a client is `connected` only
once it has joined (`established`), though it may join rooms while connecting;
offloaded reads run in the caller.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar, cast

from realtime.transport.fanout import Encoded, Payload, Signal, Timer, Unavailable

T = TypeVar("T")


@dataclass
class FakeTimer:
    delay: float
    job: Callable[[], object]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class FakeFanout:
    rooms: dict[str, set[str]] = field(default_factory=dict)
    clients: set[str] = field(default_factory=set)  # connected, or connecting
    joined: set[str] = field(default_factory=set)  # connected
    jobs: list[Callable[[], object]] = field(default_factory=list)
    sent: dict[str, list[tuple[str, object]]] = field(default_factory=dict)
    timers: list[FakeTimer] = field(default_factory=list)
    published: list[tuple[str, str, Payload]] = field(default_factory=list)
    disconnected: list[str] = field(default_factory=list)
    publishing: bool = True  # False: `publish` raises Unavailable (Redis refused it)
    corks: int = 0

    # the fake's own --------------------------------------------------------------------

    def connect(self, sid: str) -> None:
        """A client connecting (its `Handlers.connect` runs next)."""
        self.clients.add(sid)
        self.sent.setdefault(sid, [])

    def established(self, sid: str) -> None:
        """It joined (its `Handlers.connected` runs next)."""
        self.joined.add(sid)

    def gone(self, sid: str) -> None:
        self.clients.discard(sid)
        self.joined.discard(sid)
        for members in self.rooms.values():
            members.discard(sid)

    def events(self, sid: str, name: str | None = None) -> list[object]:
        """What `sid` was sent (the data), of event `name` or every event."""
        return [data for event, data in self.sent.get(sid, []) if name is None or event == name]

    def names(self, sid: str) -> list[str]:
        return [event for event, _ in self.sent.get(sid, [])]

    def settle(self) -> None:
        """Run the jobs spawned so far, and those they spawn."""
        while self.jobs:
            self.jobs.pop(0)()

    def fire(self) -> None:
        """Run the timers that are due (all that are not cancelled)."""
        due, self.timers = self.timers, []
        for timer in due:
            if not timer.cancelled:
                timer.job()

    # Fanout ----------------------------------------------------------------------------

    def encode(self, event: str, data: Payload | Sequence[object]) -> Encoded:
        return Encoded((event, data))

    def send(self, sid: str, message: Encoded) -> bool:
        if sid not in self.clients:
            return False
        self.sent[sid].append(cast(tuple[str, object], message))
        return True

    def broadcast(self, room: str, message: Encoded) -> int:
        members = sorted(self.rooms.get(room, ()))
        for sid in members:
            self.send(sid, message)
        return len(members)

    def publish(self, room: str, event: str, data: Payload) -> None:
        if not self.publishing:
            raise Unavailable("Redis refused the publish")
        self.published.append((room, event, data))
        self.broadcast(room, self.encode(event, data))

    @contextlib.contextmanager
    def corked(self) -> Iterator[None]:
        self.corks += 1
        yield

    def connected(self, sid: str) -> bool:
        return sid in self.joined

    def join(self, sid: str, room: str) -> None:
        if sid in self.clients:
            self.rooms.setdefault(room, set()).add(sid)

    def leave(self, sid: str, room: str) -> None:
        self.rooms.get(room, set()).discard(sid)

    def has_members(self, room: str) -> bool:
        return bool(self.rooms.get(room))

    def disconnect(self, sid: str) -> None:
        self.disconnected.append(sid)
        self.gone(sid)

    def spawn(self, job: Callable[[], object]) -> None:
        self.jobs.append(job)

    def call_later(self, delay: float, job: Callable[[], object]) -> Timer:
        timer = FakeTimer(delay, job)
        self.timers.append(timer)
        return timer

    def sleep(self, seconds: float) -> None:
        pass

    def signal(self) -> Signal:
        return threading.Event()

    def offload(self, work: Callable[[], T]) -> T:
        return work()
