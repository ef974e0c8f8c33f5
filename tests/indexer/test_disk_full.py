"""A full disk under SQLite (`PRAGMA max_page_count` gives SQLITE_FULL without mounting
anything) and an unwritable database: the job fails with a clear, retryable error,
nothing is half-written and no event is announced; once space (or write access)
returns, indexing resumes where it stopped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from chainpulse.devnet import Anvil
from indexer.errors import DatabaseBusy, RetryableError
from indexer.pipeline import Indexer
from tests.harness.indexer import (
    counts,
    first_block_indexed,
    migrated_indexer,
    stored_as_on_node,
    stream_ids,
)


@pytest.fixture
def indexer(anvil: Anvil, tmp_path: Path, redis_url: str) -> Iterator[Indexer]:
    with migrated_indexer(anvil.url, f"sqlite:///{tmp_path}/chainpulse.db", redis_url) as built:
        yield built


def test_a_full_disk_fails_the_job_cleanly_and_indexing_resumes(
    anvil: Anvil, indexer: Indexer, redis_url: str
) -> None:
    head = first_block_indexed(anvil, indexer, 4, 20)
    before = counts(indexer)
    full = {"on": True}

    @event.listens_for(indexer.store.engine, "connect")
    def no_room(dbapi_connection: Any, _: Any) -> None:
        if full["on"]:
            cursor = dbapi_connection.cursor()
            pages = cursor.execute("PRAGMA page_count").fetchone()[0]
            cursor.execute(f"PRAGMA max_page_count = {pages}")
            cursor.close()

    indexer.store.engine.dispose()  # new connections, with the limit
    with pytest.raises(DatabaseBusy, match="database or disk is full") as failed:
        indexer.index(2, head, "backfill")
    assert isinstance(failed.value, RetryableError)  # the job is retried, not failed
    assert "\n" not in str(failed.value)
    assert counts(indexer) == before  # nothing half-written
    assert len(stream_ids(redis_url)) == 1  # nothing announced

    full["on"] = False  # space returns
    indexer.store.engine.dispose()
    indexer.index(2, head, "backfill")
    stored_as_on_node(anvil, indexer, head)
    assert len(stream_ids(redis_url)) == head


def _immutable(paths: list[Path], on: bool) -> None:
    import subprocess

    for path in paths:
        subprocess.run(["chattr", "+i" if on else "-i", str(path)], check=True)


@pytest.mark.parametrize("what", ["files", "directory"])
def test_an_unwritable_database_fails_the_job_cleanly_and_indexing_resumes(
    anvil: Anvil, indexer: Indexer, redis_url: str, tmp_path: Path, what: str
) -> None:
    """The database's files, or its directory, made unwritable (`chattr +i`: the tests
    run as root, whom file modes do not stop): the job fails with a clear, retryable
    one-line error and nothing is announced; once writable again, indexing resumes."""
    import shutil
    import subprocess

    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    head = first_block_indexed(anvil, indexer, 3, 5)
    before = counts(indexer)
    indexer.store.engine.dispose()
    files = sorted(tmp_path.glob("chainpulse.db*")) if what == "files" else [tmp_path]
    probe = subprocess.run(["chattr", "+i", str(files[0])], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"this file system has no immutable attribute: {probe.stderr.strip()}")
    try:
        _immutable(files, True)
        with pytest.raises(RetryableError) as failed:
            indexer.index(2, head, "backfill")
        says = "attempt to write a readonly database" if what == "files" else "unable to open"
        assert f"{indexer.store.engine.url.render_as_string()} failed: {says}" in str(
            failed.value
        ), str(failed.value)
        assert "\n" not in str(failed.value)
    finally:
        _immutable(files, False)
    assert counts(indexer) == before  # nothing half-written
    assert len(stream_ids(redis_url)) == 1  # nothing announced
    indexer.store.engine.dispose()
    indexer.index(2, head, "backfill")
    assert len(stream_ids(redis_url)) == head
