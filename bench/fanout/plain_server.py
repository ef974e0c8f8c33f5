"""A plain python-socketio server on eventlet, fed from the Redis stream: a bench column.

This is the "plain python-socketio on eventlet" of issue 3's first-measurement table,
not chainpulse: same events as bench/fanout/baseline.js (namespace /realtime,
`connected`, `subscribe` ack, `new-block` to all, `price-update` to rooms), library
defaults otherwise. Environment: PORT, REDIS_URL, PLAIN_COMPRESSION (`1`, the eventlet
default, negotiates permessage-deflate with clients that offer it; `0` strips the offer).
"""

from __future__ import annotations

import warnings

warnings.filterwarnings("ignore", message=".*[Ee]ventlet.*", category=DeprecationWarning)

import eventlet  # noqa: E402

eventlet.monkey_patch()

import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import eventlet.wsgi  # noqa: E402
import redis  # noqa: E402
import socketio  # noqa: E402

PORT = int(os.environ.get("PORT", "3000"))
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
STREAM = os.environ.get("STREAM_KEY", "chainpulse:events")
COMPRESSION = os.environ.get("PLAIN_COMPRESSION", "1") not in ("0", "false", "no", "off")
CHANNEL = re.compile(r"^price:[A-Za-z0-9._-]{1,32}$")
NS = "/realtime"

sio = socketio.Server(
    async_mode="eventlet",
    cors_allowed_origins="*",
    ping_interval=10,
    ping_timeout=5,
    max_http_buffer_size=65_536,
)
inner = socketio.WSGIApp(sio)


def app(environ: dict[str, Any], start_response: Any) -> Any:
    if not COMPRESSION:
        # eventlet's WebSocketWSGI negotiates permessage-deflate whenever it is offered.
        environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)
    return inner(environ, start_response)


@sio.on("connect", namespace=NS)
def on_connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
    sio.emit(
        "connected", {"clientId": sid, "serverTime": int(time.time() * 1000)}, to=sid, namespace=NS
    )


@sio.on("subscribe", namespace=NS)
def on_subscribe(sid: str, payload: Any = None) -> dict[str, Any]:
    channel = payload.get("channel") if isinstance(payload, dict) else None
    if not isinstance(channel, str) or not CHANNEL.match(channel):
        return {"success": False, "error": "Invalid channel"}
    sio.enter_room(sid, channel, namespace=NS)
    return {"success": True, "channel": channel}


@sio.on("unsubscribe", namespace=NS)
def on_unsubscribe(sid: str, payload: Any = None) -> dict[str, Any]:
    if isinstance(payload, dict) and isinstance(payload.get("channel"), str):
        sio.leave_room(sid, payload["channel"], namespace=NS)
    return {"success": True}


@sio.on("ping", namespace=NS)
def on_ping(sid: str, *args: Any) -> None:
    sio.emit("pong", {"timestamp": int(time.time() * 1000)}, to=sid, namespace=NS)


def handle(fields: dict[str, str], state: dict[str, Any]) -> None:
    data = json.loads(fields["data"])
    kind = fields.get("type")
    stamp = int(time.time() * 1000)
    if kind == "block.indexed":
        last = state.get("height")
        if last is not None and data["blockNumber"] <= last:
            return
        state["height"] = data["blockNumber"]
        payload = {
            "number": data["blockNumber"],
            "hash": data["blockHash"],
            "parentHash": data["parentHash"],
            "transactions": data["transactions"],
            "blockTimestamp": data["blockTimestamp"],
            "timestamp": stamp,
        }
        sio.emit("new-block", payload, namespace=NS)
    elif kind == "price.updated":
        payload = {
            "token": data["token"],
            "price": float(data["price"]),
            "priceExact": data["price"],
            "blockNumber": data["blockNumber"],
            "source": data["source"],
            "timestamp": stamp,
        }
        sio.emit("price-update", payload, room=f"price:{data['token']}", namespace=NS)
    elif kind == "block.reorged":
        state["height"] = data["commonAncestor"]["number"]
        sio.emit("reorg", data, namespace=NS)


def read_stream() -> None:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True, socket_timeout=None)
    last_id = "$"
    state: dict[str, Any] = {}
    while True:
        try:
            reply = client.xread({STREAM: last_id}, count=1000, block=2000)
        except redis.RedisError:
            eventlet.sleep(0.5)
            continue
        for _key, entries in reply or []:
            for entry_id, fields in entries:
                last_id = entry_id
                handle(fields, state)


def main() -> None:
    sock = eventlet.listen(("127.0.0.1", PORT), backlog=4096)
    eventlet.spawn(read_stream)
    eventlet.wsgi.server(sock, app, max_size=20_000, log_output=False)


if __name__ == "__main__":
    main()
