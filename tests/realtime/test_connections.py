"""Per-connection state is freed; slow consumers are dropped; the JavaScript client."""

from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest
import requests

from chainpulse.devnet import ROOT, wait_until
from chainpulse.settings import Settings
from indexer.events import PriceUpdated
from realtime.server import build
from tests.harness.events import Stream, block_event, price_event
from tests.harness.realtime import SECRET, WAIT, Client, RawSocket, Server
from tests.harness.seeded import make_database

StartServer = Callable[..., Server]
Connect = Callable[..., Client]
NS = "/realtime"


def test_state_does_not_grow_over_10000_connect_disconnect_cycles(tmp_path: Path) -> None:
    settings = Settings(
        database_url=make_database(tmp_path / "db.sqlite"), jwt_secret=SECRET, rate_limit=5
    )
    rt = build(settings, async_mode="threading", redis=False)
    rt.fanout.sio.async_handlers = False
    rt.feed.prices["ETH"] = PriceUpdated("ETH", "1", 1, 1, "test", 1)
    token = jwt.encode({"sub": "u", "exp": int(time.time()) + 600}, SECRET, algorithm="HS256")
    sio = rt.fanout.sio
    for i in range(10_000):
        eio_sid = f"eio{i}"
        sio._handle_eio_connect(eio_sid, {"REMOTE_ADDR": "127.0.0.1"})
        auth = {"token": token} if i % 100 == 0 else {"lastBlock": 5} if i % 7 == 0 else {}
        sio._handle_eio_message(eio_sid, f"0{NS},{json.dumps(auth)}")
        sio._handle_eio_message(eio_sid, f'2{NS},["subscribe",{{"channel":"price:ETH"}}]')
        for _ in range(6):  # over the rate limit
            sio._handle_eio_message(eio_sid, f'2{NS},["ping"]')
        sio._handle_eio_disconnect(eio_sid, "transport close")
    gateway = rt.gateway
    assert gateway.clients == {}
    assert len(gateway.limiter) == 0
    assert gateway._resume == {} and rt.feed.waiting == {}
    assert sio.environ == {}
    assert not any(sio.manager.rooms.get(NS, {}).values())
    assert sio.manager.tracked_sids() == 0
    assert rt.metrics.connected._value.get() == 0


def test_real_sockets_leave_no_state_behind(start_server: StartServer) -> None:
    server = start_server()
    for _ in range(25):
        client = Client(server).connect()
        client.emit("ping")
        client.close()

    def idle() -> bool:
        text = server.get("/metrics").text
        return (
            all(
                f'chainpulse_realtime_tracked_state{{kind="{kind}"}} 0.0' in text
                for kind in (
                    "clients",
                    "rate limiter",
                    "environ",
                    "engine.io sockets",
                    "room index",
                )
            )
            and "chainpulse_realtime_connected_clients 0.0" in text
        )

    wait_until(idle, WAIT * 2, "per-connection state to be freed")


def test_slow_consumer_is_dropped_and_others_are_unaffected(
    start_server: StartServer, clients: Connect, stream: Stream
) -> None:
    server = start_server(OUTBOUND_QUEUE_MAX="20")
    fast = clients(server)
    http = requests.Session()
    base = f"{server.url}/socket.io/?EIO=4&transport=polling"
    opened = http.get(base, timeout=WAIT).text
    sid = json.loads(opened[1:])["sid"]
    assert http.post(f"{base}&sid={sid}", data=f"40{NS},", timeout=WAIT).text.lower() == "ok"
    assert '"connected"' in http.get(f"{base}&sid={sid}", timeout=WAIT).text
    # the polling client stops polling: its queue fills with new-blocks
    stream.append(*(block_event(n) for n in range(1, 41)))
    fast.wait_for("new-block", 40)
    wait_until(
        lambda: 'refusals_total{reason="slow consumer"} 1.0' in server.get("/metrics").text,
        WAIT,
        "the slow consumer to be dropped",
    )
    last = http.get(f"{base}&sid={sid}", timeout=WAIT)
    if last.status_code == 200:  # unless the server already forgot the session
        assert "Slow consumer: outbound queue full" in last.text
        assert '"new-block"' not in last.text  # the backlog was discarded
    assert [b["number"] for b in fast.of("new-block")] == list(range(1, 41))
    http.close()


