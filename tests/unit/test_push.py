"""The push rules and the gateway against a fake of the transport's seam: no server, no
threads, no library underneath. And the seam itself: the push domain and the gateway
import nothing of python-socketio, python-engineio or eventlet."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from chainpulse.settings import Settings
from indexer import queries
from indexer.chains import load_chains
from indexer.events import BlockFinalized, BlockRef
from realtime.gateway import Gateway
from realtime.metrics import Metrics
from realtime.push.feed import LIVE, Feed
from realtime.ratelimit import SlidingWindowLimiter
from realtime.reads import Database
from tests.harness.events import block_event, block_hash, price_event, reorg_event
from tests.harness.fanout import FakeFanout
from tests.harness.realtime import SECRET
from tests.harness.seeded import CHAIN, insert_blocks, make_database


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Realtime:
    """A feed and a gateway over a fake fanout and a real SQLite database."""

    def __init__(self, url: str, **settings: object) -> None:
        self.settings = Settings(database_url=url, jwt_secret=SECRET, **settings)  # type: ignore[arg-type]
        self.fanout = FakeFanout()
        self.db = Database(url)
        self.metrics = Metrics()
        self.clock = Clock()
        self.feed = Feed(self.fanout, self.settings, self.db, self.metrics, clock=self.clock)
        limiter = SlidingWindowLimiter(self.settings.rate_limit, self.settings.rate_window)
        self.gateway = Gateway(self.fanout, self.settings, self.feed, self.metrics, limiter)

    def join(self, sid: str, auth: object = None) -> str | None:
        """What the transport does for a CONNECT: connect, then connected."""
        self.fanout.connect(sid)
        refusal = self.gateway.connect(sid, auth)
        if refusal is not None:
            self.fanout.gone(sid)
            return refusal
        self.fanout.established(sid)
        self.gateway.connected(sid)
        self.fanout.settle()  # a resume runs as a job of its own
        return None

    def leave(self, sid: str) -> None:
        self.fanout.gone(sid)
        self.gateway.disconnected(sid)


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[Realtime]:
    one = Realtime(make_database(tmp_path / "db.sqlite"))
    yield one
    one.db.dispose()


def numbers(rt: Realtime, sid: str) -> list[int]:
    return [b["number"] for b in rt.fanout.events(sid, "new-block")]  # type: ignore[index]


def test_live_clients_get_every_block_in_order_and_a_reorg(rt: Realtime) -> None:
    rt.join("a")
    assert rt.fanout.names("a") == ["connected"] and "a" in rt.fanout.rooms[LIVE]
    for n in (10, 12, 11):
        rt.feed.handle(block_event(n))
    rt.feed.handle(reorg_event(10, 2))  # 11 and 12 replaced
    rt.feed.handle(block_event(11, fork=1))
    assert numbers(rt, "a") == [10, 11, 12, 11]
    assert rt.fanout.names("a")[-2:] == ["reorg", "new-block"]
    assert rt.fanout.events("a", "new-block")[-1]["hash"] == block_hash(11, 1)  # type: ignore[index]


def test_prices_go_to_their_room_only_and_never_backwards(rt: Realtime) -> None:
    rt.join("a")
    rt.join("b")
    assert rt.gateway.event("a", "subscribe", [{"channel": "price:ETH"}]) == {
        "success": True,
        "channel": "price:ETH",
    }
    rt.feed.handle(price_event("ETH", "2000", 10))
    rt.feed.handle(price_event("ETH", "1999", 9))  # an older block committed late
    rt.feed.handle(price_event("BTC", "1", 10))
    assert [p["priceExact"] for p in rt.fanout.events("a", "price-update")] == ["2000"]  # type: ignore[index]
    assert rt.fanout.events("b", "price-update") == []
    # a late subscriber gets the latest as a snapshot
    rt.gateway.event("b", "subscribe", [{"channel": "price:ETH"}])
    [snapshot] = rt.fanout.events("b", "price-update")
    assert snapshot["snapshot"] is True and snapshot["priceExact"] == "2000"  # type: ignore[index]


def test_a_resuming_client_gets_what_it_missed_then_live_blocks_once(rt: Realtime) -> None:
    insert_blocks(rt.settings.database_url, range(1, 8))
    rt.feed.start_at(7)
    rt.join("a", {"lastBlock": 3})
    assert rt.fanout.names("a")[0] == "connected"
    assert numbers(rt, "a") == [4, 5, 6, 7] and "a" in rt.fanout.rooms[LIVE]
    rt.feed.handle(block_event(8))
    assert numbers(rt, "a") == [4, 5, 6, 7, 8]


def test_a_resume_from_a_block_no_longer_canonical_starts_with_a_reorg(rt: Realtime) -> None:
    insert_blocks(rt.settings.database_url, range(1, 6))
    rt.feed.start_at(5)
    rt.join("a", {"lastBlock": 4, "lastBlockHash": block_hash(4, fork=9)})
    assert rt.fanout.names("a")[:2] == ["connected", "reorg"]
    assert numbers(rt, "a") == [4, 5]


def two_chains(tmp_path: Path) -> Realtime:
    """A feed of two chains, CHAIN (the primary) and CHAIN + 1."""
    chains = tmp_path / "chains.toml"
    chains.write_text(
        f'[[chain]]\nname = "one"\nchain_id = {CHAIN}\nrpc = "http://127.0.0.1:1"\n\n'
        f'[[chain]]\nname = "two"\nchain_id = {CHAIN + 1}\nrpc = "http://127.0.0.1:2"\n'
    )
    return Realtime(make_database(tmp_path / "db.sqlite"), chains_file=load_chains(str(chains)))


def test_an_unsubscribe_while_the_resume_reads_stops_it(tmp_path: Path) -> None:
    """The catch-up of `blocks:<id>` reads the database (the green thread yields); an
    unsubscribe arriving meanwhile leaves the room for good: no block from the read,
    no join when it ends, nothing live after."""
    other = CHAIN + 1
    rt = two_chains(tmp_path)
    try:
        insert_blocks(rt.settings.database_url, range(1, 8), chain=other)
        rt.feed.start_at(7, other)
        rt.join("a")
        read = rt.db.read

        def read_then_unsubscribe(*args: Any) -> Any:
            rt.db.read = read  # type: ignore[method-assign]
            rows = read(*args)
            assert rt.gateway.event("a", "unsubscribe", [{"channel": f"blocks:{other}"}]) == {
                "success": True
            }
            return rows

        rt.db.read = read_then_unsubscribe  # type: ignore[method-assign]
        insert_blocks(rt.settings.database_url, [8], chain=other)  # indexed meanwhile
        ack = rt.gateway.event("a", "subscribe", [{"channel": f"blocks:{other}", "lastBlock": 3}])
        assert ack == {"success": True, "channel": f"blocks:{other}"}
        rt.fanout.settle()
        assert rt.db.read == read  # the read ran, and the unsubscribe with it
        rt.feed.handle(block_event(8, chain=other))
        assert numbers(rt, "a") == []
        assert "a" not in rt.fanout.rooms.get(f"blocks:{other}", set())
        # subscribed again, it resumes as asked
        rt.gateway.event("a", "subscribe", [{"channel": f"blocks:{other}", "lastBlock": 6}])
        rt.fanout.settle()
        rt.feed.handle(block_event(9, chain=other))
        assert numbers(rt, "a") == [7, 8, 9]
    finally:
        rt.db.dispose()


@pytest.mark.parametrize(
    "auth",
    [
        {"lastBlock": -1},
        {"lastBlock": 2**63},
        {"lastBlock": True},
        {"lastBlock": 1, "lastBlockHash": 5},
    ],
)
def test_a_resume_request_out_of_range_is_refused_and_the_client_is_live(
    rt: Realtime, auth: dict[str, object]
) -> None:
    rt.join("a", auth)
    [refusal] = rt.fanout.events("a", "exception")
    assert refusal["message"].startswith("Invalid payload: lastBlock must be")  # type: ignore[index]
    assert "a" in rt.fanout.rooms[LIVE]


def test_the_rate_limit_and_unknown_events(tmp_path: Path) -> None:
    rt = Realtime(make_database(tmp_path / "db.sqlite"), rate_limit=2)
    rt.join("a")
    assert [rt.gateway.allow("a") for _ in range(3)] == [True, True, False]
    assert rt.gateway.event("a", "dance", []) == {"success": False, "error": "Unknown event: dance"}
    assert rt.gateway.event("a", "ping", [1, 2, 3]) is None  # ping ignores its arguments
    assert "pong" in rt.fanout.names("a")
    rt.leave("a")
    assert len(rt.gateway.limiter) == 0 and rt.gateway.clients == {}


def token(sub: str, ttl: int) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time()) + ttl}, SECRET, algorithm="HS256")


def test_private_messages_and_their_refusals(rt: Realtime) -> None:
    rt.join("alice", {"token": token("alice", 600)})
    rt.join("bob", {"token": token("bob", 600)})
    rt.join("anonymous")
    sent = rt.gateway.event("alice", "private-message", [{"to": "bob", "message": "hi"}])
    assert sent == {"success": True}
    [message] = rt.fanout.events("bob", "private-message")
    assert message["from"] == "alice" and message["message"] == "hi"  # type: ignore[index]
    assert rt.gateway.event("anonymous", "private-message", [{"to": "bob", "message": "x"}]) == {
        "success": False,
        "error": "Unauthorized",
    }
    rt.fanout.publishing = False
    assert rt.gateway.event("alice", "private-message", [{"to": "bob", "message": "x"}]) == {
        "success": False,
        "error": "Private messages are unavailable",
    }


def test_at_expiry_a_client_leaves_its_user_room(rt: Realtime) -> None:
    rt.join("alice", {"token": token("alice", 600)})
    assert "alice" in rt.fanout.rooms["user:alice"]
    rt.fanout.fire()  # the expiry timer
    assert "alice" not in rt.fanout.rooms["user:alice"]
    assert rt.fanout.events("alice", "exception")[-1] == {
        "status": "error",
        "message": "Token expired",
    }


def test_with_auth_required_a_bad_token_is_refused(tmp_path: Path) -> None:
    rt = Realtime(make_database(tmp_path / "db.sqlite"), require_auth=True)
    assert rt.join("a", {"token": "garbage"}) == "Invalid token"
    assert rt.join("b") == "Unauthorized"
    assert rt.gateway.clients == {}


def test_subscribers_asking_for_one_tokens_snapshot_together_share_one_read(
    rt: Realtime,
) -> None:
    """A reconnect storm: many subscribers of a token nobody has asked for yet. One
    database read answers them all (reads run one at a time; one each would queue).
    The other subscribers ask while the first one's read is under way: they are
    started from inside it, and it returns once each of them waits for it."""
    reads: list[str] = []
    answers: list[object] = []
    waiting = threading.Semaphore(0)

    class CountingSignal(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            waiting.release()
            return super().wait(timeout)

    rt.fanout.signal = CountingSignal  # type: ignore[assignment,method-assign]

    def ask() -> None:
        answers.append(rt.feed.snapshot("ETH"))

    askers = [threading.Thread(target=ask) for _ in range(19)]

    class SlowDatabase:
        def read(self, query: object, token: str) -> queries.PriceRow | None:
            reads.append(token)
            for asker in askers:
                asker.start()
            for _ in askers:
                assert waiting.acquire(timeout=10), "a subscriber did not wait for the read"
            return None

    rt.feed.db = SlowDatabase()  # type: ignore[assignment]
    ask()
    for asker in askers:
        asker.join(10)
    assert reads == ["ETH"] and answers == [None] * 20
    assert "ETH" in rt.feed.no_price  # the next subscriber does not read at all
    assert rt.feed.snapshot("ETH") is None and reads == ["ETH"]


def test_a_catch_up_before_any_block_was_pushed_leaves_gaps_to_be_filled(rt: Realtime) -> None:
    """The stream came back before this process had pushed a block: nothing to catch up
    on, and a later gap the stream lost is still read from the database."""
    insert_blocks(rt.settings.database_url, range(1, 5))
    rt.feed.catch_up()  # reconnected with nothing pushed yet
    rt.feed.handle(block_event(1))
    rt.feed.handle(block_event(4))  # 2 and 3 lost with the stream
    rt.clock.now += 2  # past FILL_AFTER
    rt.feed.tick()
    rt.fanout.settle()  # the fill is a job of its own
    assert rt.feed.sequencer.last == 4 and rt.feed.sequencer.filled == 2


def test_the_push_rules_import_nothing_of_the_transport_libraries() -> None:
    """The seam: realtime/push and the gateway use `Fanout` only."""
    probe = textwrap.dedent(
        """
        import sys
        import realtime.gateway, realtime.push.feed, realtime.push.stream
        import realtime.push.sequencer
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in
                        ("socketio", "engineio", "eventlet", "greenlet"))
        print(",".join(loaded))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == ""


