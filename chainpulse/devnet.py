"""Local stand-ins for production services: a throwaway `redis-server`, an anvil node,
and chain activity (transfers, deployments, logs, reverts).

`chainpulse dev`, the tests and the benchmarks all start their services through here,
so that each starts the same way everywhere.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import requests
from eth_abi import encode
from eth_utils import keccak

ROOT = Path(__file__).resolve().parent.parent

# A contract that logs `Ping(bytes)` with its calldata, and reverts when called with none.
PINGER_TOPIC = "0x" + keccak(text="Ping(bytes)").hex()
_RUNTIME = (
    "363d3d37"  # calldatacopy(0, 0, calldatasize)   (3d = returndatasize = 0 before any call)
    "3615602e57"  # if iszero(calldatasize) jump to the revert at 0x2e
    "7f"
    + PINGER_TOPIC[2:]  # push the topic
    + "363d"
    "a1"
    "00"  # log1(0, calldatasize, topic); stop
    "5b"
    "3d3d"
    "fd"  # jumpdest; revert(0, 0)
)
PINGER_INIT = (
    "0x60"
    + f"{len(_RUNTIME) // 2:02x}"
    + "600c60003960"
    + f"{len(_RUNTIME) // 2:02x}"
    + "6000f3"
    + _RUNTIME
)


ATTEMPTS = 5  # ports tried when another process takes the one found free


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll `predicate` until it is true; raise TimeoutError naming `what` after `timeout` s,
    caused by the last exception the predicate raised (an assertion's message shows)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
            last = None  # a plain "not yet": an earlier error is no longer the reason
        except Exception as error:  # noqa: BLE001 - not yet; the last one is reported below
            last = error
        time.sleep(interval)
    raise TimeoutError(f"{what} did not happen within {timeout:.0f} s") from last


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


class RedisServer:
    """A `redis-server` with no persistence on a free loopback port."""

    def __init__(self, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (make deps installs it)")
        self._choose_port = port is None
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.mkdtemp(prefix="chainpulse-redis-")
        self._binary = binary
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        """Start it, and make sure the server answering on the port is this one: a port
        found free can be taken by another process before the server binds it (then
        another port is tried, when this one chose it)."""
        for _ in range(ATTEMPTS):
            self._launch()
            assert self.process is not None
            wait_until(
                lambda: self.process.poll() is not None or self._pid() is not None,
                10,
                f"redis-server on port {self.port}",
            )
            if self._pid() == self.process.pid:
                return self
            self.stop()  # it could not bind the port: another server answers there
            if not self._choose_port:
                raise RuntimeError(f"port {self.port} is taken by another process")
            self.port = free_port()
            self.url = f"redis://127.0.0.1:{self.port}/0"
        raise RuntimeError(f"redis-server did not start on a free port in {ATTEMPTS} tries")

    def _pid(self) -> int | None:
        """The process id of the redis-server answering on the port, if one does."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"INFO server\r\n")
                data = b""
                while b"process_id:" not in data or not data.endswith(b"\r\n"):
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    data += chunk
        except OSError:
            return None
        for line in data.decode(errors="replace").splitlines():
            if line.startswith("process_id:"):
                return int(line.split(":", 1)[1])
        return None

    def _launch(self) -> None:
        args = [
            self._binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self._dir,
            "--maxclients",
            "20000",
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _group_states(group: int) -> list[str]:
    """The state letters (R, S, T...) of the processes in process group `group`."""
    states = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) == group:
                    states.append(fields[0])
    return states


def anvil_binary() -> str:
    """The anvil executable: the platform package's binary that `npm ci` installed
    (not the npm launcher script, whose child would outlive signals sent to it)."""
    packages = sorted((ROOT / "node_modules" / "@foundry-rs").glob("anvil-*/bin/anvil"))
    for candidate in packages:
        if os.access(candidate, os.X_OK):
            return str(candidate)
    local = ROOT / "node_modules" / ".bin" / "anvil"
    if local.exists():
        return str(local)
    found = shutil.which("anvil")
    if found is None:
        raise RuntimeError("anvil is not installed: run `npm ci` (make deps does)")
    return found