def test_websocket_readers_that_stop_reading_are_dropped_and_the_others_get_everything(
    start_server: StartServer, clients: Connect, stream: Stream
) -> None:
    """Several WebSocket clients stop reading while ~6 MB of reorgs are pushed: once the
    kernel's buffers and then their queues are full, each is sent `exception` "Slow
    consumer" and CLOSE after what it had been sent (its backlog discarded) and its
    connection is closed; a reading client gets every reorg, in order."""
    from tests.harness.events import reorg_event

    server = start_server(OUTBOUND_QUEUE_MAX="50", PING_TIMEOUT="30")
    fast = clients(server)
    slow = [RawSocket(server) for _ in range(5)]
    for raw in slow:
        raw.event("connected")
    count = 600
    stream.append(*(reorg_event(10_000 + i * 100, 60) for i in range(count)))
    fast.wait_for("reorg", count, timeout=WAIT * 4)
    ancestors = [r["commonAncestor"]["number"] for r in fast.of("reorg")]
    assert ancestors == [10_000 + i * 100 for i in range(count)]
    metrics = server.get("/metrics").text
    assert 'refusals_total{reason="slow consumer"} 5.0' in metrics
    assert "chainpulse_realtime_connected_clients 1.0" in metrics
    for raw in slow:
        frames = raw.until_closed()
        raw.close()
        assert frames[-1] == "1", frames[-3:]  # Engine.IO CLOSE
        assert frames[-2].startswith(f'42{NS},["exception"'), frames[-3:]
        assert "Slow consumer: outbound queue full" in frames[-2]
        got = [
            json.loads(f[len(f"42{NS},") :])[1]["commonAncestor"]["number"]
            for f in frames[:-2]
            if f.startswith(f'42{NS},["reorg"')
        ]
        assert got == [10_000 + i * 100 for i in range(len(got))]  # a prefix, in order
        assert 0 < len(got) < count
    assert fast.sio.connected


def _frame(text: str) -> bytes:
    import websocket

    return bytes(websocket.ABNF.create_frame(text, websocket.ABNF.OPCODE_TEXT).format())


def test_websocket_frames_are_read_however_they_arrive(start_server: StartServer) -> None:
    """The server reads a WebSocket when the hub says it is readable: frames that arrive
    together are all handled, a frame that arrives a few bytes at a time is handled once
    whole, and a client that stops halfway through a frame is closed once the heartbeat
    would have given up on it, without holding anyone else up."""
    server = start_server(PING_INTERVAL="0.5", PING_TIMEOUT="1")
    together = RawSocket(server)
    together.send_raw(b"".join(_frame(f'42{NS},{i}["ping"]') for i in range(1, 6)))
    acks = [together.recv_until(lambda t: t.startswith(f"43{NS},")) for _ in range(5)]
    assert [int(a[len(f"43{NS},") :].split("[")[0]) for a in acks] == [1, 2, 3, 4, 5]

    trickle = RawSocket(server)
    data = _frame(f'42{NS},7["ping"]')
    for at in range(0, len(data), 3):
        trickle.send_raw(data[at : at + 3])
        time.sleep(0.02)
    assert trickle.recv_until(lambda t: t.startswith(f"43{NS},7"))

    stalled = RawSocket(server)
    stalled.send_raw(_frame(f'42{NS},8["ping"]')[:6])
    together.send_raw(_frame(f'42{NS},9["ping"]'))  # others are served meanwhile
    assert together.recv_until(lambda t: t.startswith(f"43{NS},9"))
    started = time.monotonic()
    stalled.until_closed()
    assert time.monotonic() - started < 10
    for raw in (together, trickle, stalled):
        raw.close()
    wait_until(
        lambda: "chainpulse_realtime_connected_clients 0.0" in server.get("/metrics").text,
        WAIT,
        "every session to end",
    )


