"""The realtime server as tests drive it: a real `chainpulse serve` process, a recording
python-socketio client, and a raw Engine.IO WebSocket for frames no client sends."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from chainpulse.devnet import free_port, wait_until
from realtime.client import OrderedClient
from tests.harness.environment import CHAINPULSE, service_env
from tests.harness.processes import stop

NS = "/realtime"
SECRET = "test-secret-that-is-at-least-32-bytes-long"
WAIT = 10.0  # seconds: a generous bound for functional waits, never a timing assertion


class Server:
    """`.venv/bin/chainpulse serve` on a free port."""

    def __init__(
        self, redis_url: str, database_url: str, directory: Path | None = None, **env: Any
    ) -> None:
        """Its log goes beside the SQLite database, or into `directory`."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = service_env(
            **{
                "PORT": str(self.port),
                "REDIS_URL": redis_url,
                "DATABASE_URL": database_url,
                "JWT_SECRET": SECRET,
                "PUBSUB_CANARY_INTERVAL": "0.5",
                # a stopping server waits this long for clients that never close their
                # side (raw sockets that read nothing); test_shutdown.py sets its own
                "SHUTDOWN_TIMEOUT": "1",
                **{k: str(v) for k, v in env.items()},
            }
        )
        self.process: subprocess.Popen[bytes] | None = None
        beside = Path(database_url.removeprefix("sqlite:///"))
        self.log_path = (
            directory / f"server.{self.port}.log"
            if directory is not None
            else beside.with_suffix(f".{self.port}.log")
        )

    def start(self, ready: bool = True, timeout: float = 20) -> Server:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [CHAINPULSE, "serve"],
                env=self.env,
                cwd=str(self.log_path.parent),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        check = self.ready if ready else self.alive
        try:
            wait_until(check, timeout, f"chainpulse serve on port {self.port}")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n--- its log ---\n{self.log()[-3000:]}") from None
        return self

    def _get(self, path: str) -> requests.Response:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"server exited:\n{self.log()}")
        return requests.get(self.url + path, timeout=5)

    def alive(self) -> bool:
        return self._get("/healthz").status_code == 200

    def ready(self) -> bool:
        return self._get("/readyz").status_code == 200

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.url + path, timeout=10, **kwargs)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        stop(self.process, grace=5)
        self.process = None


class Client:
    """A python-socketio client that records every event it receives, in order."""

    EVENTS = (
        "connected",
        "new-block",
        "price-update",
        "reorg",
        "finalized",
        "contract-event",
        "pong",
        "exception",
        "private-message",
    )

    def __init__(
        self,
        server: Server,
        auth: dict[str, Any] | None = None,
        transports: list[str] | None = None,
    ) -> None:
        self.sio = OrderedClient(reconnection=False)
        self.events: list[tuple[str, Any]] = []
        self.lock = threading.Lock()
        self.connect_error: Any = None
        self.disconnect_reason: Any = None
        for name in self.EVENTS:
            self.sio.on(name, self._recorder(name), namespace=NS)
        self.sio.on("connect_error", self._on_connect_error, namespace=NS)
        self.sio.on("disconnect", self._on_disconnect, namespace=NS)
        self.server = server
        self.auth = auth
        self.transports = transports or ["websocket"]

    def _recorder(self, name: str) -> Callable[..., None]:
        def record(data: Any = None) -> None:
            with self.lock:
                self.events.append((name, data))

        return record

    def _on_connect_error(self, data: Any) -> None:
        self.connect_error = data

    def _on_disconnect(self, reason: Any = None) -> None:
        self.disconnect_reason = reason

    def connect(self) -> Client:
        self.sio.connect(
            self.server.url,
            namespaces=[NS],
            transports=self.transports,
            auth=self.auth,
            wait_timeout=WAIT,
        )
        self.wait_for("connected")
        return self

    def of(self, name: str) -> list[Any]:
        with self.lock:
            return [data for event, data in self.events if event == name]

    def names(self) -> list[str]:
        with self.lock:
            return [event for event, _ in self.events]

    def wait_for(self, name: str, count: int = 1, timeout: float = WAIT) -> list[Any]:
        try:
            wait_until(lambda: len(self.of(name)) >= count, timeout, f"{count} {name} event(s)")
        except TimeoutError as exc:
            with self.lock:
                seen = [(event, data) for event, data in self.events][-30:]
            raise TimeoutError(
                f"{exc}; connected={self.sio.connected}, disconnect reason "
                f"{self.disconnect_reason!r}; last events {seen}\n"
                f"--- server log tail ---\n{self.server.log()[-3000:]}"
            ) from None
        return self.of(name)

    def call(self, event: str, data: Any = None) -> Any:
        return self.sio.call(event, data, namespace=NS, timeout=WAIT)

    def emit(self, event: str, data: Any = None) -> None:
        self.sio.emit(event, data, namespace=NS)

    def close(self) -> None:
        if self.sio.connected:
            self.sio.disconnect()


class RawSocket:
    """An Engine.IO WebSocket without a Socket.IO client: for frames no client sends."""

    def __init__(self, server: Server, connect_namespace: bool = True) -> None:
        import websocket

        self.ws = websocket.create_connection(
            f"ws://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket", timeout=WAIT
        )
        assert self.ws.recv().startswith("0{")
        if connect_namespace:
            self.ws.send(f"40{NS},")
            self.recv_until(lambda text: text.startswith(f"40{NS},"))

    def send(self, text: str) -> None:
        self.ws.send(text)

    def send_raw(self, data: bytes) -> None:
        self.ws.sock.sendall(data)

    def send_binary(self, data: bytes) -> None:
        self.ws.send_binary(data)

    def recv_until(self, predicate: Callable[[str], bool]) -> str:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            text = self.ws.recv()
            if text == "2":
                self.ws.send("3")  # answer the server's heartbeat
                continue
            if predicate(text):
                return str(text)
        raise TimeoutError("no matching frame")

    def event(self, name: str) -> Any:
        import json

        prefix = f'42{NS},["{name}"'
        text = self.recv_until(lambda t: t.startswith(prefix))
        return json.loads(text[len(f"42{NS},") :])[1]

    def until_closed(self) -> list[str]:
        """Every text frame until the server ends the connection (heartbeats left out)."""
        import websocket

        frames: list[str] = []
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                text = self.ws.recv()
            except (websocket.WebSocketConnectionClosedException, ConnectionError):
                return frames
            if not text:  # the close frame
                return frames
            if text != "2":
                frames.append(str(text))
        raise TimeoutError("the server did not close the connection")

    def close_frame(self) -> tuple[int, str]:
        """Read until the server's close frame; returns (code, reason)."""
        import websocket

        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            frame = self.ws.recv_frame()  # raw: no automatic close reply
            if frame.opcode == websocket.ABNF.OPCODE_CLOSE:
                data = frame.data
                return int.from_bytes(data[:2], "big"), data[2:].decode(errors="replace")
        raise TimeoutError("no close frame")

    def close(self) -> None:
        try:
            self.ws.close(timeout=1)
        except Exception:  # noqa: BLE001 - the server may have closed it already
            pass
        finally:
            self.ws.shutdown()
