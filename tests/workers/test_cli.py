"""Bad input and unreachable dependencies: one line naming the problem, exit code 2.

Every case runs the real `chainpulse` command against a real anvil, Redis and SQLite.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from chainpulse.devnet import Anvil, RedisServer, free_port
from tests.harness.databases import database
from tests.harness.stack import Backfill, Stack, stack


@pytest.fixture(scope="module")
def idle(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> Iterator[Stack]:
    """A migrated database and five blocks, and no worker at all."""
    with stack("sqlite", tmp_path_factory.mktemp("cli"), redis_server) as s:
        s.anvil.mine(5)
        yield s


def one_line_error(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 2, result
    assert result.stderr == f"chainpulse: {message}\n", result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("5", "3", "FROM (5) is greater than TO (3)"),
        ("-1", "3", "FROM must not be negative, got -1"),
        ("1", "-3", "TO must not be negative, got -3"),
        ("one", "3", "FROM must be a block number, got 'one'"),
        ("1", "3.5", "TO must be a block number, got '3.5'"),
        ("1", "99", "TO (99) is beyond the node's head (5)"),
    ],
)
def test_bad_range(idle: Stack, start: str, end: str, message: str) -> None:
    one_line_error(idle.cli("backfill", start, end, "--wait"), message)


@pytest.mark.parametrize("dependency", ["database", "Redis", "node"])
def test_unreachable_dependency_is_named_with_its_password_masked(
    idle: Stack, dependency: str
) -> None:
    port = free_port()
    env, shown = {
        "database": (
            {"DATABASE_URL": f"postgresql://u:secret@127.0.0.1:{port}/x"},
            f"database at postgresql://u:***@127.0.0.1:{port}/x failed: connection failed",
        ),
        "Redis": (
            {"REDIS_URL": f"redis://:secret@127.0.0.1:{port}/0"},
            f"Redis at redis://:***@127.0.0.1:{port}/0 is unreachable",
        ),
        "node": (
            {"ETH_RPC_URL": f"http://u:secret@127.0.0.1:{port}"},
            f"node at http://u:***@127.0.0.1:{port} is unreachable",
        ),
    }[dependency]

    result = idle.cli("backfill", "1", "2", "--wait", **env)

    assert result.returncode == 2, result
    assert result.stderr.startswith(f"chainpulse: {shown}"), result.stderr
    assert result.stderr.count("\n") == 1 and "secret" not in result.stderr
    assert "Traceback" not in result.stderr


def test_malformed_redis_url_is_named(idle: Stack) -> None:
    result = idle.cli("backfill", "1", "2", REDIS_URL="localhost:6379")
    assert result.returncode == 2, result
    assert result.stderr.startswith("chainpulse: REDIS_URL localhost:6379 is malformed: ")
    assert result.stderr.count("\n") == 1


def test_db_upgrade_names_an_unreachable_database(idle: Stack) -> None:
    port = free_port()
    result = idle.cli("db", "upgrade", DATABASE_URL=f"postgresql://u:secret@127.0.0.1:{port}/x")
    assert result.returncode == 2, result
    assert result.stderr.startswith(
        f"chainpulse: database at postgresql://u:***@127.0.0.1:{port}/x is unreachable"
    )
    assert result.stderr.count("\n") == 1 and "secret" not in result.stderr


def test_database_without_schema_says_to_upgrade(idle: Stack, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/empty.db"
    one_line_error(
        idle.cli("backfill", "1", "2", DATABASE_URL=url),
        f"the database at {url} has no schema: run `chainpulse db upgrade`",
    )


def test_backfill_refuses_a_node_on_another_chain(idle: Stack) -> None:
    store = idle.store
    store.bind_chain(31337)
    other = Anvil(chain_id=4242).start()
    try:
        other.mine(3)
        result = idle.cli("backfill", "1", "2", "--wait", ETH_RPC_URL=other.url)
    finally:
        other.stop()
    one_line_error(
        result,
        f"the database at {idle.database_url} indexes chain 31337, but the node serves chain 4242",
    )


def test_backfill_wait_without_a_worker_says_so(idle: Stack, tmp_path: Path) -> None:
    with Backfill(idle, tmp_path, "1", "5") as backfill:
        backfill.wait_for("no worker is consuming the 'blocks' queue", timeout=30)
        assert "start one with: celery -A workers worker -Q blocks" in backfill.output()
        assert backfill.process.poll() is None  # still waiting for one, as the jobs are queued
    client = idle.redis()
    try:
        assert client.llen("blocks") > 0
        client.delete("blocks")
    finally:
        client.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_status_on_a_database_without_schema_reports_it(
    idle: Stack, tmp_path: Path, kind: str
) -> None:
    with database(kind, tmp_path) as url:
        result = idle.cli("status", DATABASE_URL=url)
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stdout.splitlines() if line.startswith("error")]
    assert any(f"database at {url}" in line for line in errors), result.stdout
    assert "node head    5" in result.stdout  # the rest is still reported


def test_status_reports_what_it_reached_and_names_what_it_did_not(idle: Stack) -> None:
    port = free_port()
    result = idle.cli("status", "--json", REDIS_URL=f"redis://:secret@127.0.0.1:{port}/0")
    assert result.returncode == 2, result
    report = json.loads(result.stdout)
    assert report["head"] == 5 and report["queue"] is None
    [error] = report["errors"]
    assert error.startswith(f"Redis at redis://:***@127.0.0.1:{port}/0 is unreachable: ")
    assert "secret" not in result.stdout + result.stderr
