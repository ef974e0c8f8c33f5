"""Hostile input, generated: every Socket.IO handler's payload and raw Engine.IO frames
fuzzed with hypothesis against one real server. Each event with an ack id is answered
(success or a documented refusal), the connection stays up, the server logs no
traceback, and a bystander keeps being served."""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from realtime import protocol
from tests.harness.realtime import NS, Client, RawSocket, Server

# The refusals an ack may carry (docs/protocol.md), by their first words.
DOCUMENTED = (
    protocol.UNAUTHORIZED,
    protocol.FORBIDDEN,
    protocol.RATE_LIMITED,
    "Invalid payload",
    "Invalid channel",
    "Too many subscriptions",
    protocol.MALFORMED,
    "Unknown event",
)

FUZZ = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# examples per run: a hundred in `make test`, a thousand with `-m slow`
EXAMPLES = pytest.mark.parametrize("examples", [100, pytest.param(1000, marks=pytest.mark.slow)])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),  # any code point, control characters included
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
channels = st.builds(
    "{}:{}".format, st.sampled_from(["price", "user", "news", ""]), st.text(max_size=40)
)
payloads = (
    json_values
    | st.fixed_dictionaries({"channel": channels | json_values})
    | st.fixed_dictionaries({"to": json_values | st.text(max_size=20), "message": json_values})
)
events = st.sampled_from(["subscribe", "unsubscribe", "ping", "private-message"]) | st.text(
    max_size=20
)


SERVER_SETTINGS = {"RATE_LIMIT": 100_000}


def acked(raw: RawSocket, ack: int) -> Any:
    prefix = f"43{NS},{ack}["
    reply = raw.recv_until(lambda text: text.startswith(prefix))
    return json.loads(reply[len(prefix) - 1 :])


def check_answer(answer: Any, frame: str) -> None:
    assert isinstance(answer, list), frame
    for item in answer:
        if isinstance(item, dict) and item.get("success") is False:
            assert str(item.get("error", "")).startswith(DOCUMENTED), (frame, item)


@given(event=events, args=st.lists(payloads, max_size=3))
def _one_event(raw: RawSocket, ids: Iterator[int], event: str, args: list[Any]) -> None:
    ack = next(ids)
    frame = f"42{NS},{ack}{json.dumps([event, *args])}"
    raw.send(frame)
    check_answer(acked(raw, ack), frame)


@contextlib.contextmanager
def fuzzing(server: Server) -> Iterator[RawSocket]:
    """A raw socket to fuzz through, beside a bystander that must stay served, and no
    traceback in the server's log by the end."""
    bystander = Client(server).connect()
    raw = RawSocket(server)
    raw.event("connected")
    before = server.log().count("Traceback")
    try:
        yield raw
        raw.send(f'42{NS},0["ping"]')
        assert acked(raw, 0) == []  # still connected, still answered
        assert bystander.call("subscribe", {"channel": "price:ETH"})["success"] is True
    finally:
        raw.close()
        bystander.close()
    assert server.log().count("Traceback") == before, server.log()[-3000:]
    assert server.get("/healthz").status_code == 200


@EXAMPLES
def test_every_handler_answers_any_payload(server: Server, examples: int) -> None:
    with fuzzing(server) as raw:
        settings(FUZZ, max_examples=examples)(_one_event)(raw, itertools.count(1))


frames = st.text(max_size=200) | st.builds(
    "{}{}".format,
    st.sampled_from(["2", "3", "4", "40", "42", "43", "44", "45", "46", "42/realtime,", "4x"]),
    st.text(max_size=200),
)


def _ends_the_session(frame: str | bytes) -> bool:
    """An Engine.IO CLOSE or a Socket.IO DISCONNECT (the client asked to leave), or text
    that is not an Engine.IO packet (the protocol closes the session: see
    test_bad_input.py::test_text_that_is_not_engine_io_closes_the_session)."""
    return isinstance(frame, str) and (
        frame[:1] not in tuple("0123456") or frame.startswith("1") or frame.startswith("41")
    )


@given(frame=(frames | st.binary(max_size=200)).filter(lambda f: not _ends_the_session(f)))
def _one_frame(raw: RawSocket, ids: Iterator[int], frame: str | bytes) -> None:
    ack = next(ids)
    if isinstance(frame, bytes):
        raw.send_binary(frame)
    else:
        raw.send(frame)
    raw.send(f'42{NS},{ack}["ping"]')
    assert acked(raw, ack) == [], frame  # answered: the session survived the frame


@EXAMPLES
def test_raw_frames_never_break_the_server(server: Server, examples: int) -> None:
    with fuzzing(server) as raw:
        settings(FUZZ, max_examples=examples)(_one_frame)(raw, itertools.count(1))
