"""The official JavaScript socket.io-client (from node_modules), subscribed to price
rooms and any other channels, recording every event it receives as a JSON line."""

from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
const { io } = require(process.argv[2]);
const url = process.argv[3];
const tokens = JSON.parse(process.argv[4]);
const channels = JSON.parse(process.argv[5] || "[]");  // whole subscribe payloads
const out = (event, data) => process.stdout.write(JSON.stringify({ event, data }) + "\n");
const socket = io(url + "/realtime", { transports: ["websocket"], reconnection: false });
for (const event of ["connected", "new-block", "price-update", "reorg", "exception",
                     "contract-event"]) {
  socket.on(event, (data) => out(event, data));
}
socket.on("connect_error", (err) => out("connect_error", err.message));
socket.once("connected", () => {
  for (const token of tokens) {
    socket.emit("subscribe", { channel: `price:${token}` }, (ack) => out("ack", ack));
  }
  for (const payload of channels) {
    socket.emit("subscribe", payload, (ack) => out("ack", ack));
  }
});
process.stdin.on("data", () => { socket.disconnect(); process.exit(0); });
"""


class JsClient:
    """`node` running socket.io-client against `url`, subscribed to `tokens`' rooms and
    with the `subscribe` payloads of `channels` (`{"channel": "blocks:<id>", ...}`)."""

    def __init__(
        self,
        url: str,
        tokens: list[str],
        directory: Path,
        channels: list[dict[str, Any]] | None = None,
    ) -> None:
        script = directory / "price-client.js"
        script.write_text(SCRIPT)
        self.process = subprocess.Popen(
            [
                "node",
                str(script),
                str(ROOT / "node_modules/socket.io-client"),
                url,
                json.dumps(tokens),
                json.dumps(channels or []),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.events: list[tuple[str, Any]] = []
        self._lines: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            item = json.loads(line)
            with self._lock:
                self.events.append((item["event"], item["data"]))

    def of(self, event: str) -> list[Any]:
        with self._lock:
            return [data for name, data in self.events if name == event]

    def wait(self, predicate: Any, timeout: float, what: str) -> Any:
        """The first `price-update` (or other event data) for which `predicate(event,
        data)` holds, waiting up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for name, data in self.events:
                    if predicate(name, data):
                        return data
            time.sleep(0.05)
        with self._lock:
            seen = self.events[-10:]
        raise AssertionError(f"JS client: no {what} within {timeout} s; last events {seen}")

    def wait_after(self, first: str, predicate: Any, timeout: float, what: str) -> Any:
        """As `wait`, among the events after the first one named `first` (a `reorg`,
        say): `wait` alone would take a matching event from before it."""
        seen: list[tuple[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                seen = list(self.events)
            at = next((i for i, (name, _) in enumerate(seen) if name == first), None)
            if at is not None:
                for name, data in seen[at + 1 :]:
                    if predicate(name, data):
                        return data
            time.sleep(0.05)
        raise AssertionError(
            f"JS client: no {what} after {first} within {timeout} s; last events {seen[-10:]}"
        )

    def close(self) -> None:
        stop_node(self.process)


def stop_node(process: subprocess.Popen[str]) -> None:
    """Ask a client script to disconnect and exit (a line on its stdin), kill it if it
    does not within 5 s, and close its pipes."""
    with contextlib.suppress(OSError, ValueError):
        assert process.stdin is not None
        process.stdin.write("bye\n")
        process.stdin.flush()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    for pipe in (process.stdin, process.stdout):
        with contextlib.suppress(OSError, ValueError):
            if pipe is not None:
                pipe.close()
