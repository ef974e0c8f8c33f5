"""Front-ends watching a running stack, and what the fault tests check of what they saw.

Two clients, each as docs/protocol.md tells front-ends to be written: the Python
`RealtimeClient` and the official socket.io-client, both subscribed to price rooms,
reconnecting by themselves and resuming with `lastBlock` and `lastBlockHash`. Each
records every `new-block`, `reorg` and `price-update` in arrival order.

`Watcher.problems` says what is wrong with what a client saw: a height seen twice, out
of order or missing (a skip is allowed only as docs/protocol.md documents it, a jump whose
`parentHash` does not match, and its heights must then be served by `/api/blocks/<n>`),
a block the node does not have, a price pushed twice, a last price that is not the
stored one.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from realtime.client import NAMESPACE, RealtimeClient
from tests.harness.jsclient import ROOT, stop_node

JS_CLIENT = r"""
const { io } = require(process.argv[2]);
const tokens = JSON.parse(process.argv[4]);
let lastBlock = null;
let lastBlockHash = null;
const out = (event, data) => process.stdout.write(JSON.stringify({ event, data }) + "\n");
const socket = io(process.argv[3] + "/realtime", {
  transports: ["websocket"],
  reconnectionDelay: 200,
  reconnectionDelayMax: 1000,
  auth: (send) => send(lastBlock === null ? {} : { lastBlock, lastBlockHash }),
});
socket.on("connect", () => {
  for (const token of tokens) socket.emit("subscribe", { channel: `price:${token}` });
  out("connect", null);
});
socket.on("new-block", (b) => {
  lastBlock = b.number;
  lastBlockHash = b.hash;
  out("new-block", b);
});
socket.on("reorg", (r) => {
  if (lastBlock !== null && lastBlock > r.commonAncestor.number) {
    lastBlock = r.commonAncestor.number;
    lastBlockHash = r.commonAncestor.hash;
  }
  out("reorg", r);
});
socket.on("price-update", (p) => out("price-update", p));
socket.on("exception", (e) => out("exception", e));
socket.on("disconnect", (reason) => out("disconnect", reason));
process.stdin.on("data", () => { socket.disconnect(); process.exit(0); });
"""


def served_by(api: str) -> Callable[[int], str | None]:
    """The hash a server's `/api/blocks/<n>` serves for a height."""

    def served(height: int) -> str | None:
        got = requests.get(f"{api}/api/blocks/{height}", timeout=10)
        return str(got.json()["hash"]) if got.status_code == 200 else None

    return served


class Watcher:
    """What one client saw, in arrival order: (event, data) pairs."""

    name = "client"

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self._lock = threading.Lock()

    def record(self, event: str, data: Any) -> None:
        with self._lock:
            self.events.append((event, data))

    def seen(self, event: str) -> list[Any]:
        with self._lock:
            return [data for name, data in self.events if name == event]

    def last_block(self) -> int | None:
        blocks = self.seen("new-block")
        return int(blocks[-1]["number"]) if blocks else None

    def close(self) -> None:
        raise NotImplementedError

    def problems(
        self, node: dict[int, str], served: Callable[[int], str | None], prices: dict[str, str]
    ) -> list[str]:
        """What is wrong with what this client saw; `node` maps heights to the node's
        hashes, `served(n)` is the hash `/api/blocks/<n>` serves (None for none),
        `prices` each token's stored latest price."""
        found: list[str] = []
        last: tuple[int, str] | None = None
        skipped: list[int] = []
        with self._lock:
            events = list(self.events)
        for event, data in events:
            if event == "reorg":
                ancestor = data["commonAncestor"]
                last = (int(ancestor["number"]), str(ancestor["hash"]))
                continue
            if event != "new-block":
                continue
            number, hash_, parent = int(data["number"]), data["hash"], data["parentHash"]
            if node.get(number) != hash_:
                found.append(f"block {number} {hash_[:10]} is not the node's")
            if last is not None:
                if number == last[0] + 1 and parent != last[1]:
                    found.append(f"block {number} does not link to {last[0]} and no reorg came")
                elif number <= last[0]:
                    found.append(f"block {number} after {last[0]}: a repeat or out of order")
                elif number > last[0] + 1:
                    if parent == last[1]:
                        found.append(f"block {number} after {last[0]} claims to link to it")
                    skipped += range(last[0] + 1, number)  # a documented skip
            last = (number, hash_)
        for height in skipped:  # a skipped height must be in the read API
            if served(height) != node.get(height):
                found.append(f"skipped height {height} is not served by /api/blocks")
        updates = [d for e, d in events if e == "price-update" and not d.get("snapshot")]
        for a, b in zip(updates, updates[1:], strict=False):
            if (a["token"], a["blockNumber"], a["priceExact"]) == (
                b["token"],
                b["blockNumber"],
                b["priceExact"],
            ):
                found.append(f"price {a['token']} {a['priceExact']} pushed twice")
        latest: dict[str, str | None] = {}
        for _, data in [(e, d) for e, d in events if e == "price-update"]:
            latest[data["token"]] = data["priceExact"]
        for token, price in prices.items():
            if latest.get(token) != price:
                found.append(f"{token}: last pushed {latest.get(token)}, stored {price}")
        return [f"{self.name}: {p}" for p in found]


class PythonWatcher(Watcher):
    name = "python-socketio"

    def __init__(self, url: str, tokens: list[str]) -> None:
        super().__init__()
        self.client = RealtimeClient(
            url,
            on_new_block=lambda d: self.record("new-block", d),
            on_price_update=lambda d: self.record("price-update", d),
            on_reorg=lambda d: self.record("reorg", d),
            on_exception=lambda d: self.record("exception", d),
            reconnection_delay=0.2,
            reconnection_delay_max=1.0,
        )
        self.client.sio.on("disconnect", lambda *_: self.record("disconnect", None), NAMESPACE)
        self.client.subscribe_to_prices(tokens)
        self.client.connect()

    def close(self) -> None:
        self.client.disconnect()


class JsWatcher(Watcher):
    name = "socket.io-client"

    def __init__(self, url: str, tokens: list[str], directory: Path) -> None:
        super().__init__()
        script = directory / "watching-client.js"
        script.write_text(JS_CLIENT)
        self.process = subprocess.Popen(
            ["node", str(script), str(ROOT / "node_modules/socket.io-client"), url]
            + [json.dumps(tokens)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            item = json.loads(line)
            self.record(item["event"], item["data"])

    def close(self) -> None:
        stop_node(self.process)