class Anvil:
    """A Foundry anvil node on a free loopback port.

    `block_time` None means automine (a block per transaction, or per `mine()`).
    """

    def __init__(
        self,
        port: int | None = None,
        chain_id: int = 31337,
        block_time: float | None = None,
        automine: bool = True,
        load_state: str | None = None,
        dump_state: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self._choose_port = port is None
        self._use_port(port or free_port())
        self.mines_itself = automine or block_time is not None  # not only on `mine()`
        self.chain_id = chain_id
        # a fresh chain's first account holds this many ether: how `start` knows the
        # node answering on its port is its own
        # (where it chose the port: a caller's port, or a loaded state, keeps the default)
        fresh = self._choose_port and not load_state
        self._balance = 10_000 + random.randrange(1, 1_000_000) if fresh else None
        self._args = [
            anvil_binary(),
            "--host",
            "127.0.0.1",
            "--chain-id",
            str(chain_id),
            "--silent",
            *extra_args,
        ]
        if block_time is not None:
            self._args += ["--block-time", str(block_time)]
        elif not automine:
            self._args += ["--no-mining"]
        if self._balance is not None:
            self._args += ["--balance", str(self._balance)]
        if load_state:
            self._args += ["--load-state", load_state]
        if dump_state:
            self._args += ["--dump-state", dump_state]
        self.process: subprocess.Popen[bytes] | None = None
        self._session = requests.Session()
        self._ids = itertools.count(1)

    def _use_port(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}"

    def start(self) -> Anvil:
        """Start it, and make sure the node answering on the port is this one: a port
        found free can be taken by another process before anvil binds it (then another
        port is tried, when this one chose it)."""
        for _ in range(ATTEMPTS):
            process = self.process = subprocess.Popen(
                [*self._args, "--port", str(self.port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            wait_until(self._up_or_gone, 30, f"anvil on port {self.port}")
            if process.poll() is None and self._is_ours():
                return self
            err = (
                process.stderr.read().decode()
                if process.poll() is not None and process.stderr
                else ""
            )
            self.stop()
            if not self._choose_port:
                raise RuntimeError(f"anvil did not start on port {self.port}: {err.strip()}")
            self._use_port(free_port())
        raise RuntimeError(f"anvil did not start on a free port in {ATTEMPTS} tries")

    def _up_or_gone(self) -> bool:
        return self.process is None or self.process.poll() is not None or self._answers()

    def _answers(self) -> bool:
        return self.call("eth_chainId") is not None

    def _is_ours(self) -> bool:
        """Whether the node on the port is this process's (a fresh chain holding the
        balance this one was started with)."""
        if self._balance is None:
            return True  # the caller's port, or a loaded state
        first = self.call("eth_accounts")[0]
        return bool(int(self.call("eth_getBalance", first, "latest"), 16) == self._balance * 10**18)

    def stop(self) -> None:
        process = self.process
        if process and process.poll() is None:
            self._signal(signal.SIGCONT)  # in case it was paused
            self._signal(signal.SIGINT)  # anvil dumps its state (if asked) on SIGINT
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                process.wait()
        if process and process.stderr:
            process.stderr.close()
        self.process = None

    def pause(self) -> None:
        """Freeze the node (SIGSTOP) until `resume`: connections hang as with an
        unresponsive provider. Returns once every process of the node has stopped."""
        self._signal(signal.SIGSTOP)
        assert self.process is not None
        group = self.process.pid
        wait_until(lambda: all(state == "T" for state in _group_states(group)), 10, "anvil stop")

    def _signal(self, sig: int) -> None:
        """Signal the node's whole process group (a launcher and its child alike)."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """The node frozen (`pause`) for the duration of the block."""
        self.pause()
        try:
            yield
        finally:
            self.resume()

    def __enter__(self) -> Anvil:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # JSON-RPC -------------------------------------------------------------------------

    def call(self, method: str, *params: Any) -> Any:
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}
        reply = self._session.post(self.url, json=body, timeout=30).json()
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        body = [
            {"jsonrpc": "2.0", "id": i, "method": m, "params": list(p)}
            for i, (m, p) in enumerate(calls)
        ]
        replies = sorted(
            self._session.post(self.url, json=body, timeout=120).json(), key=lambda r: r["id"]
        )
        errors = [r["error"] for r in replies if "error" in r]
        if errors:
            raise RuntimeError(f"batch: {errors[0]}")
        return [r["result"] for r in replies]

    def head(self) -> int:
        return int(self.call("eth_blockNumber"), 16)

    def block(self, number: int | str, full: bool = False) -> dict[str, Any]:
        tag = hex(number) if isinstance(number, int) else number
        return dict(self.call("eth_getBlockByNumber", tag, full))

    def mine(self, blocks: int = 1) -> None:
        self.call("anvil_mine", hex(blocks))

    def accounts(self) -> list[str]:
        return [a.lower() for a in self.call("eth_accounts")]


class Activity:
    """Chain activity on an anvil node: transfers, deployments, logs and reverts."""

    def __init__(self, anvil: Anvil) -> None:
        self.anvil = anvil
        self.accounts = anvil.accounts()
        self.pinger: str | None = None
        self._rounds = itertools.count()

    def deploy_pinger(self) -> str:
        """Deploy the logging contract in a block of its own; returns its address."""
        automine = bool(self.anvil.call("anvil_getAutomine"))
        self.anvil.call("evm_setAutomine", False)
        try:
            tx = self.anvil.call(
                "eth_sendTransaction",
                {"from": self.accounts[0], "data": PINGER_INIT, "gas": hex(200_000)},
            )
            self.anvil.mine()  # anvil_mine returns once the block is mined
        finally:
            self.anvil.call("evm_setAutomine", automine)
        receipt = self.anvil.call("eth_getTransactionReceipt", tx)
        self.pinger = str(receipt["contractAddress"]).lower()
        return self.pinger

    def transactions(
        self, count: int, log_share: float = 0.5, reverts: int = 0, deploys: int = 0
    ) -> list[tuple[str, Sequence[Any]]]:
        """`count` eth_sendTransaction calls: about `log_share` of them emit a log."""
        pinger = self.pinger or self.deploy_pinger()
        calls: list[tuple[str, Sequence[Any]]] = []
        n = next(self._rounds)
        for i in range(count):
            sender = self.accounts[(n + i) % len(self.accounts)]
            tx: dict[str, str]
            if i < deploys:
                tx = {"from": sender, "data": PINGER_INIT, "gas": hex(200_000)}
            elif i < deploys + reverts:
                tx = {"from": sender, "to": pinger, "gas": hex(60_000)}
            elif int((i + 1) * log_share) > int(i * log_share):
                # the log's data is the calldata: ABI-encoded, it decodes as Ping(bytes)
                payload = encode(["bytes"], [bytes.fromhex(f"{n:016x}{i:016x}")]).hex()
                tx = {"from": sender, "to": pinger, "data": "0x" + payload, "gas": hex(60_000)}
            else:
                to = self.accounts[(n + i + 1) % len(self.accounts)]
                tx = {"from": sender, "to": to, "value": hex(10**15 + i), "gas": hex(21_000)}
            calls.append(("eth_sendTransaction", [tx]))
        return calls

    def block(
        self, count: int = 5, log_share: float = 0.5, reverts: int = 1, deploys: int = 1
    ) -> int:
        """Send `count` transactions and mine them into one block; returns its number."""
        calls = self.transactions(count, log_share, reverts, deploys)  # may deploy first
        automine = bool(self.anvil.call("anvil_getAutomine"))
        self.anvil.call("evm_setAutomine", False)
        try:
            self.anvil.batch(calls)
            self.anvil.mine()
        finally:
            self.anvil.call("evm_setAutomine", automine)
        return self.anvil.head()