NODE_CLIENT = r"""
// Modelled on the reference's client example (socket.io-client, reconnection on).
const { io } = require(process.argv[2]);
const url = process.argv[3];
const token = process.argv[4];
const out = (event, data) => process.stdout.write(JSON.stringify({ event, data }) + "\n");

class RealtimeClient {
  connect(token) {
    this.socket = io(url + "/realtime", {
      auth: { token },
      reconnection: true,
      reconnectionAttempts: 5,
      reconnectionDelay: 1000,
    });
    this.socket.on("connect", () => out("connect", this.socket.id));
    this.socket.on("disconnect", (reason) => out("disconnect", reason));
    this.socket.on("connect_error", (err) => out("connect_error", err.message));
    this.socket.on("connected", (data) => out("connected", data));
    this.socket.on("new-block", (data) => out("new-block", data));
    this.socket.on("pong", (data) => out("pong", data));
    this.socket.on("exception", (data) => out("exception", data));
    this.socket.on("private-message", (data) => out("private-message", data));
  }
  subscribeToPrices(tokens) {
    for (const token of tokens) {
      this.socket.emit("subscribe", { channel: `price:${token}` }, (ack) => out("ack", ack));
    }
    this.socket.on("price-update", (data) => out("price-update", data));
  }
  disconnect() { this.socket.disconnect(); }
}

const client = new RealtimeClient();
client.connect(token);
client.socket.once("connected", () => {
  client.subscribeToPrices(["ETH"]);
  client.socket.emit("ping");
  client.socket.emit("subscribe", "not an object");
  const note = { to: "alice", message: "from node" };
  client.socket.emit("private-message", note, (ack) => out("pm-ack", ack));
});
process.stdin.on("data", () => { client.disconnect(); out("bye", null); process.exit(0); });
"""


