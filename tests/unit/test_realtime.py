"""Pure logic: the rate limiter, channel validation, the new-block sequencer, frame
encoding and the heartbeat-first queue; and the read queries against SQLite."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from indexer import queries
from indexer.events import BlockIndexed
from realtime.channels import Channel, ChannelError, parse_channel
from realtime.push.sequencer import BlockSequencer
from realtime.ratelimit import SlidingWindowLimiter
from realtime.transport.engine import encode_event
from tests.harness.events import block_event, block_hash, reorg_event
from tests.harness.seeded import (
    CHAIN,
    insert_blocks,
    insert_price,
    insert_reorg,
    make_database,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# rate limiter -------------------------------------------------------------------------


def test_limiter_is_a_sliding_window() -> None:
    clock = Clock()
    limiter = SlidingWindowLimiter(3, 60, clock=clock)
    for _ in range(3):
        assert limiter.allow("a")
        clock.now += 10  # calls at 0, 10 and 20 s
    assert not limiter.allow("a")  # at 30 s
    assert limiter.allow("b")  # keys are independent
    clock.now += 29.9
    assert not limiter.allow("a")  # refused calls are not recorded
    clock.now += 0.2  # 60.1 s: the first call left the window, one slot only
    assert limiter.allow("a") and not limiter.allow("a")
    clock.now += 10  # 70.1 s: the second one too
    assert limiter.allow("a") and not limiter.allow("a")


def test_limiter_state_is_freed() -> None:
    clock = Clock()
    limiter = SlidingWindowLimiter(100, 60, clock=clock)
    for i in range(10_000):
        limiter.allow(i)
        limiter.forget(i)
    assert len(limiter) == 0
    limiter.allow("x")
    limiter.allow("y")
    clock.now += 30
    limiter.allow("y")
    clock.now += 31
    assert limiter.prune() == 1 and len(limiter) == 1


# channels -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "channel"),
    [
        ("price:ETH", Channel("price", "ETH")),
        ("price:a.B_c-9", Channel("price", "a.B_c-9")),
        ("price:" + "X" * 32, Channel("price", "X" * 32)),
        ("user:alice@example.com", Channel("user", "alice@example.com")),
        ("user:a:b", Channel("user", "a:b")),
    ],
)
def test_valid_channels(name: str, channel: Channel) -> None:
    assert parse_channel({"channel": name}) == channel
    assert channel.room == name


@pytest.mark.parametrize(
    "payload",
    [
        None,
        "price:ETH",
        ["price:ETH"],
        {},
        {"channel": None},
        {"channel": ""},
        {"channel": "price:"},
        {"channel": "price:" + "X" * 33},
        {"channel": "price:ET H"},
        {"channel": "price:ÉTH"},
        {"channel": "PRICE:ETH"},
        {"channel": "user:"},
        {"channel": "user:a\nb"},
        {"channel": "user:" + "a" * 129},
        {"channel": "~live"},
        {"channel": "x" * 10_000},
    ],
)
def test_invalid_channels(payload: object) -> None:
    with pytest.raises(ChannelError) as refused:
        parse_channel(payload)
    assert str(refused.value).startswith(("Invalid payload", "Invalid channel"))


# sequencer ----------------------------------------------------------------------------


def pushed(actions: list[object]) -> list[int]:
    return [a.blockNumber for a in actions if isinstance(a, BlockIndexed)]


def test_sequencer_orders_and_drops_repeats() -> None:
    seq = BlockSequencer(window=64, gap_timeout=10)
    assert pushed(seq.block(block_event(10), 0)) == [10]
    assert pushed(seq.block(block_event(12), 0)) == []
    assert pushed(seq.block(block_event(12), 0)) == []
    assert pushed(seq.block(block_event(11), 0)) == [11, 12]
    assert pushed(seq.block(block_event(11), 0)) == []
    assert seq.waiting == 0


@given(st.permutations(list(range(100, 140))))
def test_any_arrival_order_gives_consecutive_heights(order: list[int]) -> None:
    seq = BlockSequencer(window=64, gap_timeout=10, last=99)
    out: list[int] = []
    for n in order:
        out += pushed(seq.block(block_event(n), 0))
    assert out == list(range(100, 140))


def test_gap_is_given_up_after_the_timeout() -> None:
    seq = BlockSequencer(window=64, gap_timeout=5, last=9)
    assert pushed(seq.block(block_event(11), 100)) == []
    assert pushed(seq.block(block_event(12), 101)) == []
    assert pushed(seq.tick(104.9)) == []
    assert pushed(seq.tick(105)) == [11, 12]
    assert seq.skipped == 1
    assert pushed(seq.block(block_event(10), 106)) == []  # too late
    assert pushed(seq.block(block_event(13), 106)) == [13]


def test_too_many_waiting_blocks_skip_the_gap_at_once() -> None:
    seq = BlockSequencer(window=4, gap_timeout=1000, last=9)
    for n in (12, 13, 14, 15):
        assert pushed(seq.block(block_event(n), 0)) == []
    assert pushed(seq.block(block_event(16), 0)) == [12, 13, 14, 15, 16]


def test_blocks_behind_the_window_are_not_pushed() -> None:
    seq = BlockSequencer(window=8, gap_timeout=10)
    assert pushed(seq.block(block_event(100), 0)) == [100]
    assert pushed(seq.block(block_event(91, source="backfill"), 0)) == []
    assert pushed(seq.block(block_event(500), 0)) == []  # far ahead: 492..499 are due first
    assert pushed(seq.block(block_event(200), 0)) == []  # now behind the window
    for n in range(492, 499):
        assert pushed(seq.block(block_event(n), 0)) == [n]
    assert pushed(seq.block(block_event(499), 0)) == [499, 500]


def test_reorg_resets_to_the_ancestor_and_uses_early_replacements() -> None:
    seq = BlockSequencer(window=64, gap_timeout=10, last=19)
    for n in range(20, 24):
        seq.block(block_event(n), 0)
    assert pushed(seq.block(block_event(22, fork=1), 0)) == []  # early: before its reorg
    actions = seq.reorg(reorg_event(21, 2), 0)
    assert actions[0] == reorg_event(21, 2)
    assert pushed(actions) == [22]
    assert actions[1].blockHash == block_hash(22, 1)  # type: ignore[union-attr]
    assert pushed(seq.block(block_event(23, fork=0), 0)) == []  # the removed fork
    assert pushed(seq.block(block_event(23, fork=1), 0)) == [23]


def test_a_gap_the_stream_lost_is_filled_from_the_database() -> None:
    """Redis restarted before this server read blocks 11 and 12: block 13 waits; after
    `age` seconds the gap is named, and the stored 11 and 12, linked by hash, fill it."""
    seq = BlockSequencer(window=64, gap_timeout=10)
    assert pushed(seq.block(block_event(10), 0)) == [10]
    assert pushed(seq.block(block_event(13), 0.0)) == []
    assert seq.gap(0.5, age=1.0) is None  # the stream may still bring them
    assert seq.gap(1.5, age=1.0) == (11, 12)
    assert pushed(seq.fill([block_event(12), block_event(11)], 1.5)) == [11, 12, 13]
    assert seq.filled == 2 and seq.skipped == 0 and seq.gap(2, age=1.0) is None
    assert pushed(seq.block(block_event(12), 2)) == []  # the entry, late: a repeat


def test_stored_blocks_that_do_not_link_are_not_pushed() -> None:
    seq = BlockSequencer(window=64, gap_timeout=10)
    seq.block(block_event(10), 0)
    seq.block(block_event(13), 0)
    # another fork at 11..12 (a reorg under way): they link to neither side
    assert pushed(seq.fill([block_event(11, fork=1), block_event(12, fork=1)], 2)) == []
    # a hole in what was read: nothing is taken past it, and 13 still waits
    assert pushed(seq.fill([block_event(12)], 2)) == []
    assert seq.filled == 0 and seq.waiting == 1
    assert pushed(seq.tick(11)) == [13] and seq.skipped == 2  # the gap timeout still applies


def test_blocks_after_the_last_pushed_are_filled_after_an_outage() -> None:
    """Nothing waits (the lost entries were the newest): the stored blocks after the last
    pushed one follow on; a repeat of what was pushed, or a block far ahead, does not."""
    seq = BlockSequencer(window=64, gap_timeout=10)
    seq.block(block_event(10), 0)
    assert pushed(seq.fill([block_event(9), block_event(10), block_event(11)], 1)) == [11]
    assert pushed(seq.fill([block_event(13)], 1)) == []
    assert seq.highest == 11


# transport ----------------------------------------------------------------------------


def test_encode_event_matches_python_socketio() -> None:
    """Our one-pass encoder writes what the server's python-socketio packets write (with
    the server's JSON), and what the standard library's JSON would decode the same."""
    import json

    import socketio

    from realtime.transport.codec import Packet

    data = {"number": 1, "hash": "0xab", "price": 1.5, "note": "é"}
    ours = encode_event("/realtime", "new-block", data)
    theirs = Packet(socketio.packet.EVENT, namespace="/realtime", data=["new-block", data]).encode()
    assert ours.encode() == "4" + theirs
    standard = socketio.packet.Packet(
        socketio.packet.EVENT, namespace="/realtime", data=["new-block", data]
    ).encode()
    prefix = "2/realtime,"
    assert json.loads(theirs[len(prefix) :]) == json.loads(standard[len(prefix) :])


def test_the_packet_json_accepts_and_refuses_what_the_standard_library_does() -> None:
    import json
    import math

    from realtime.transport import codec

    assert codec.dumps({"a": 2**70, 1: "x"}) == json.dumps(
        {"a": 2**70, 1: "x"}, separators=(",", ":")
    )  # beyond orjson: the standard library's output
    assert codec.dumps(["é", 1.5]) == '["é",1.5]'
    assert math.isnan(codec.loads("[NaN]")[0])
    assert codec.loads('["\\ud800"]') == json.loads('["\\ud800"]')
    with pytest.raises(ValueError):
        codec.loads("[1,")


def test_heartbeats_go_ahead_of_the_backlog() -> None:
    import warnings

    from engineio import packet

    from realtime.transport.engine import _heartbeat_first_queue

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eventlet announces its deprecation on import
        queue = _heartbeat_first_queue()()
    backlog = [encode_event("/realtime", "new-block", {"n": i}) for i in range(3)]
    for pkt in backlog:
        queue.put(pkt)
    queue.put(packet.Packet(packet.PING))
    first = queue.get()
    assert first.packet_type == packet.PING
    assert [queue.get() for _ in range(3)] == backlog


# queries ------------------------------------------------------------------------------


def test_queries_on_sqlite(tmp_path: Path) -> None:
    url = make_database(tmp_path / "q.db")
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert queries.latest_block_number(conn, CHAIN) is None
        assert queries.latest_prices(conn) == []
    insert_blocks(url, [1, 2, 3, 5, 6])
    insert_price(url, "ETH", "1.5", 1)
    insert_price(url, "ETH", "115792089237316195423570985008687907853269984665640564039457.5", 2)
    insert_price(url, "DAI", "0.999", None)
    insert_reorg(url, reorg_event(4, 2, old_fork=3))
    with engine.connect() as conn:
        assert queries.latest_block_number(conn, CHAIN) == 6
        assert [b.number for b in queries.latest_blocks(conn, CHAIN, 3)] == [6, 5, 3]
        assert [b.number for b in queries.blocks_between(conn, CHAIN, 1, 5)] == [2, 3, 5]
        block = queries.block_by_number(conn, CHAIN, 3)
        assert block is not None and block.hash == block_hash(3)
        assert block.parent_hash == block_hash(2) and block.base_fee_per_gas == 10**9
        assert queries.block_by_number(conn, CHAIN, 4) is None
        eth = queries.latest_price(conn, "ETH")
        assert eth is not None and eth.block_number == 2
        assert eth.price == Decimal(
            "115792089237316195423570985008687907853269984665640564039457.5"
        )
        assert queries.latest_price(conn, "BTC") is None
        assert [(p.token, p.price) for p in queries.latest_prices(conn)] == [
            ("DAI", Decimal("0.999")),
            ("ETH", eth.price),
        ]
        assert eth.updated_at_ms <= int(datetime.now(UTC).timestamp() * 1000)
        found = queries.reorg_removing(conn, CHAIN, 6, block_hash(6, 3))
        assert found is not None and found.ancestor_number == 4 and found.depth == 2
        assert queries.reorg_removing(conn, CHAIN, 6, block_hash(6, 0)) is None
        assert queries.reorg_removing(conn, CHAIN, 5, block_hash(6, 3)) is None
    # another chain's blocks at the same heights, with the same hashes: not read as ours
    insert_blocks(url, [7, 8], chain=CHAIN + 1)
    insert_blocks(url, [4], fork=3, chain=CHAIN + 1)
    with engine.connect() as conn:
        assert queries.latest_block_number(conn, CHAIN) == 6
        assert queries.block_by_number(conn, CHAIN, 4) is None
        assert [b.number for b in queries.blocks_between(conn, CHAIN, 1, 8)] == [2, 3, 5, 6]
        assert queries.latest_block_number(conn, CHAIN + 1) == 8
        assert queries.reorg_removing(conn, CHAIN + 1, 6, block_hash(6, 3)) is None


def test_price_payload_keeps_the_exact_value() -> None:
    from realtime.protocol import price_update
    from tests.harness.events import price_event

    small = price_update(price_event("ETH", "0.000000000000000001", 5), snapshot=True)
    assert small["price"] == 1e-18 and small["priceExact"] == "0.000000000000000001"
    assert small["snapshot"] is True
    huge = price_update(price_event("X", "1" + "0" * 400))
    assert huge["price"] is None and huge["priceExact"] == "1" + "0" * 400
    assert "snapshot" not in huge


def test_room_index_follows_the_manager() -> None:
    from types import SimpleNamespace

    from realtime.transport.rooms import LocalManager

    manager = LocalManager()
    ids = iter(f"sid{i}" for i in range(100))
    manager.set_server(
        SimpleNamespace(
            packet_class=SimpleNamespace(json=None),
            eio=SimpleNamespace(generate_id=lambda: next(ids)),
        )
    )  # type: ignore[arg-type]
    a = manager.connect("eioA", "/realtime")
    b = manager.connect("eioB", "/realtime")
    manager.enter_room(a, "/realtime", "price:ETH")
    manager.enter_room(b, "/realtime", "price:ETH")
    manager.enter_room(a, "/realtime", "~live")
    assert sorted(manager.get_rooms(a, "/realtime")) == sorted([a, "price:ETH", "~live"])
    manager.leave_room(a, "/realtime", "~live")
    manager.disconnect(a, "/realtime")
    assert [sid for sid, _ in manager.get_participants("/realtime", "price:ETH")] == [b]
    assert manager.get_rooms(a, "/realtime") == [] and manager.tracked_sids() == 1
    manager.disconnect(b, "/realtime")
    assert manager.rooms == {} and manager.tracked_sids() == 0


def test_realtime_settings_from_the_environment() -> None:
    from chainpulse.settings import Settings

    settings = Settings.from_env(
        {"BLOCK_GAP_TIMEOUT": "2.5", "PUBSUB_CANARY_INTERVAL": "1", "WS_COMPRESSION": "on"},
        dotenv=False,
    )
    assert settings.block_gap_timeout == 2.5 and settings.canary_interval == 1.0
    assert settings.compression is True
    defaults = Settings.from_env({}, dotenv=False)
    assert defaults.block_gap_timeout == 10.0 and defaults.canary_interval == 5.0
    assert defaults.compression is False


def test_indexing_is_stalled_only_when_the_node_moves_on_without_it() -> None:
    from realtime.indexing import IndexingWatch

    watch = IndexingWatch(timeout=10)
    assert watch.observe(5, 8, now=0).stalled_for is None
    assert watch.observe(5, 8, now=30).stalled_for is None  # an idle node (CONFIRMATIONS)
    stalled = watch.observe(5, 9, now=31)
    assert stalled.stalled_for == 31 and stalled.lag == 4
    assert stalled.describe().startswith("stalled: indexed up to 5 while the node is at 9")
    assert watch.observe(6, 9, now=32).describe() == "ok"  # it moved
    assert watch.observe(6, 12, now=35).stalled_for is None  # not for long enough yet
    assert watch.observe(6, 12, now=42).stalled_for == 10
    assert watch.observe(None, None, now=50).lag is None


def test_a_price_of_a_block_a_reorg_removed_is_not_pushed() -> None:
    """A worker's late commit of an orphaned block announces its price after the reorg:
    the sequencer knows the block is not canonical, by its hash."""
    seq = BlockSequencer(window=64, gap_timeout=10)
    for n in range(10, 13):
        seq.block(block_event(n), 0)
    seq.reorg(reorg_event(10, 2), 0)  # 11 and 12 of fork 0 removed
    seq.block(block_event(11, fork=1), 0)
    assert seq.orphaned(12, block_hash(12, 0))  # removed
    assert seq.orphaned(11, block_hash(11, 0))  # removed, and 11 of fork 1 pushed
    assert not seq.orphaned(11, block_hash(11, 1))
    assert not seq.orphaned(13, block_hash(13, 1))  # not seen yet: no reason to drop it
