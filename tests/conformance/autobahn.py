"""Running Autobahn|Testsuite (`wstest -m fuzzingclient`) against a WebSocket server, and
reading what it found.

The suite is Python 2 code: `make conformance` (and `make test`) build its own 2.7
virtualenv at `.conformance/py27` from the pinned, hashed requirements in
tests/conformance/autobahn/ (`build-env.sh`). Where no Python 2.7 exists, the tests
that need it skip, saying so.

A case passes when its behaviour is OK, NON-STRICT or INFORMATIONAL and its closing
behaviour OK or INFORMATIONAL, or when it is one of the documented UNIMPLEMENTED
(`ALLOWED_UNIMPLEMENTED`: permessage-deflate offers this server may decline).
"""

from __future__ import annotations

import collections
import contextlib
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from chainpulse.devnet import ROOT, free_port, port_open, wait_until

WSTEST = ROOT / ".conformance" / "py27" / "bin" / "wstest"
SPEC = Path(__file__).parent / "autobahn" / "fuzzingclient.json"
FAST = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*"]  # there is no 8 or 11
COMPRESSION = ["12.*", "13.*"]
PASSED = {"OK", "NON-STRICT", "INFORMATIONAL"}
CLOSED_WELL = {"OK", "INFORMATIONAL"}
# 13.3.* and 13.5.* offer client_max_window_bits=9 with server_max_window_bits=9: this
# server compresses with 15 bits only and declines (RFC 7692 7.1.2.1 allows it)
ALLOWED_UNIMPLEMENTED = ("13.3.", "13.5.")


@dataclass(frozen=True)
class Case:
    id: str
    behavior: str
    close: str
    close_code: int | None

    @property
    def passed(self) -> bool:
        if self.behavior == "UNIMPLEMENTED":
            return self.id.startswith(ALLOWED_UNIMPLEMENTED)
        return self.behavior in PASSED and self.close in CLOSED_WELL


def available() -> bool:
    return WSTEST.exists()


def run(url: str, cases: list[str], agent: str, timeout: float = 1800) -> list[Case]:
    """Run `cases` against the server at `url`; every case's result, in case order."""
    with tempfile.TemporaryDirectory(prefix="autobahn-") as out:
        spec = json.loads(SPEC.read_text())
        spec["outdir"] = out
        spec["servers"][0].update(url=url, agent=agent)
        spec["cases"] = cases
        (Path(out) / "spec.json").write_text(json.dumps(spec))
        with open(Path(out) / "wstest.log", "wb") as log:
            subprocess.run(
                [str(WSTEST), "-m", "fuzzingclient", "-s", "spec.json"],
                cwd=out,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,  # wstest exits 0 whatever it found: index.json says
            )
        index = Path(out) / "index.json"
        found = json.loads(index.read_text()).get(agent, {}) if index.exists() else {}
    return sorted(
        (
            Case(case, r["behavior"], r["behaviorClose"], r.get("remoteCloseCode"))
            for case, r in found.items()
        ),
        key=lambda c: [int(part) for part in c.id.split(".")],
    )


def summary(cases: list[Case]) -> dict[str, int]:
    """How many cases had each behaviour."""
    return dict(collections.Counter(c.behavior for c in cases))


@contextlib.contextmanager
def echo_server(module: str = "tests.conformance.echo") -> Iterator[str]:
    """An echo server in a process of its own (chainpulse's WebSocket code by default,
    or `tests.conformance.reference` for the `websockets` library's); its URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-W", "ignore", "-m", module, str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: port_open(port), 30, f"the echo server ({module}) listening")
        yield f"ws://127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait(10)
