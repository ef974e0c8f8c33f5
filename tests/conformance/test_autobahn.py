"""Autobahn|Testsuite, the WebSocket protocol's standard conformance suite, against an
echo server on chainpulse's own WebSocket code (tests/conformance/echo.py: the handshake,
frame parser, permessage-deflate and hub reading `chainpulse serve` uses). Every case
passes: OK, NON-STRICT or INFORMATIONAL, or a documented UNIMPLEMENTED (see
`autobahn.ALLOWED_UNIMPLEMENTED`). Cases 1-10 (about 20 s) here; permessage-deflate's
12 and 13 (about 10 minutes), and the `websockets` library side by side, with -m slow."""

from __future__ import annotations

import pytest

from tests.conformance import autobahn

pytestmark = pytest.mark.skipif(
    not autobahn.available(),
    reason="Autobahn|Testsuite needs Python 2.7, and none was found to build it with "
    "(`make conformance` builds .conformance/py27 where one is)",
)


def failures(cases: list[autobahn.Case]) -> list[autobahn.Case]:
    return [case for case in cases if not case.passed]


def test_autobahn_cases_1_to_10() -> None:
    with autobahn.echo_server() as url:
        cases = autobahn.run(url, autobahn.FAST, "chainpulse", timeout=600)
    assert len(cases) == 301, "the suite ran fewer cases than it has"
    assert failures(cases) == []


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_autobahn_permessage_deflate_cases_12_and_13() -> None:
    with autobahn.echo_server() as url:
        cases = autobahn.run(url, autobahn.COMPRESSION, "chainpulse", timeout=1800)
    assert len(cases) == 216, "the suite ran fewer cases than it has"
    assert failures(cases) == []


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_cases_1_to_10_beside_the_websockets_library() -> None:
    """Where the `websockets` library is strict, so are we: every case it passes as OK
    we pass as OK too."""
    with autobahn.echo_server() as url:
        ours = {c.id: c for c in autobahn.run(url, autobahn.FAST, "chainpulse", timeout=600)}
    with autobahn.echo_server("tests.conformance.reference") as url:
        theirs = autobahn.run(url, autobahn.FAST, "websockets", timeout=600)
    assert len(ours) == len(theirs) == 301
    weaker = [c.id for c in theirs if c.behavior == "OK" and ours[c.id].behavior != "OK"]
    assert weaker == []
