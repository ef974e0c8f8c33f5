"""`make conformance`'s report: Autobahn|Testsuite's cases 1-10 on chainpulse's WebSocket
code beside the `websockets` library's, and with --compression cases 12 and 13 (ours).

    .venv/bin/python -m tests.conformance.report [--compression]
"""

from __future__ import annotations

import argparse
import sys
import time

from tests.conformance import autobahn

BEHAVIOURS = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]


def row(name: str, cases: list[autobahn.Case], seconds: float) -> str:
    counts = autobahn.summary(cases)
    cells = [str(counts.get(b, 0)) for b in BEHAVIOURS]
    failed = sum(1 for c in cases if not c.passed)
    return f"| {name} | {len(cases)} | {' | '.join(cells)} | {failed} | {seconds:.0f} s |"


def timed(url: str, cases: list[str], agent: str) -> tuple[list[autobahn.Case], float]:
    started = time.monotonic()
    found = autobahn.run(url, cases, agent)
    return found, time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--compression", action="store_true", help="also cases 12 and 13")
    args = parser.parse_args(argv)
    if not autobahn.available():
        print("conformance: no Python 2.7 to run Autobahn|Testsuite with; skipped")
        return 0
    print(f"| server | cases | {' | '.join(BEHAVIOURS)} | not passed | time |")
    print("|---|---|" + "---|" * (len(BEHAVIOURS) + 2))
    bad = 0
    with autobahn.echo_server() as url:
        ours, seconds = timed(url, autobahn.FAST, "chainpulse")
        print(row("chainpulse, cases 1-10", ours, seconds), flush=True)
        bad += sum(not c.passed for c in ours)
        if args.compression:
            deflate, seconds = timed(url, autobahn.COMPRESSION, "chainpulse")
            print(row("chainpulse, cases 12-13", deflate, seconds), flush=True)
            bad += sum(not c.passed for c in deflate)
    with autobahn.echo_server("tests.conformance.reference") as url:
        theirs, seconds = timed(url, autobahn.FAST, "websockets")
        print(row("websockets, cases 1-10", theirs, seconds), flush=True)
    for case in [*ours, *(deflate if args.compression else [])]:
        if not case.passed:
            print(f"not passed: {case.id} {case.behavior} {case.close} ({case.close_code})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
