from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.realtime.helpers import Client, Server, Stream, make_database


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return make_database(tmp_path / "chainpulse.db")


@pytest.fixture
def stream(redis_url: str) -> Stream:
    return Stream(redis_url)


@pytest.fixture
def start_server(redis_url: str, db_url: str) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(redis: str | None = None, database: str | None = None, **env: Any) -> Server:
        server = Server(redis or redis_url, database or db_url, **env)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def clients() -> Iterator[Callable[..., Client]]:
    made: list[Client] = []

    def connect(server: Server, **kwargs: Any) -> Client:
        client = Client(server, **kwargs)
        made.append(client)
        return client.connect()

    yield connect
    for client in made:
        client.close()
