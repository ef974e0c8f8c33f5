"""uint256 and exact decimals survive a write and a read on SQLite and PostgreSQL."""

import uuid
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from follower.fence import FENCE_KEY
from follower.follower import START_KEY
from indexer import models as m
from indexer.blocks import decode
from indexer.events import MAX_ID_LENGTH, BlockIndexed, BlockRef, BlockReorged, PriceUpdated
from indexer.exact import sort_key
from indexer.models import ExactDecimal, Uint256
from indexer.price_decoding import STALE_REASONS
from indexer.reorg import HALT_KEY
from indexer.schema import upgrade
from indexer.store import Store

MAX = 2**256 - 1
HASH = "0x" + "ab" * 32
KEYS = ["chain_id", START_KEY, FENCE_KEY, HALT_KEY, "contract_sync:" + "C" * 32]  # meta keys
PRICE = Decimal("115792089237316195423570985008687907853269984665640564039457.584007913129639935")


def test_uint256_and_exact_decimal_round_trip(migrated_url: str) -> None:
    store = Store(migrated_url)
    try:
        with store.engine.begin() as conn:
            conn.execute(
                m.transactions.insert(),
                [
                    {
                        "chain_id": 31337,
                        "hash": "0x" + "11" * 32,
                        "block_number": 1,
                        "transaction_index": 0,
                        "from_address": "0x" + "22" * 20,
                        "to_address": None,
                        "value": MAX,
                        "gas": 21_000,
                        "gas_price": MAX - 1,
                        "nonce": 0,
                        "status": 1,
                        "gas_used": 21_000,
                        "contract_address": None,
                    }
                ],
            )
            conn.execute(
                m.prices.insert().values(
                    token="ETH",
                    price=PRICE,
                    source="test",
                    updated_at=sa.func.now(),
                    at_ms=0,
                    price_key="2",
                )
            )
        with store.engine.connect() as conn:
            value, gas_price = conn.execute(
                sa.select(m.transactions.c.value, m.transactions.c.gas_price)
            ).one()
            price = conn.execute(sa.select(m.prices.c.price)).scalar_one()
            # The exact value is found by SQL too (no float rounding on the way in).
            found = conn.execute(
                sa.select(sa.func.count())
                .select_from(m.transactions)
                .where(m.transactions.c.value == MAX)
            ).scalar_one()
            if store.dialect == "sqlite":
                raw, kind = conn.execute(
                    sa.text("SELECT value, typeof(value) FROM transactions")
                ).one()
                assert (raw, kind) == (str(MAX), "text")
            else:
                raw = conn.execute(sa.text("SELECT value::text FROM transactions")).scalar_one()
                assert raw == str(MAX)
                column_type = conn.execute(
                    sa.text(
                        "SELECT data_type, numeric_precision, numeric_scale "
                        "FROM information_schema.columns "
                        "WHERE table_name = 'transactions' AND column_name = 'value'"
                    )
                ).one()
                assert tuple(column_type) == ("numeric", 78, 0)
        assert value == MAX and isinstance(value, int)
        assert gas_price == MAX - 1
        assert price == PRICE and isinstance(price, Decimal)
        assert str(price) == str(PRICE)
        assert found == 1
    finally:
        store.dispose()


def test_store_keeps_a_2_256_minus_1_transfer_exact(migrated_url: str) -> None:
    """A decoded block carrying the largest uint256 values, saved by the Store."""
    tx_hash = "0x" + "AB" * 32
    raw = {
        "number": "0x7",
        "hash": "0x" + "C1" * 32,
        "parentHash": "0x" + "C0" * 32,
        "timestamp": "0x65000000",
        "gasUsed": "0x5208",
        "gasLimit": "0x1c9c380",
        "baseFeePerGas": hex(MAX),
        "miner": "0x" + "EE" * 20,
        "transactions": [
            {
                "hash": tx_hash,
                "transactionIndex": "0x0",
                "from": "0x" + "AA" * 20,
                "to": "0x" + "BB" * 20,
                "value": hex(MAX),
                "gas": "0x5208",
                "gasPrice": hex(MAX),
                "nonce": "0x0",
            }
        ],
    }
    receipt = {
        "transactionHash": tx_hash,
        "status": "0x1",
        "gasUsed": "0x5208",
        "contractAddress": None,
        "logs": [],
    }
    store = Store(migrated_url, chain_id=31337)
    try:
        [event] = store.save_blocks([decode(raw, [receipt])], "backfill").events
        assert event.blockNumber == 7
        with store.engine.connect() as conn:
            row = conn.execute(sa.select(m.transactions)).mappings().one()
            base_fee = conn.execute(sa.select(m.blocks.c.base_fee_per_gas)).scalar_one()
        assert (row["value"], row["gas_price"], base_fee) == (MAX, MAX, MAX)
        assert row["hash"] == tx_hash.lower() and row["from_address"] == "0x" + "aa" * 20
    finally:
        store.dispose()


