"""`chainpulse dev` as a newcomer runs it, and the Procfile under honcho.

The dev stack is started as a subprocess in an empty folder, on free ports (it starts
its own redis-server and anvil there): a Python client gets the first `new-block` and a
chain price; `chainpulse status` in the same folder, with nothing set, reaches lag 0;
SIGINT leaves no process behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from chainpulse.devnet import free_port, wait_until
from realtime.client import RealtimeClient
from tests.harness.environment import CHAINPULSE, ROOT, service_env
from tests.harness.processes import descendants

WAIT = 60


@pytest.fixture
def dev(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, str], Path]]:
    """`chainpulse dev` (with the arguments of the test's `dev_args` marker)."""
    ports = {
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "ETH_RPC_URL": f"http://127.0.0.1:{free_port()}",
        "PORT": str(free_port()),
        "WORKER_METRICS_PORT": str(free_port()),
        "FOLLOWER_METRICS_PORT": str(free_port()),
    }
    marker = request.node.get_closest_marker("dev_args")
    args = list(marker.args) if marker else []
    log = (tmp_path / "dev.log").open("wb")
    process = subprocess.Popen(
        [CHAINPULSE, "dev", *args], cwd=tmp_path, env=service_env(**ports), stdout=log,
        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        yield process, ports, tmp_path
    finally:
        if process.poll() is None:
            # its children first: killed, it leaves honcho (a session of its own) and
            # the stack to init, and they would no longer be found below it
            tree = descendants(process.pid)
            os.killpg(process.pid, signal.SIGKILL)
            for pid in tree:
                with_suppress_kill(pid)
            process.wait()
        log.close()


def with_suppress_kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_dev_runs_the_stack_and_other_commands_see_it(
    dev: tuple[subprocess.Popen[bytes], dict[str, str], Path],
) -> None:
    process, ports, folder = dev
    url = f"http://127.0.0.1:{ports['PORT']}"

    def up() -> bool:
        assert process.poll() is None, (folder / "dev.log").read_text()[-3000:]
        try:
            return requests.get(url + "/readyz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    wait_until(up, WAIT, "the dev stack ready")
    blocks: list[Any] = []
    prices: list[Any] = []
    got = threading.Event()

    def price(data: Any) -> None:
        prices.append(data)
        got.set()

    client = RealtimeClient(url, on_new_block=blocks.append, on_price_update=price)
    client.connect()
    try:
        client.subscribe_to_prices(["WETH", "UNI", "ETH", "UNI-USD"])
        wait_until(lambda: blocks, WAIT, "a new-block")
        # chain prices moved by the activity generator (not snapshots), from every source:
        # the real V2 pair, the real V3 pool, the feed through its proxy, and derived
        sources = {"weth-usdc-v2", "uni-weth-v3", "eth-usd-feed", "uni-usd"}

        def live() -> set[str]:
            return {p["source"] for p in list(prices) if not p.get("snapshot")}

        wait_until(lambda: live() == sources, WAIT, "a live price from every source")
    finally:
        client.disconnect()
    assert all(p["blockNumber"] is not None and p["priceExact"] for p in prices)

    # another terminal in the same folder, nothing set
    lags: list[Any] = []

    def caught_up() -> bool:
        done = subprocess.run(
            [CHAINPULSE, "status", "--json"], cwd=folder, env=service_env(),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        lags.append(report["lag"])
        return report["lag"] == 0

    wait_until(caught_up, WAIT, "lag 0 in chainpulse status", interval=1)
    done = subprocess.run(
        [CHAINPULSE, "token", "--sub", "alice"], cwd=folder, env=service_env(),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout.count(".") == 2
    assert "using the running dev stack's settings" in done.stderr

    tree = descendants(process.pid)
    assert len(tree) > 5  # redis, anvil, honcho, web, worker and its children, follower
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the terminal's process group
    assert process.wait(60) == 0, (folder / "dev.log").read_text()[-3000:]
    wait_until(lambda: not any(alive(pid) for pid in tree), 20, "every dev process gone")
    assert not (folder / ".dev" / "settings.env").exists()


def test_the_procfile_under_honcho_answers_readyz(tmp_path: Path, redis_url: str) -> None:
    from chainpulse.devnet import Anvil

    port = free_port()
    with Anvil() as anvil:
        env = service_env(
            DATABASE_URL=f"sqlite:///{tmp_path / 'chainpulse.db'}",
            REDIS_URL=redis_url,
            ETH_RPC_URL=anvil.url,
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        )
        honcho = [sys.executable, "-m", "honcho", "--env", os.devnull, "-f", str(ROOT / "Procfile")]
        release = subprocess.run([*honcho, "start", "release"], cwd=tmp_path, env=env,
                                 capture_output=True, timeout=120)  # fmt: skip
        assert release.returncode == 0, release.stdout.decode()[-2000:]
        log = (tmp_path / "honcho.log").open("wb")
        started = subprocess.Popen(
            [*honcho, "start", "--port", str(port), "web", "worker", "follower"], cwd=tmp_path,
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:

            def ready() -> bool:
                assert started.poll() is None, (tmp_path / "honcho.log").read_text()[-3000:]
                try:
                    answer = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                except requests.RequestException:
                    return False
                return answer.status_code == 200

            wait_until(ready, WAIT, "/readyz of the Procfile's web process")
        finally:
            tree = descendants(started.pid)
            with contextlib.suppress(ProcessLookupError):  # honcho may have ended already
                os.killpg(started.pid, signal.SIGTERM)
            started.wait(30)
            for pid in tree:
                with_suppress_kill(pid)
            log.close()


def test_dev_pointed_at_another_node_indexes_it_as_it_is(tmp_path: Path) -> None:
    from chainpulse.devnet import Anvil

    with Anvil() as anvil:
        anvil.mine(3)
        env = service_env(
            REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
            ETH_RPC_URL=anvil.url,
            PORT=str(free_port()),
        )
        with (tmp_path / "dev.log").open("wb") as log:
            process = subprocess.Popen(
                [CHAINPULSE, "dev"], cwd=tmp_path, env=env, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{env['PORT']}"

            def indexed() -> bool:
                assert process.poll() is None, (tmp_path / "dev.log").read_text()[-3000:]
                try:
                    blocks = requests.get(url + "/api/blocks?limit=1", timeout=2).json()
                except (requests.RequestException, ValueError):
                    return False
                return bool(blocks) and blocks[0]["number"] == anvil.head()

            wait_until(indexed, WAIT, "the other node's head indexed")
            head = anvil.head()
            output = (tmp_path / "dev.log").read_text()
            assert f"indexing the node at {anvil.url} (no anvil, no activity generator)" in output
            assert not (tmp_path / ".dev" / "market.json").exists()
            assert "price sources  none" in output
            threading.Event().wait(3)
            assert anvil.head() == head  # nothing generated activity on it
        finally:
            tree = descendants(process.pid)
            if process.poll() is None:  # (it may have exited: its log says why, above)
                os.killpg(process.pid, signal.SIGINT)
            process.wait(60)
            for pid in tree:
                with_suppress_kill(pid)


@pytest.mark.dev_args("--chains", "2")
def test_dev_with_two_chains_indexes_and_prices_both(
    dev: tuple[subprocess.Popen[bytes], dict[str, str], Path],
) -> None:
    """Two anvils (31337, 31338), a market on each, both in `.dev/chains.toml`; the
    other commands in the folder see both chains."""
    process, ports, folder = dev
    url = f"http://127.0.0.1:{ports['PORT']}"

    def both_indexed() -> bool:
        assert process.poll() is None, (folder / "dev.log").read_text()[-3000:]
        try:
            listed = requests.get(url + "/api/chains", timeout=2).json()
        except (requests.RequestException, ValueError):
            return False
        return [c["chainId"] for c in listed] == [31337, 31338] and all(
            c["indexedBlock"] for c in listed
        )

    wait_until(both_indexed, WAIT, "both chains indexed")
    prices = {}

    def both_priced() -> bool:
        prices.update({p["token"]: p for p in requests.get(url + "/api/prices", timeout=2).json()})
        return "WETH" in prices and "WETH.2" in prices

    wait_until(both_priced, WAIT, "a price from each chain's market")
    assert (prices["WETH"]["chainId"], prices["WETH.2"]["chainId"]) == (31337, 31338)
    done = subprocess.run(
        [CHAINPULSE, "status", "--json"], cwd=folder, env=service_env(),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    report = json.loads(done.stdout)
    assert [(c["name"], c["chainId"]) for c in report["chains"]] == [
        ("anvil", 31337),
        ("anvil-2", 31338),
    ], done.stderr

    tree = descendants(process.pid)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: both anvils go with the rest
    assert process.wait(60) == 0, (folder / "dev.log").read_text()[-3000:]
    wait_until(lambda: not any(alive(pid) for pid in tree), 20, "every dev process gone")


def test_dev_moves_a_metrics_port_that_is_taken() -> None:
    from chainpulse.dev import metrics_port

    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        other = metrics_port(port)
        assert other != port
    assert metrics_port(other) == other  # free: kept
