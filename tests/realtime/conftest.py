from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chainpulse.devnet import RedisServer
from tests.harness.events import Stream
from tests.harness.realtime import Client, Server
from tests.harness.seeded import make_database


@pytest.fixture(scope="module")
def server(
    request: pytest.FixtureRequest,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    """One `chainpulse serve` for a whole test module, with the module's settings
    (`SERVER_SETTINGS`, a dict of variables), and with its database seeded by the
    module's `seed(url)` when it has one."""
    directory = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    url = make_database(directory / "chainpulse.db")
    seed = getattr(request.module, "seed", None)
    if seed is not None:
        seed(url)
    settings = getattr(request.module, "SERVER_SETTINGS", {})
    started = Server(redis_server.url, url, **settings).start()
    yield started
    started.stop()


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