def test_the_migrations_build_the_schema_of_the_models(migrated_url: str) -> None:
    """`chainpulse db upgrade` and indexer/models.py describe the same tables, column
    types and lengths included."""
    engine = sa.create_engine(migrated_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            differences = compare_metadata(context, m.metadata)
    finally:
        engine.dispose()
    assert [d for d in differences if not _uint256_rendering(d)] == []


def _uint256_rendering(difference: Any) -> bool:
    """Uint256 and ExactDecimal are TEXT or NUMERIC by dialect; Alembic compares their
    `impl` (TEXT) with what the migrations made on PostgreSQL (NUMERIC)."""
    return (
        isinstance(difference, list)
        and difference[0][0] == "modify_type"
        and isinstance(difference[0][-1], (Uint256, ExactDecimal))
    )


def _longest_values() -> dict[tuple[str, str], str]:
    """Each bounded text column, and the longest value chainpulse can write to it."""
    restore = PriceUpdated(
        "T" * 32, "9" * 78, 2**63 - 1, None, "s" * 64, 2**63 - 1,
        reorgId=BlockReorged(10_000, BlockRef(2**63 - 1, HASH), [BlockRef(2**63 - 1, HASH)],
                             [BlockRef(2**63 - 1, HASH)]).id,
    )  # fmt: skip
    reorged = BlockReorged(1, BlockRef(2**63 - 1, HASH), [BlockRef(1, HASH)], [BlockRef(1, HASH)])
    longest_id = max([restore.id, reorged.id, "x" * MAX_ID_LENGTH], key=len)
    return {
        ("prices", "token"): "T" * 32,  # TOKEN: 1 to 32 characters
        ("prices", "source"): "s" * 64,  # a source's name: at most 64; or "manual"
        ("prices", "quote"): "Q" * 32,
        ("prices", "stale_reason"): max(STALE_REASONS, key=len),
        ("prices", "price_key"): sort_key(-Decimal("9" * 40) * Decimal(10) ** -78),
        ("chainpulse_meta", "key"): max(KEYS, key=len),
        # a contract's name in the contracts file: 1 to 32 characters
        ("contract_events", "contract"): "C" * 32,
        ("contract_children", "contract"): "C" * 32,
        ("outbox", "event_id"): longest_id,
        ("outbox", "delivery_id"): uuid.uuid4().hex,
        ("outbox", "type"): max((BlockIndexed.type, BlockReorged.type, PriceUpdated.type), key=len),
    }


def test_every_bounded_column_holds_the_longest_value_written_to_it(postgres_url: str) -> None:
    """PostgreSQL enforces a column's length (SQLite does not): each String(n) is at
    least as wide as the longest value the code can write there."""
    upgrade(postgres_url)
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            widths = {
                (table, column): length
                for table, column, length in conn.execute(
                    sa.text(
                        "SELECT table_name, column_name, character_maximum_length "
                        "FROM information_schema.columns WHERE table_schema = 'public' "
                        "AND data_type = 'character varying' AND table_name != 'alembic_version'"
                    )
                )
            }
    finally:
        engine.dispose()
    longest = _longest_values()
    hashes = {k for k, w in widths.items() if w == len(HASH)}
    addresses = {k for k, w in widths.items() if w == len("0x" + "00" * 20)}
    # hashes and addresses are checked by their exact length when a block is decoded
    assert set(widths) - hashes - addresses == set(longest)
    for key, value in longest.items():
        assert len(value) <= widths[key], (key, len(value), widths[key])
