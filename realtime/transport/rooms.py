"""Room bookkeeping that scales with a client's own rooms.

python-socketio's manager leaves a disconnecting client's rooms by copying and scanning
every room of the namespace (one per client, plus the channels): O(N) per disconnect,
O(N^2) for a wave of them, which stalls the hub when thousands of clients drop at once.
`IndexedRooms` keeps sid -> rooms next to the manager's own maps, so a disconnect (and
`get_rooms`) touches only that client's rooms.
"""

from __future__ import annotations

from typing import Any

import socketio


class IndexedRooms:
    rooms: dict[str, dict[Any, Any]]
    callbacks: dict[str, Any]
    pending_connect: dict[str, list[str]]
    pending_disconnect: dict[str, list[str]]

    def _own_rooms(self) -> dict[tuple[str, str], set[Any]]:
        index: dict[tuple[str, str], set[Any]] | None = self.__dict__.get("_sid_rooms")
        if index is None:
            index = self.__dict__["_sid_rooms"] = {}
        return index

    def basic_enter_room(self, sid: str, namespace: str, room: Any, eio_sid: Any = None) -> None:
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)  # type: ignore[misc]
        self._own_rooms().setdefault((namespace, sid), set()).add(room)

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        super().basic_leave_room(sid, namespace, room)  # type: ignore[misc]
        index = self._own_rooms()
        mine = index.get((namespace, sid))
        if mine is not None:
            mine.discard(room)
            if not mine:
                del index[(namespace, sid)]

    def basic_disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        if namespace not in self.rooms:
            return
        # the None room (sid -> eio_sid) last: leaving the others may still look it up
        mine = self._own_rooms().get((namespace, sid), set())
        for room in sorted(mine, key=lambda r: r is None):
            self.basic_leave_room(sid, namespace, room)
        self.callbacks.pop(sid, None)
        for pending in (self.pending_connect, self.pending_disconnect):
            waiting = pending.get(namespace)
            if waiting is not None and sid in waiting:
                waiting.remove(sid)
                if not waiting:
                    del pending[namespace]

    def get_rooms(self, sid: str, namespace: str) -> list[Any]:
        return [r for r in self._own_rooms().get((namespace, sid), ()) if r is not None]

    def tracked_sids(self) -> int:
        return len(self._own_rooms())


class LocalManager(IndexedRooms, socketio.Manager):
    """The single-process manager (no Redis), with the room index."""