def test_javascript_socket_io_client(
    start_server: StartServer, clients: Connect, stream: Stream, tmp_path: Path
) -> None:
    server = start_server()
    script = tmp_path / "client.js"
    script.write_text(NODE_CLIENT)
    alice_token = jwt.encode(
        {"sub": "alice", "exp": int(time.time()) + 600}, SECRET, algorithm="HS256"
    )
    alice = clients(server, auth={"token": alice_token})
    node_token = jwt.encode(
        {"sub": "node", "exp": int(time.time()) + 600}, SECRET, algorithm="HS256"
    )
    proc = subprocess.Popen(
        ["node", str(script), str(ROOT / "node_modules/socket.io-client"), server.url, node_token],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[dict] = queue.Queue()
    seen: list[dict] = []
    threading.Thread(
        target=lambda: [lines.put(json.loads(line)) for line in proc.stdout or []], daemon=True
    ).start()

    def until(event: str) -> dict:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            for item in seen:
                if item["event"] == event:
                    seen.remove(item)
                    return item["data"]
            with contextlib.suppress(queue.Empty):
                seen.append(lines.get(timeout=0.1))
        raise TimeoutError(f"node client: no {event}; saw {seen}")

    try:
        until("connect")
        assert set(until("connected")) == {"clientId", "serverTime"}
        assert until("ack") == {"success": True, "channel": "price:ETH"}
        assert set(until("pong")) == {"timestamp"}
        assert until("exception")["message"].startswith("Invalid payload")
        assert until("pm-ack") == {"success": True}
        assert alice.wait_for("private-message")[0] == {
            **alice.of("private-message")[0],
            "from": "node",
            "message": "from node",
        }
        stream.append(block_event(7), price_event("ETH", "3000.25", 7))
        block = until("new-block")
        assert block["number"] == 7 and block["parentHash"] == "0x" + "00" + f"{6:062x}"
        price = until("price-update")
        assert price["price"] == 3000.25 and price["priceExact"] == "3000.25"
        assert "snapshot" not in price
        assert proc.stdin is not None
        proc.stdin.write("done\n")
        proc.stdin.flush()
        until("bye")
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout:
            proc.stdout.close()
        if proc.stdin:
            proc.stdin.close()


def test_heartbeat_keeps_live_clients_and_drops_dead_ones(
    start_server: StartServer, clients: Connect, stream: Stream
) -> None:
    server = start_server(PING_INTERVAL="0.3", PING_TIMEOUT="0.5")
    live = clients(server)
    dead = RawSocket(server)  # never answers the server's pings
    dead.event("connected")

    def only_live_client() -> bool:
        return "chainpulse_realtime_connected_clients 1.0" in server.get("/metrics").text

    wait_until(only_live_client, WAIT, "the dead client to be dropped")
    time.sleep(1.0)  # several ping cycles: the live client must survive them
    stream.append(block_event(1))
    live.wait_for("new-block")
    assert live.sio.connected and only_live_client()
    dead.close()


def test_frames_stay_whole_and_in_order_when_the_socket_backs_up(
    start_server: StartServer, stream: Stream
) -> None:
    from tests.harness.events import reorg_event

    server = start_server(OUTBOUND_QUEUE_MAX="100000", PING_INTERVAL="0.2", PING_TIMEOUT="30")
    raw = RawSocket(server)  # reads nothing until every reorg was pushed
    raw.event("connected")
    count = 400  # ~10 KB each: several MB, far more than the socket buffers hold
    pipe = stream.redis.pipeline()
    for i in range(count):
        event = reorg_event(10_000 + i * 100, 60)
        pipe.xadd(
            stream.key,
            {
                "type": event.type,
                "id": event.id,
                "data": json.dumps(
                    {
                        "depth": 60,
                        "commonAncestor": event.commonAncestor.__dict__,
                        "removed": [r.__dict__ for r in event.removed],
                        "added": [r.__dict__ for r in event.added],
                    }
                ),
            },
        )
    pipe.execute()
    wait_until(
        lambda: f'messages_pushed_total{{event="reorg"}} {count}.0' in server.get("/metrics").text,
        WAIT * 2,
        "every reorg to be pushed",
    )
    metrics = server.get("/metrics").text
    assert "chainpulse_realtime_partial_writes 0.0" not in metrics  # the path under test
    ancestors = [raw.event("reorg")["commonAncestor"]["number"] for _ in range(count)]
    assert ancestors == [10_000 + i * 100 for i in range(count)]
    raw.send('42/realtime,["ping"]')
    assert "timestamp" in raw.event("pong")
    raw.close()


def test_frames_sent_with_the_upgrade_from_long_polling_are_all_handled(
    start_server: StartServer,
) -> None:
    """An upgrade from long-polling reads the probe and the UPGRADE packet before the
    connection is read from the hub: frames that arrive in the same segment as the
    UPGRADE (a client flushing what it emitted meanwhile) are handled too."""
    import websocket

    server = start_server()
    http = requests.Session()
    base = f"{server.url}/socket.io/?EIO=4&transport=polling"
    sid = json.loads(http.get(base, timeout=WAIT).text[1:])["sid"]
    assert http.post(f"{base}&sid={sid}", data=f"40{NS},", timeout=WAIT).text.lower() == "ok"
    assert '"connected"' in http.get(f"{base}&sid={sid}", timeout=WAIT).text
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket&sid={sid}",
        timeout=WAIT,
    )
    ws.send("2probe")
    assert ws.recv() == "3probe"
    ws.sock.sendall(_frame("5") + _frame(f'42{NS},1["ping"]') + _frame(f'42{NS},2["ping"]'))
    answers = []
    while len(answers) < 2:
        text = ws.recv()
        if text.startswith(f"43{NS},"):
            answers.append(text)
    assert [a.split("[")[0] for a in answers] == [f"43{NS},1", f"43{NS},2"]
    ws.close()
    http.close()


