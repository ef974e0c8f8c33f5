"""Where a server's memory per connection goes: `chainpulse serve` (or the plain server)
under tracemalloc, with a snapshot on each SIGUSR1, then a comparison.

    # run the server (same environment as `chainpulse serve`), then `kill -USR1 <pid>`
    # before and after connecting clients:
    MEMPROBE_DIR=/tmp/probe .venv/bin/python bench/fanout/memprobe.py serve [chainpulse|plain]
    # (MEMPROBE_GC=1: log every garbage collection that takes 20 ms or more)
    # compare two snapshots, divided by the number of connections:
    .venv/bin/python bench/fanout/memprobe.py compare /tmp/probe/snap-1 /tmp/probe/snap-2 5000
    # or all of it: Redis, the server, N clients (run.py's load generator), snapshots:
    .venv/bin/python bench/fanout/memprobe.py drive chainpulse 5000

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
        tracemalloc.take_snapshot().dump(str(out / f"snap-{count[0]}"))
        (out / f"done-{count[0]}").write_text("ok")

    signal.signal(signal.SIGUSR1, snap)
    if os.environ.get("MEMPROBE_WSGI_BUF"):  # a remedy to try: smaller eventlet.wsgi buffers
        import eventlet.wsgi

        size = int(os.environ["MEMPROBE_WSGI_BUF"])
        eventlet.wsgi.HttpProtocol.rbufsize = size
        eventlet.wsgi.HttpProtocol.wbufsize = size
    if os.environ.get("MEMPROBE_NO_SUBSCRIBE_DB"):  # a remedy to try: no DB read per subscribe
        from realtime import gateway

        init = gateway.Gateway.__init__

        def without_snapshot_reads(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            init(self, *args, **kwargs)
            self.db = None  # on_subscribe then uses the feed's in-memory prices only

        gateway.Gateway.__init__ = without_snapshot_reads  # type: ignore[method-assign]
    if os.environ.get("MEMPROBE_FAST_DISCONNECT"):  # a remedy to try: O(own rooms) disconnect
        fast_disconnect()
    if os.environ.get("MEMPROBE_GC_THRESHOLD"):  # e.g. 50000,20,100: a remedy to try
        import gc

        gc.set_threshold(*(int(x) for x in os.environ["MEMPROBE_GC_THRESHOLD"].split(",")))
    if os.environ.get("MEMPROBE_GC_FREEZE"):  # move what exists after start-up out of GC scans
        import gc

        def freeze_later() -> None:
            eventlet.sleep(float(os.environ["MEMPROBE_GC_FREEZE"]))
            gc.collect()
            gc.freeze()

        eventlet.spawn(freeze_later)
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


def fast_disconnect() -> None:
    """python-socketio's BaseManager.basic_disconnect copies and scans every room of the
    namespace (one per client plus the channels) for each disconnect: O(N) each, O(N^2)
    for a wave of disconnects. Keep a sid -> rooms index and leave only those rooms."""
    from socketio import base_manager

    cls = base_manager.BaseManager
    enter, leave = cls.basic_enter_room, cls.basic_leave_room

    def index(self: object) -> dict[tuple[str, str], set[object]]:
        found: dict[tuple[str, str], set[object]] | None = self.__dict__.get("_sid_rooms")
        if found is None:
            found = self.__dict__["_sid_rooms"] = {}
        return found

    def basic_enter_room(self, sid, namespace, room, eio_sid=None):  # type: ignore[no-untyped-def]
        enter(self, sid, namespace, room, eio_sid=eio_sid)
        index(self).setdefault((namespace, sid), set()).add(room)

    def basic_leave_room(self, sid, namespace, room):  # type: ignore[no-untyped-def]
        leave(self, sid, namespace, room)
        rooms = index(self).get((namespace, sid))
        if rooms is not None:
            rooms.discard(room)
            if not rooms:
                del index(self)[(namespace, sid)]

    def basic_disconnect(self, sid, namespace, **kwargs):  # type: ignore[no-untyped-def]
        if namespace not in self.rooms:
            return
        for room in list(index(self).get((namespace, sid), ())):
            basic_leave_room(self, sid, namespace, room)
        self.callbacks.pop(sid, None)
        for pending in (self.pending_connect, self.pending_disconnect):
            if namespace in pending and sid in pending[namespace]:
                pending[namespace].remove(sid)
                if not pending[namespace]:
                    del pending[namespace]

    cls.basic_enter_room = basic_enter_room
    cls.basic_leave_room = basic_leave_room
    cls.basic_disconnect = basic_disconnect


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

    here = Path(__file__).resolve().parent
    sys.path.insert(0, str(here))
    import run as bench

    bench.raise_nofile()
    work = Path(tempfile.mkdtemp(prefix="chainpulse-memprobe-"))
    bench.make_database(work)
    with bench.RedisServer() as rs:
        port = bench.free_port()
        env = {
            **os.environ,
            "PORT": str(port),
            "REDIS_URL": rs.url,
            "DATABASE_URL": f"sqlite:///{work / 'bench.db'}",
            "MEMPROBE_DIR": str(work),
        }
        log = open(work / "server.log", "w")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, __file__, "serve", kind], env=env, cwd=work, stdout=log, stderr=log
        )
        pool = None
        try:
            bench.wait_until(lambda: bench._answers(port), 60, "memprobe server")
            time.sleep(1)

            def snapshot(k: int) -> int:
                os.kill(proc.pid, signal.SIGUSR1)
                bench.wait_until((work / f"done-{k}").exists, 300, f"snapshot {k}", 0.2)
                return bench.rss_kb([proc.pid])

            rss1 = snapshot(1)
            pool = bench.ClientPool(2, work)
            conn = pool.connect([f"ws://127.0.0.1:{port}/realtime"], n, 100, 60, True)
            time.sleep(2)
            rss2 = snapshot(2)
            print(
                f"{kind}: {conn['connected']} connections; RSS (with tracemalloc) grew "
                f"{(rss2 - rss1) / conn['connected']:.1f} KB per connection"
            )
            compare(str(work / "snap-1"), str(work / "snap-2"), conn["connected"])
            print("-- by file")
            compare(str(work / "snap-1"), str(work / "snap-2"), conn["connected"], "filename")
        finally:
            if pool is not None:
                pool.stop()
            proc.terminate()
            proc.wait(10)
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
