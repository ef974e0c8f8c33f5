"""uint256 and exact decimals survive a write and a read on SQLite and PostgreSQL."""

from decimal import Decimal

import sqlalchemy as sa

from indexer import models as m
from indexer.store import Store

MAX = 2**256 - 1
PRICE = Decimal("115792089237316195423570985008687907853269984665640564039457.584007913129639935")


def test_uint256_and_exact_decimal_round_trip(migrated_url: str) -> None:
    store = Store(migrated_url)
    try:
        with store.engine.begin() as conn:
            conn.execute(
                m.transactions.insert(),
                [
                    {
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
                    token="ETH", price=PRICE, source="test", updated_at=sa.func.now()
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
