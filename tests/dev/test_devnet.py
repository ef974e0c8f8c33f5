"""The throwaway servers of the dev stack and the tests make sure the server answering
on their port is their own: a port found free may be taken by another process (another
test's node, say) before theirs binds it, and talking to that one would read another
chain or another Redis."""

from __future__ import annotations

from chainpulse.devnet import Anvil, RedisServer


def test_an_anvil_whose_port_another_node_holds_moves_to_a_free_one() -> None:
    with Anvil() as other:
        other.mine(3)
        late = Anvil()
        late._use_port(other.port)  # as if free_port had handed out the taken port
        with late:
            assert late.port != other.port
            assert late.head() == 0 and other.head() == 3


def test_a_redis_server_whose_port_another_holds_moves_to_a_free_one() -> None:
    with RedisServer() as other:
        late = RedisServer()
        late.port, late.url = other.port, other.url
        with late:
            assert late.port != other.port
            assert late.process is not None and late._pid() == late.process.pid
            assert other.process is not None and other._pid() == other.process.pid
