"""SIGTERM on the server: its clients' transports close (never a final Socket.IO
disconnect), the process exits 0 within SHUTDOWN_TIMEOUT, and the clients reconnect to
the next server on that address and resume with `lastBlock`, missing nothing; the same
resume after kill -9."""

from __future__ import annotations

import gc
import json
import signal
import subprocess
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import socketio

from chainpulse.devnet import wait_until
from tests.harness.events import Stream, block_event
from tests.harness.jsclient import ROOT
from tests.harness.realtime import NS, Server
from tests.harness.seeded import insert_blocks

StartServer = Callable[..., Server]

RESUMING_CLIENT = r"""
const { io } = require(process.argv[2]);
let lastBlock = null;
const out = (event, data) => process.stdout.write(JSON.stringify({ event, data }) + "\n");
const socket = io(process.argv[3] + "/realtime", {
  transports: ["websocket"],
  reconnectionDelay: 200,
  reconnectionDelayMax: 500,
  auth: (send) => send(lastBlock === null ? {} : { lastBlock }),
});
socket.on("connected", () => out("connected", null));
socket.on("new-block", (block) => { lastBlock = block.number; out("new-block", block.number); });
socket.on("disconnect", (reason) => out("disconnect", reason));
process.stdin.on("data", () => { socket.disconnect(); process.exit(0); });
"""


class Resuming:
    """python-socketio with reconnection on, resuming from the last block it saw."""

    def __init__(self, server: Server) -> None:
        self.blocks: list[int] = []
        self.reasons: list[str] = []
        self.connects = 0
        self.sio = socketio.Client(reconnection=True, reconnection_delay=0.2)
        self.sio.on("new-block", lambda b: self.blocks.append(b["number"]), namespace=NS)
        self.sio.on("connected", self._connected, namespace=NS)
        self.sio.on("disconnect", self._disconnected, namespace=NS)
        self.sio.connect(
            server.url,
            namespaces=[NS],
            transports=["websocket"],
            auth=lambda: {"lastBlock": self.blocks[-1]} if self.blocks else {},
            wait_timeout=10,
        )

    def _connected(self, _: Any = None) -> None:
        self.connects += 1

    def _disconnected(self, reason: Any = None) -> None:
        self.reasons.append(reason)
        # python-engineio's client leaves the socket of a WebSocket lost this way open
        ws = self.sio.eio.ws
        if ws is not None:
            ws.shutdown()


class Node:
    """The official socket.io-client with the same resume rule."""

    def __init__(self, server: Server, directory: Path) -> None:
        script = directory / "resuming-client.js"
        script.write_text(RESUMING_CLIENT)
        self.process = subprocess.Popen(
            ["node", str(script), str(ROOT / "node_modules/socket.io-client"), server.url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.events: list[tuple[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            item = json.loads(line)
            self.events.append((item["event"], item["data"]))

    def of(self, name: str) -> list[Any]:
        return [data for event, data in list(self.events) if event == name]

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("bye\n")
        self.process.stdin.close()
        self.process.wait(10)
        assert self.process.stdout is not None
        self.process.stdout.close()


@pytest.mark.parametrize(
    "sig",
    # kill -9 behind `slow`: the fault suite (tests/faults) kills the server under clients
    [signal.SIGTERM, pytest.param(signal.SIGKILL, marks=pytest.mark.slow)],
    ids=["sigterm", "kill-9"],
)
def test_a_stopped_server_moves_clients_on_and_they_resume(
    start_server: StartServer, stream: Stream, db_url: str, tmp_path: Path, sig: signal.Signals
) -> None:
    """SIGTERM drains; kill -9 gives no warning at all: in both, the clients reconnect
    to the next server on the address and resume, missing nothing."""
    insert_blocks(db_url, range(1, 4))
    server = start_server(SHUTDOWN_TIMEOUT="5")
    python = Resuming(server)
    node = Node(server, tmp_path)
    try:
        wait_until(lambda: len(node.of("connected")) == 1, 20, "the JS client connected")
        insert_blocks(db_url, [4])
        stream.append(block_event(4))
        wait_until(lambda: python.blocks == [4] and node.of("new-block") == [4], 10, "block 4")

        assert server.process is not None
        started = time.monotonic()
        server.process.send_signal(sig)
        if sig == signal.SIGTERM:
            assert server.process.wait(15) == 0, server.log()[-3000:]
            took = time.monotonic() - started
            assert took < 5, f"the server took {took:.1f} s to stop: {server.log()[-3000:]}"
            assert "closing 2 session(s)" in server.log()
        else:
            assert server.process.wait(15) == -signal.SIGKILL
        # the transport closed: both clients are reconnecting, not told to stay away
        wait_until(lambda: python.reasons and node.of("disconnect"), 10, "the disconnects")
        assert python.reasons == [socketio.Client.reason.TRANSPORT_ERROR]
        assert node.of("disconnect") == ["transport close"]

        # blocks indexed while no server runs; then a server comes back on that address
        insert_blocks(db_url, range(5, 8))
        server.start()
        wait_until(lambda: python.connects == 2, 20, "the python client back")
        wait_until(lambda: len(node.of("connected")) == 2, 20, "the JS client back")
        insert_blocks(db_url, [8])
        stream.append(block_event(8))
        wait_until(
            lambda: python.blocks[-1:] == [8] and node.of("new-block")[-1:] == [8],
            15,
            "block 8 live after the resume",
        )
        assert python.blocks == [4, 5, 6, 7, 8]
        assert node.of("new-block") == [4, 5, 6, 7, 8]
    finally:
        python.sio.disconnect()
        node.close()
        # its reconnection attempts while no server listened left refused sockets to
        # the garbage collector (websocket-client); collect them here, not in a later test
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


def test_sigterm_with_no_clients_exits_at_once(start_server: StartServer) -> None:
    server = start_server()
    assert server.process is not None
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(15) == 0
    assert time.monotonic() - started < 2
    assert "SIGTERM: closing 0 session(s)" in server.log()


def test_a_shared_multiprocess_directory_is_left_to_the_workers(
    start_server: StartServer, tmp_path: Path
) -> None:
    """Under a process manager every process has the worker's environment; the server
    keeps its own registry and writes nothing into the workers' directory."""
    shared = tmp_path / "worker-metrics"
    shared.mkdir()
    server = start_server(PROMETHEUS_MULTIPROC_DIR=str(shared), LOG_FORMAT="json")
    metrics = server.get("/metrics").text
    assert "chainpulse_realtime_connected_clients 0.0" in metrics
    assert list(shared.iterdir()) == []
    # and LOG_FORMAT=json: every line of its log is one JSON object
    lines = [line for line in server.log().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    assert any(r["message"].startswith("serving /realtime") for r in records)
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