def test_websocket_control_frames_are_answered(start_server: StartServer) -> None:
    """A client's ping gets a pong with its payload; its close gets a close with its
    code, and the session ends."""
    import websocket

    server = start_server()
    raw = RawSocket(server)
    raw.ws.ping("are you there")
    opcode, frame = raw.ws.recv_data_frame(control_frame=True)
    while opcode != websocket.ABNF.OPCODE_PONG:  # a heartbeat may come first
        opcode, frame = raw.ws.recv_data_frame(control_frame=True)
    assert frame.data == b"are you there"
    raw.ws.send_close(1001, b"going away")
    opcode, frame = raw.ws.recv_data_frame(control_frame=True)
    while opcode != websocket.ABNF.OPCODE_CLOSE:
        opcode, frame = raw.ws.recv_data_frame(control_frame=True)
    assert int.from_bytes(frame.data[:2], "big") == 1001
    raw.ws.shutdown()
    wait_until(
        lambda: "chainpulse_realtime_connected_clients 0.0" in server.get("/metrics").text,
        WAIT,
        "the session to end",
    )


def test_a_websocket_connect_from_a_refused_origin_is_answered_400(
    start_server: StartServer,
) -> None:
    import websocket

    server = start_server(CORS_ORIGIN="https://app.example")
    url = f"ws://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket"
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(url, timeout=WAIT, origin="https://evil.example")
    assert refused.value.status_code == 400
    assert b"Not an accepted origin" in (refused.value.resp_body or b"")
    allowed = websocket.create_connection(url, timeout=WAIT, origin="https://app.example")
    assert allowed.recv().startswith("0{")
    allowed.close()


COMPRESSED_CLIENT = r"""
// socket.io-client offers permessage-deflate (as browsers do) and compresses what it
// sends above its threshold.
const { io } = require(process.argv[2]);
const out = (event, data) => process.stdout.write(JSON.stringify({ event, data }) + "\n");
const socket = io(process.argv[3] + "/realtime", {
  transports: ["websocket"],
  auth: { token: process.argv[4] },
  perMessageDeflate: { threshold: 256 },
});
socket.on("connected", () => {
  socket.emit("private-message", { to: "me", message: "x".repeat(3000) }, (ack) => out("ack", ack));
});
socket.on("private-message", (m) => out("private-message", m.message.length));
socket.on("reorg", (r) => out("reorg", r.removed.length));
process.stdin.on("data", () => { socket.disconnect(); process.exit(0); });
"""


def test_per_message_deflate_with_socket_io_client(
    start_server: StartServer, stream: Stream, tmp_path: Path
) -> None:
    """With WS_COMPRESSION on, the official client's compressed frames are inflated and
    what the server sends it (compressed above 128 bytes) reaches it whole."""
    from tests.harness.events import reorg_event

    server = start_server(WS_COMPRESSION="true")
    script = tmp_path / "compressed.js"
    script.write_text(COMPRESSED_CLIENT)
    token = jwt.encode({"sub": "me", "exp": int(time.time()) + 600}, SECRET, algorithm="HS256")
    proc = subprocess.Popen(
        ["node", str(script), str(ROOT / "node_modules/socket.io-client"), server.url, token],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    seen: list[dict] = []
    threading.Thread(
        target=lambda: [seen.append(json.loads(line)) for line in proc.stdout or []], daemon=True
    ).start()
    try:
        wait_until(lambda: {"event": "private-message", "data": 3000} in seen, WAIT, "the echo")
        assert {"event": "ack", "data": {"success": True}} in seen
        stream.append(reorg_event(100, 60))
        wait_until(lambda: {"event": "reorg", "data": 60} in seen, WAIT, "the reorg")
    finally:
        assert proc.stdin is not None
        proc.stdin.write("bye\n")
        proc.stdin.close()
        proc.wait(10)
        if proc.stdout:
            proc.stdout.close()
