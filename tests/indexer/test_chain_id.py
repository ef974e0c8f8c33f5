"""The database remembers the chain id it indexes and refuses a node on another chain."""

import pytest

from chainpulse.devnet import Anvil
from indexer.errors import ChainMismatch, FatalError
from indexer.rpc import Node
from indexer.store import Store


def test_database_bound_to_one_chain_refuses_another(anvil: Anvil, migrated_url: str) -> None:
    store = Store(migrated_url)
    other = Anvil(chain_id=4242).start()
    try:
        store.bind_chain(Node([anvil.url]).chain_id())
        store.bind_chain(Node([anvil.url]).chain_id())  # the same chain again is fine
        assert store.summary().chain_id == 31337

        with pytest.raises(ChainMismatch) as info:
            store.bind_chain(Node([other.url]).chain_id())

        assert isinstance(info.value, FatalError)
        message = str(info.value)
        assert "indexes chain 31337" in message and "serves chain 4242" in message
        assert store.summary().chain_id == 31337
    finally:
        other.stop()
        store.dispose()
