"""The one test harness: real processes and services for every test folder and the
benchmarks (Celery workers, `chainpulse` commands, throwaway databases, the stack of
node, database, Redis and workers that integration tests drive)."""
