"""The job type: its Celery encoding, the older positional form, and refused messages."""

from __future__ import annotations

import subprocess
import sys

import pytest

from chainpulse.devnet import ROOT
from workers.jobs import BadJob, IndexBlocks


def test_a_job_round_trips_through_its_celery_encoding() -> None:
    job = IndexBlocks(5, 9, "head", force=True)
    assert job.to_kwargs() == {"first": 5, "last": 9, "source": "head", "force": True}
    assert IndexBlocks.from_message((), job.to_kwargs()) == job


def test_the_older_positional_form_decodes_the_same() -> None:
    assert IndexBlocks.from_message([5, 9, "head", True], {}) == IndexBlocks(5, 9, "head", True)
    assert IndexBlocks.from_message([5, 9], None) == IndexBlocks(5, 9, "backfill", False)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((), {}, "needs first and last"),
        ((5,), {}, "needs first and last"),
        ((9, 5), {}, "bad job range 9..5"),
        ((-1, 5), {}, "bad job range -1..5"),
        (("1", "2"), {}, "bad job range '1'..'2'"),
        ((True, 2), {}, "bad job range True..2"),
        ((1, 2, "sideways"), {}, "bad job source 'sideways'"),
        ((1, 2, "head", "yes"), {}, "bad job force flag 'yes'"),
    ],
)
def test_a_message_no_worker_can_run_is_refused_with_its_reason(
    args: tuple[object, ...], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(BadJob, match=message):
        IndexBlocks.from_message(args, kwargs)


def fresh_interpreter(code: str) -> str:
    """What `code` prints in a new Python process started in the checkout."""
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_realtime_server_never_imports_celery() -> None:
    """`chainpulse serve` composes the server from the settings of every part."""
    code = (
        "import sys, chainpulse.commands, realtime.server; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'celery'))"
    )
    assert fresh_interpreter(code) == "[]"


def test_nothing_on_the_workers_import_path_imports_prometheus_client() -> None:
    """The worker sets PROMETHEUS_MULTIPROC_DIR before prometheus_client's first import
    (which reads it); Celery's worker, our app and tasks, web3 and the drivers must not
    import it first."""
    code = (
        "import sys, celery.bin.celery, celery.apps.worker, celery.concurrency.prefork, "
        "workers.app, workers.tasks, workers.main, workers.runner, indexer.rpc, "
        "indexer.store; print('prometheus_client' in sys.modules)"
    )
    assert fresh_interpreter(code) == "False"
