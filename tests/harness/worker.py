"""`celery -A workers worker -Q blocks` as a real subprocess, its log in a file."""

from __future__ import annotations

import itertools
import signal
import socket
import subprocess
import uuid
from pathlib import Path

from chainpulse.devnet import free_port, wait_until
from tests.harness import processes
from tests.harness.environment import CELERY
from workers.jobs import broker

_names = itertools.count(1)


class Worker:
    """A Celery worker in its own process group; `env` from `service_env`. It serves its
    metrics on a free port (`metrics_url`) from files in its own directory, and logs at
    `loglevel` unless `env` sets LOG_LEVEL."""

    def __init__(
        self, env: dict[str, str], directory: Path, concurrency: int = 2, loglevel: str = "warning"
    ) -> None:
        self.directory = directory
        self.concurrency = concurrency
        self.hostname = f"w{next(_names)}-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"
        name = self.hostname.split("@")[0]
        self.log_path = directory / f"{name}.log"
        given = int(env.get("WORKER_METRICS_PORT", "0"))  # service_env's 0: choose one
        self.metrics_port = given or free_port()
        self.env = {
            "LOG_LEVEL": loglevel,
            "WORKER_METRICS_DIR": str(directory / f"{name}.metrics"),
            **env,
            "WORKER_METRICS_PORT": str(self.metrics_port),
        }
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [CELERY, "-A", "workers", "worker", "-Q", "blocks"]
                + ["--concurrency", str(self.concurrency)]
                + ["-n", self.hostname, "--without-gossip", "--without-mingle"],
                cwd=self.directory,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def wait_ready(self, timeout: float = 60) -> Worker:
        """Return once the worker answers a ping on the broker."""
        app = broker(self.env["REDIS_URL"])
        try:

            def answers() -> bool:
                assert self.process is not None and self.process.poll() is None, self.tail()
                return bool(app.control.ping(destination=[self.hostname], timeout=0.5))

            wait_until(answers, timeout, f"worker {self.hostname} answering", interval=0.2)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{self.tail()}") from None
        finally:
            app.close()
        return self

    def signal(self, sig: int) -> None:
        assert self.process is not None
        processes.send(self.process, sig, group=True)

    def kill(self) -> None:
        """kill -9 the whole worker: the main process and its pool children."""
        self.signal(signal.SIGKILL)
        assert self.process is not None
        self.process.wait(30)

    def stop(self) -> None:
        """Cold shutdown (the test is over), then nothing of the worker is left."""
        processes.stop(self.process, sig=signal.SIGQUIT, grace=15, group=True)
        self.process = None

    def log(self) -> str:
        """Everything the worker wrote so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self) -> str:
        """The end of the log, for failure messages."""
        return f"--- log of worker {self.hostname} ---\n{self.log()[-6000:]}"