def test_finality_marks_reach_every_client_for_the_primary_and_a_chains_room_for_another(
    tmp_path: Path,
) -> None:
    other = CHAIN + 1
    rt = two_chains(tmp_path)
    try:
        rt.join("everyone")
        rt.join("second")
        assert rt.gateway.event("second", "subscribe", [{"channel": f"blocks:{other}"}]) == {
            "success": True,
            "channel": f"blocks:{other}",
        }
        rt.fanout.settle()
        primary = BlockFinalized(5, block_hash(5), BlockRef(9, block_hash(9)), CHAIN)
        rt.feed.handle(primary)
        rt.feed.handle(BlockFinalized(7, block_hash(7, 1), BlockRef(8, block_hash(8, 1)), other))
        expected = {
            "chainId": CHAIN,
            "number": 5,
            "hash": block_hash(5),
            "safe": {"number": 9, "hash": block_hash(9)},
        }
        assert rt.fanout.events("everyone", "finalized") == [expected]
        assert [e["chainId"] for e in rt.fanout.events("second", "finalized")] == [CHAIN, other]  # type: ignore[index]
        rt.feed.handle(BlockFinalized(7, block_hash(7), BlockRef(9, block_hash(9)), CHAIN + 7))
        assert len(rt.fanout.events("everyone", "finalized")) == 1  # a chain it does not know
    finally:
        rt.db.dispose()
