"""Where a server's memory per connection goes: `chainpulse serve` (or the plain server)
under tracemalloc, with a snapshot on each SIGUSR1, then a comparison.

    # run the server (same environment as `chainpulse serve`), then `kill -USR1 <pid>`
    # before and after connecting clients:
    MEMPROBE_DIR=/tmp/probe .venv/bin/python -m bench.fanout.memprobe serve [chainpulse|plain]
    # (MEMPROBE_GC=1: log every garbage collection that takes 20 ms or more;
    # MEMPROBE_TRACE=0: no tracemalloc, so `drive` prints the true RSS per connection)
    # compare two snapshots, divided by the number of connections:
    .venv/bin/python -m bench.fanout.memprobe compare /tmp/probe/snap-1 /tmp/probe/snap-2 5000
    # or all of it: Redis, the server, N clients (run.py's load generator), snapshots:
    .venv/bin/python -m bench.fanout.memprobe drive chainpulse 5000

tracemalloc sees what Python allocates (objects, greenlet stack copies); not what C
libraries allocate with malloc (zlib, OpenSSL), so compare its total to the RSS growth.
"""

from __future__ import annotations

import sys


def serve(kind: str) -> None:
    import warnings

    warnings.filterwarnings("ignore", message=".*[Ee]ventlet.*", category=DeprecationWarning)
    import eventlet

    eventlet.monkey_patch()
    import os
    import signal
    import tracemalloc
    from pathlib import Path

    if os.environ.get("MEMPROBE_TRACE", "1") != "0":
        tracemalloc.start(int(os.environ.get("MEMPROBE_FRAMES", "12")))
    out = Path(os.environ.get("MEMPROBE_DIR", "/tmp/memprobe"))
    out.mkdir(parents=True, exist_ok=True)
    count = [0]

    def snap(signum: int, frame: object) -> None:
        count[0] += 1
        if tracemalloc.is_tracing():
            tracemalloc.take_snapshot().dump(str(out / f"snap-{count[0]}"))
        (out / f"done-{count[0]}").write_text("ok")

    signal.signal(signal.SIGUSR1, snap)
    if os.environ.get("MEMPROBE_GC"):
        import gc
        import time

        started: dict[str, float] = {}

        def timing(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                started["t"] = time.perf_counter()
                return
            ms = (time.perf_counter() - started.get("t", time.perf_counter())) * 1000
            if ms >= float(os.environ.get("MEMPROBE_GC_MS", "20")):
                print(
                    f"gc: generation {info['generation']} took {ms:.0f} ms, "
                    f"collected {info['collected']}, tracked {len(gc.get_objects())}",
                    file=sys.stderr,
                    flush=True,
                )

        gc.callbacks.append(timing)
    if kind == "plain":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import plain_server

        plain_server.main()
    else:
        from chainpulse.settings import Settings
        from realtime.server import run

        run(Settings.from_env())


def compare(before: str, after: str, connections: int, by: str = "lineno") -> None:
    import tracemalloc

    old = tracemalloc.Snapshot.load(before)
    new = tracemalloc.Snapshot.load(after)
    stats = new.compare_to(old, by)
    total = sum(s.size_diff for s in stats)
    print(f"tracemalloc growth: {total / 1024 / connections:.1f} KB per connection")
    for s in stats[:30]:
        if s.size_diff <= 0:
            continue
        frame = s.traceback[0]
        print(
            f"{s.size_diff / connections:9.0f} B/conn {s.count_diff / connections:6.1f} obj/conn "
            f"{frame.filename.split('site-packages/')[-1]}:{frame.lineno}"
        )


def drive(kind: str, n: int) -> None:
    import os
    import signal
    import subprocess
    import tempfile
    import time
    from pathlib import Path

    from bench.fanout.loadgen import ClientPool
    from bench.fanout.run import raise_nofile
    from bench.fanout.servers import answers, make_database
    from chainpulse.devnet import RedisServer, free_port, wait_until
    from tests.harness.environment import service_env
    from tests.harness.processes import rss_kb, stop

    raise_nofile()
    work = Path(tempfile.mkdtemp(prefix="chainpulse-memprobe-"))
    make_database(work)
    with RedisServer() as rs:
        port = free_port()
        env = service_env(
            PORT=str(port),
            REDIS_URL=rs.url,
            DATABASE_URL=f"sqlite:///{work / 'bench.db'}",
            MEMPROBE_DIR=str(work),
        )
        log = open(work / "server.log", "w")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, __file__, "serve", kind], env=env, cwd=work, stdout=log, stderr=log
        )
        pool = None
        try:
            wait_until(lambda: answers(port), 60, "memprobe server")
            time.sleep(1)

            def snapshot(k: int) -> int:
                os.kill(proc.pid, signal.SIGUSR1)
                wait_until((work / f"done-{k}").exists, 300, f"snapshot {k}", 0.2)
                return rss_kb([proc.pid])

            traced = "" if os.environ.get("MEMPROBE_TRACE") == "0" else "(with tracemalloc) "
            rss1 = snapshot(1)
            pool = ClientPool(2, work)
            conn = pool.connect([f"ws://127.0.0.1:{port}/realtime"], n, 100, 60, True)
            time.sleep(2)
            rss2 = snapshot(2)
            print(
                f"{kind}: {conn['connected']} connections; RSS {traced}grew "
                f"{(rss2 - rss1) / conn['connected']:.1f} KB per connection"
            )
            if not traced:
                return
            compare(str(work / "snap-1"), str(work / "snap-2"), conn["connected"])
            print("-- by file")
            compare(str(work / "snap-1"), str(work / "snap-2"), conn["connected"], "filename")
        finally:
            if pool is not None:
                pool.stop()
            stop(proc)
            log.close()


if __name__ == "__main__":
    if sys.argv[1] == "drive":
        drive(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "serve":
        serve(sys.argv[2] if len(sys.argv) > 2 else "chainpulse")
    else:
        compare(
            sys.argv[2],
            sys.argv[3],
            int(sys.argv[4]),
            sys.argv[5] if len(sys.argv) > 5 else "lineno",
        )
