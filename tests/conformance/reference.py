"""The `websockets` library's echo server, the reference Autobahn|Testsuite results are
set beside (its own Autobahn runs use the same settings: no message size cap).

    .venv/bin/python -m tests.conformance.reference PORT
"""

from __future__ import annotations

import asyncio
import sys

from websockets.asyncio.server import ServerConnection, serve


async def echo(ws: ServerConnection) -> None:
    try:
        async for message in ws:
            await ws.send(message)
    except Exception:  # noqa: BLE001 - the suite breaks connections on purpose
        pass


async def main(port: int) -> None:
    async with serve(echo, "127.0.0.1", port, max_size=None, max_queue=None):
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
