"""A PostgreSQL cluster of a test's own, which the test may stop, crash and restart
(never the machine's server on 5432): initdb and pg_ctl from the installed PostgreSQL,
run as the `postgres` user (they refuse to run as root), in a directory under TMPDIR
that is removed on exit, listening on a free loopback port with trust auth."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from chainpulse.devnet import free_port


def _binaries() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


class Cluster:
    def __init__(self, directory: Path, bin_dir: Path) -> None:
        self.directory = directory
        self.data = directory / "data"
        self.bin = bin_dir
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/chainpulse"

    def _as_postgres(self, *args: str) -> None:
        done = subprocess.run(
            ["runuser", "-u", "postgres", "--", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed: {done.stdout}{done.stderr}")

    def init(self) -> None:
        self._as_postgres(
            str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.directory} -c fsync=off"
        )
        self._as_postgres(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options,
            "-l", str(self.directory / "server.log"), "-w", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """`immediate` is a crash: no checkpoint, connections cut."""
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def create_database(self) -> None:
        admin = sa.create_engine(
            self.url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT"
        )
        try:
            with admin.connect() as conn:
                conn.execute(sa.text("CREATE DATABASE chainpulse"))
        finally:
            admin.dispose()

    def log(self) -> str:
        path = self.directory / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextlib.contextmanager
def cluster() -> Iterator[Cluster]:
    """A running cluster with an empty database `chainpulse` (skips the test where no
    PostgreSQL is installed or `runuser` cannot switch to `postgres`)."""
    bin_dir = _binaries()
    if bin_dir is None or shutil.which("runuser") is None or os.geteuid() != 0:
        pytest.skip("a cluster of the test's own needs PostgreSQL's binaries, root and runuser")
    directory = Path(tempfile.mkdtemp(prefix="pgcluster-"))
    shutil.chown(directory, "postgres", "postgres")
    made = Cluster(directory, bin_dir)
    try:
        made.init()
        made.start()
        made.create_database()
        yield made
    finally:
        with contextlib.suppress(RuntimeError):
            made.stop("immediate")
        shutil.rmtree(directory, ignore_errors=True)
