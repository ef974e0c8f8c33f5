"""Moving events from the outbox table to the stream: at least once, in commit order.

An event is written to the outbox in the same transaction as the change it describes
(`Store.add_to_outbox`), appended to the stream right after the commit by the process
that made it (`deliver`), and only then deleted from the outbox. If Redis or the
process fails in between, the next `relay` appends it; the bus skips rows it has
appended already, so a row is on the stream once.
"""

from __future__ import annotations

from collections.abc import Sequence

from indexer.bus import EventBus
from indexer.events import Pending
from indexer.store import Store


def deliver(store: Store, bus: EventBus, rows: Sequence[Pending]) -> None:
    """Append `rows`, just committed to the outbox, then delete them from it."""
    bus.append(rows)
    store.delete_outbox([row.outbox_id for row in rows])


def relay(store: Store, bus: EventBus, batch: int = 500) -> int:
    """Append pending outbox rows in commit order, then delete them; returns how many.

    Stops at the first failure (BusUnavailable, keeping order); the rest stay for the
    next relay.
    """
    total = 0
    while True:
        rows = store.pending_outbox(batch)
        if not rows:
            return total
        deliver(store, bus, rows)
        total += len(rows)
        if len(rows) < batch:
            return total
