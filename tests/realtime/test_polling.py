"""Long-polling clients: what the official socket.io-client sends in one POST is taken
whole, however many packets it holds, and a body that cannot be decoded is refused
with an error the client sees."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from chainpulse.devnet import ROOT, wait_until
from tests.harness.realtime import NS, WAIT, Server

StartServer = Callable[..., Server]

# A page that subscribes to its tokens as soon as it is connected, over long-polling:
# socket.io-client sends every emit queued meanwhile in one POST.
POLLING_CLIENT = r"""
const { io } = require(process.argv[2]);
const [url, count] = [process.argv[3], Number(process.argv[4])];
const socket = io(url + "/realtime", { transports: ["polling"], reconnection: false });
const result = { ok: 0, refused: 0, exceptions: 0, pong: false, disconnect: null };
const done = () => { process.stdout.write(JSON.stringify(result) + "\n"); process.exit(0); };
socket.on("exception", () => { result.exceptions += 1; });
socket.on("disconnect", (reason) => { result.disconnect = reason; });
socket.on("connected", () => {
  let answered = 0;
  const finish = () => {
    socket.emit("ping");
    socket.once("pong", () => { result.pong = true; done(); });
    setTimeout(done, 5000);
  };
  const timer = setTimeout(finish, 2000);  // refusals past a half-full queue get no ack
  for (let i = 0; i < count; i++) {
    socket.emit("subscribe", { channel: `price:T${i}` }, (ack) => {
      if (ack.success) result.ok += 1; else result.refused += 1;
      if (++answered === count) { clearTimeout(timer); finish(); }
    });
  }
});
setTimeout(done, 20000);
"""


def run_polling_client(server: Server, tmp_path: Path, count: int) -> dict[str, Any]:
    script = tmp_path / "polling.js"
    script.write_text(POLLING_CLIENT)
    client = str(ROOT / "node_modules/socket.io-client")
    done = subprocess.run(
        ["node", str(script), client, server.url, str(count)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_polling_page_subscribing_to_forty_tokens_at_once_gets_forty_acks(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = start_server()
    result = run_polling_client(server, tmp_path, 40)
    assert result == {"ok": 40, "refused": 0, "exceptions": 0, "pong": True, "disconnect": None}
    assert "Too many packets" not in server.log()


@pytest.mark.parametrize("count", [800])
def test_a_polling_flood_past_the_rate_limit_stays_connected(
    start_server: StartServer, tmp_path: Path, count: int
) -> None:
    server = start_server(RATE_LIMIT="100", MAX_ROOMS="1000")
    result = run_polling_client(server, tmp_path, count)
    assert result["ok"] == 100
    assert 0 < result["refused"] < count - 100  # answered while the queue has room
    assert result["disconnect"] is None  # not dropped as a slow consumer
    metrics = server.get("/metrics").text
    assert 'chainpulse_realtime_refusals_total{reason="rate limit, unanswered"}' in metrics


def test_an_undecodable_polling_body_is_refused_not_dropped(start_server: StartServer) -> None:
    server = start_server()
    base = f"{server.url}/socket.io/?EIO=4&transport=polling"
    opened = requests.get(base, timeout=10)
    sid = json.loads(opened.text[1:])["sid"]
    session = f"{base}&sid={sid}"
    assert requests.post(session, data=f"40{NS},", timeout=10).status_code == 200
    refused = requests.post(session, data=b"\xff\xfe not utf-8", timeout=10)
    assert refused.status_code == 400
    assert requests.get(session, timeout=10).status_code == 400  # the session is over
    assert "Traceback" not in server.log()


def test_an_oversized_polling_post_is_answered_and_holds_nothing(
    start_server: StartServer,
) -> None:
    server = start_server(MAX_MESSAGE_BYTES="1024")  # POSTs over 4 KB are refused
    assert server.process is not None
    fds = Path(f"/proc/{server.process.pid}/fd")
    base = f"{server.url}/socket.io/?EIO=4&transport=polling"
    requests.get(base, timeout=10)  # the server's own start-up descriptors settle
    before = len(list(fds.iterdir()))
    for _ in range(10):
        with requests.Session() as http:
            sid = json.loads(http.get(base, timeout=10).text[1:])["sid"]
            reply = http.post(f"{base}&sid={sid}", data="4" + "x" * 10_000, timeout=10)
            assert reply.status_code == 400
    # ten held requests would hold ten descriptors; allow for the database files and a
    # keep-alive socket that the server opens or closes meanwhile
    wait_until(lambda: len(list(fds.iterdir())) <= before + 3, WAIT, "the descriptors freed")
