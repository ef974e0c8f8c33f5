"""Hostile input to the HTTP API, generated: any method, path (path tricks, encodings,
unicode) and query parameters (bad and huge values) against one real server. Every
request is answered with a 2xx or a 4xx, never a 5xx or a traceback, and `/api/*`
errors are JSON naming the problem."""

from __future__ import annotations

import http.client
import json
import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.harness.realtime import Server
from tests.harness.seeded import insert_blocks, insert_price

ANSWERS = {200, 204, 400, 404, 405}

segments = (
    st.sampled_from(
        [
            "api",
            "blocks",
            "prices",
            "status",
            "candles",
            "static",
            "..",
            ".",
            "",
            "%2e%2e",
            "ETH",
            "0",
            "-1",
            "1e3",
            "%C2%B2",
            "99999999999999999999",
            "9223372036854775808",
            "app.js",
            "index.html",
            "%00",
            "healthz",
            "readyz",
            "metrics",
        ]
    )
    | st.text(max_size=30).map(lambda s: urllib.parse.quote(s, safe=""))
    | st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=20).map(
        lambda s: s.replace("?", "").replace("#", "")
    )
)
paths = st.lists(segments, min_size=1, max_size=5).map(lambda parts: "/" + "/".join(parts))
params = st.dictionaries(
    st.sampled_from(["limit", "interval", "before", "token", "x"]) | st.text(max_size=10),
    st.sampled_from(["1", "0", "-5", "1000", "1001", "²", "1m", "5m", "1h", "", "nan"])
    | st.text(max_size=40)
    | st.integers().map(str),
    max_size=3,
)
methods = st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"])


SERVER_SETTINGS = {"RATE_LIMIT": 100_000}


def seed(url: str) -> None:
    insert_blocks(url, range(1, 4))
    insert_price(url, "ETH", "3000.5", 3)


def request(server: Server, method: str, target: str) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, target)
        reply = conn.getresponse()
        return reply.status, reply.getheader("Content-Type", ""), reply.read()
    finally:
        conn.close()


@given(method=methods, path=paths, query=params)
def _one_request(server: Server, method: str, path: str, query: dict[str, str]) -> None:
    target = path + ("?" + urllib.parse.urlencode(query) if query else "")
    status, content_type, body = request(server, method, target)
    assert status in ANSWERS, (method, target, status, body[:200])
    if path.startswith("/api/") and status >= 400 and method != "HEAD":
        assert content_type == "application/json", (method, target)
        assert json.loads(body)["error"], (method, target)


@pytest.mark.parametrize("examples", [200, pytest.param(2000, marks=pytest.mark.slow)])
def test_any_request_is_answered_without_a_server_error(server: Server, examples: int) -> None:
    before = server.log().count("Traceback")
    fuzz = settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    fuzz(_one_request)(server)
    assert server.log().count("Traceback") == before, server.log()[-3000:]


@pytest.mark.parametrize(
    "target",
    [
        "/api/blocks?limit=" + "9" * 5000,
        "/api/blocks/" + "1" * 5000,
        "/api/prices/" + "A" * 5000,
        "/api/prices/ETH/candles?interval=" + "m" * 5000,
        "/static/../../../../etc/passwd",
        "/static/%2e%2e/%2e%2e/etc/passwd",
    ],
)
def test_huge_parameters_and_path_tricks_are_refused(server: Server, target: str) -> None:
    status, _, body = request(server, "GET", target)
    assert status in {400, 404, 414}, (target, status)
    assert b"root:" not in body
