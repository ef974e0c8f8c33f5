"""The seam between the push rules and the transport: what the push domain
(`realtime.push`) and the gateway (`realtime.gateway`) may ask of the transport, and
what the transport asks of the gateway. Nothing here imports python-socketio,
python-engineio or eventlet; `realtime.transport.socket_fanout` implements both sides
over them, and tests use a fake of the same shape.

Clients are Socket.IO session ids (`sid`) of the one namespace served, `/realtime`;
rooms are plain names. A message is encoded once (`encode`) and then sent to any number
of clients: its bytes are shared.

Concurrency: jobs (`spawn`) and timers (`call_later`) run one at a time with the code
that started them; between two calls into this interface nothing else runs, unless the
call is one that waits (`sleep`, `Signal.wait`, `offload`). So the push rules need no
locks: a read of the rooms and the sends that follow it see the same state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import NewType, Protocol, TypeVar

T = TypeVar("T")

Payload = Mapping[str, object]  # a JSON object: an event's data, an acknowledgement
Encoded = NewType("Encoded", object)  # an event encoded once, for any number of clients


class Unavailable(Exception):
    """A message for other processes could not be published (Redis refused it)."""


class Signal(Protocol):
    """A one-shot event: `wait` returns once `set` has been called."""

    def wait(self) -> None: ...

    def set(self) -> None: ...


class Timer(Protocol):
    def cancel(self) -> None: ...


class Fanout(Protocol):
    """What the push rules ask of the transport."""

    # messages ---------------------------------------------------------------------------

    def encode(self, event: str, data: Payload | Sequence[object]) -> Encoded:
        """`event` with `data` as the bytes every recipient gets."""
        ...

    def send(self, sid: str, message: Encoded) -> bool:
        """Send to one client of this process; False when it is not connected here."""
        ...

    def broadcast(self, room: str, message: Encoded) -> int:
        """Send to every member of `room` connected to this process; how many."""
        ...

    def publish(self, room: str, event: str, data: Payload) -> None:
        """Emit to `room` on every process (Redis pub/sub); Unavailable when it could
        not be published. At most once."""
        ...

    def corked(self) -> AbstractContextManager[None]:
        """Hold what is written inside the block, then write each client's messages in
        one send (one stream read's pushes)."""
        ...

    # clients and rooms ------------------------------------------------------------------

    def connected(self, sid: str) -> bool: ...

    def join(self, sid: str, room: str) -> None:
        """Put a client that is connected, or connecting (in `Handlers.connect`), in
        `room`; nothing for one that has gone."""
        ...

    def leave(self, sid: str, room: str) -> None: ...

    def has_members(self, room: str) -> bool:
        """Some client of this process is in `room`."""
        ...

    def disconnect(self, sid: str) -> None:
        """End one client's session (its transport is closed: it may reconnect)."""
        ...

    # concurrency ------------------------------------------------------------------------

    def spawn(self, job: Callable[[], object]) -> None:
        """Run `job` on its own, after the caller yields (see the module's docstring)."""
        ...

    def call_later(self, delay: float, job: Callable[[], object]) -> Timer:
        """Run `job` in `delay` seconds, unless the timer is cancelled first."""
        ...

    def sleep(self, seconds: float) -> None: ...

    def signal(self) -> Signal: ...

    def offload(self, work: Callable[[], T]) -> T:
        """Run blocking `work` (a database read) without holding up the clients; one
        at a time."""
        ...


class Handlers(Protocol):
    """What the transport asks of the gateway: a client's lifecycle and events."""

    def allow(self, sid: str) -> bool:
        """Whether one more event from `sid` is within its rate limit (asked before
        each event; a refused one is answered by the transport)."""
        ...

    def connect(self, sid: str, auth: object) -> str | None:
        """A client asks to join, with the handshake's `auth`; the refusal's message,
        or None to accept it."""
        ...

    def connected(self, sid: str) -> None:
        """It joined: its CONNECT answer is queued, and nothing has run since."""
        ...

    def disconnected(self, sid: str) -> None: ...

    def event(self, sid: str, name: str, args: Sequence[object]) -> Payload | None:
        """An event it sent (one the transport let through: not refused for size, rate
        or shape); the acknowledgement, or None for none."""
        ...
