"""Unit tests of the event schema: stream fields and their round trip (docs/events.md)."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from indexer.events import (
    MAX_ID_LENGTH,
    BlockIndexed,
    BlockRef,
    BlockReorged,
    PriceUpdated,
    digest,
    from_fields,
    to_fields,
)

INDEXED = BlockIndexed(
    blockNumber=12,
    blockHash="0x" + "ab" * 32,
    parentHash="0x" + "cd" * 32,
    blockTimestamp=1_700_000_000,
    transactions=3,
    source="backfill",
    gasUsed=63_000,
    chainId=8453,
)


def test_block_indexed_fields_follow_the_contract() -> None:
    fields = to_fields(INDEXED)
    assert set(fields) == {"type", "id", "data"}
    assert fields["type"] == "block.indexed"
    assert fields["id"] == f"block.indexed:8453:12:0x{'ab' * 32}"
    assert json.loads(fields["data"]) == {
        "chainId": 8453,
        "blockNumber": 12,
        "blockHash": "0x" + "ab" * 32,
        "parentHash": "0x" + "cd" * 32,
        "blockTimestamp": 1_700_000_000,
        "transactions": 3,
        "source": "backfill",
        "gasUsed": 63_000,
    }


@pytest.mark.parametrize(
    "event",
    [
        INDEXED,
        BlockReorged(
            depth=2,
            commonAncestor=BlockRef(10, "0x" + "01" * 32),
            removed=[BlockRef(11, "0x" + "02" * 32), BlockRef(12, "0x" + "03" * 32)],
            added=[BlockRef(11, "0x" + "04" * 32), BlockRef(12, "0x" + "05" * 32)],
        ),
        PriceUpdated(
            token="ETH",
            price="115792089237316195423570985008687907853269984665640564039457.000000000001",
            blockNumber=None,
            blockTimestamp=None,
            source="manual",
            publishedAt=1_700_000_000_123,
        ),
    ],
)
def test_round_trip_through_stream_fields(
    event: BlockIndexed | BlockReorged | PriceUpdated,
) -> None:
    fields = to_fields(event)
    assert from_fields(fields) == event
    as_bytes = {k.encode(): v.encode() for k, v in fields.items()}  # what redis-py returns
    parsed = from_fields(as_bytes)
    assert parsed == event
    assert parsed.id == fields["id"]


def test_same_block_gives_the_same_id_and_another_hash_another() -> None:
    again = BlockIndexed(**{**INDEXED.__dict__, "source": "head"})
    assert again.id == INDEXED.id
    other = BlockIndexed(**{**INDEXED.__dict__, "blockHash": "0x" + "ef" * 32})
    assert other.id != INDEXED.id


def test_unknown_type_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown event type 'block.mined'"):
        from_fields({"type": "block.mined", "id": "x", "data": "{}"})


def test_readers_ignore_fields_they_do_not_know() -> None:
    """A newer producer's extra fields (a rolling deploy) do not make its events
    malformed for an older reader."""
    fields = to_fields(INDEXED)
    data = {**json.loads(fields["data"]), "finalized": True}
    assert from_fields({**fields, "data": json.dumps(data)}) == INDEXED
    price = PriceUpdated("ETH", "1.5", 3, 1_700_000_000, "feed", 1, quote="USD", updatedAt=9)
    data = {**json.loads(to_fields(price)["data"]), "confidence": "high"}
    assert from_fields({**to_fields(price), "data": json.dumps(data)}) == price


def test_a_restored_price_has_an_id_of_its_own() -> None:
    original = PriceUpdated("ETH", "1.5", 3, 1_700_000_000, "feed", 1)
    restored = PriceUpdated(
        "ETH", "1.5", 3, 1_700_000_000, "feed", 2, reorgId="block.reorged:4:0xa:0xb"
    )
    assert original.id == f"price.updated:-:ETH:3:{digest('', '1.5')}"
    assert restored.id == f"price.updated:-:ETH:reorg:{digest(restored.reorgId or '', '1.5')}"
    on_base = PriceUpdated("ETH", "1.5", 3, 1_700_000_000, "feed", 1, chainId=8453)
    assert on_base.id == f"price.updated:8453:ETH:3:{digest('', '1.5')}"
    assert restored.id != original.id
    # the same restore again has the same id; another reorg's restore another one
    assert restored.id == PriceUpdated("ETH", "1.5", 3, 1, "f", 9, reorgId=restored.reorgId).id
    assert restored.id != PriceUpdated("ETH", "1.5", 3, 1, "f", 2, reorgId="block.reorged:5").id
    # an old reader of a price-less restore still parses it
    gone = PriceUpdated("ETH", None, None, None, "feed", 2, reorgId="r")
    assert from_fields(to_fields(gone)) == gone


HASHES = st.text("0123456789abcdef", min_size=64, max_size=64).map(lambda h: "0x" + h)
HEIGHTS = st.integers(0, 2**63 - 1)
TOKENS = st.from_regex(r"[A-Za-z0-9._-]{1,32}", fullmatch=True)
# a price has no length bound: a derived price multiplies its legs
PRICES = st.one_of(st.none(), st.text("0123456789.", min_size=1, max_size=2_000))
REFS = st.builds(BlockRef, HEIGHTS, HASHES)


@given(
    reorg=st.builds(
        BlockReorged, st.integers(1, 10_000), REFS, st.lists(REFS, max_size=5), st.lists(REFS)
    ),
    token=TOKENS,
    price=PRICES,
    height=st.one_of(st.none(), HEIGHTS),
    block_hash=st.one_of(st.none(), HASHES),
    published=st.integers(0, 2**63 - 1),
)
def test_every_id_fits_its_bound(
    reorg: BlockReorged,
    token: str,
    price: str | None,
    height: int | None,
    block_hash: str | None,
    published: int,
) -> None:
    """The outbox's event_id column holds 255 characters; ids stay within 200, with
    room for a chain id in front."""
    indexed = BlockIndexed(reorg.commonAncestor.number, reorg.commonAncestor.hash, "0x", 0, 0,
                           "head")  # fmt: skip
    prices = [
        PriceUpdated(token, price, height, None, "s", published, blockHash=block_hash),
        PriceUpdated(token, price, height, None, "s", published, reorgId=reorg.id),
    ]
    for event in [indexed, reorg, *prices]:
        assert len(event.id) <= MAX_ID_LENGTH, event.id
