"""Fixtures for the indexer tests: a migrated database."""

from __future__ import annotations

import pytest

from indexer.schema import upgrade


@pytest.fixture
def migrated_url(database_url: str) -> str:
    upgrade(database_url)
    return database_url
