"""Fixtures for the indexer tests: an anvil that closes cleanly, a migrated database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chainpulse.devnet import Anvil
from indexer.schema import upgrade
from tests.indexer.services import stop_anvil


@pytest.fixture
def anvil() -> Iterator[Anvil]:
    node = Anvil().start()
    try:
        yield node
    finally:
        stop_anvil(node)


@pytest.fixture
def migrated_url(database_url: str) -> str:
    upgrade(database_url)
    return database_url
