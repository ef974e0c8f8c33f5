"""The environment of a chainpulse or celery subprocess: ours, not the developer's."""

from __future__ import annotations

import os

from chainpulse.devnet import ROOT
from chainpulse.settings import Settings

CELERY = str(ROOT / ".venv" / "bin" / "celery")
CHAINPULSE = str(ROOT / ".venv" / "bin" / "chainpulse")

# Every variable chainpulse reads, from the declarations: none leaks in from outside.
SETTINGS_VARIABLES = frozenset(item.env for item in Settings.declared())


def service_env(**values: str) -> dict[str, str]:
    """This process's environment without any chainpulse setting, plus `values`.

    The metrics ports are 0 unless `values` gives them: tests run side by side on one
    host, and a worker or follower on the usual fixed port would stop another's (a
    `tests.harness.worker.Worker` given 0 serves its metrics on a free port instead)."""
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS_VARIABLES}
    env["PYTHONPATH"] = str(ROOT)  # this checkout's code, however the venv was installed
    env["WORKER_METRICS_PORT"] = env["FOLLOWER_METRICS_PORT"] = "0"
    env.update(values)
    return env


def settings_env(settings: Settings) -> dict[str, str]:
    """`settings` as the variables that configure a subprocess the same way."""
    defaults = Settings()
    out: dict[str, str] = {}
    for item in Settings.declared():
        value = getattr(settings, item.attr)
        if value == getattr(defaults, item.attr):
            continue
        if isinstance(value, tuple):
            out[item.env] = ",".join(value)
        elif isinstance(value, bool):
            out[item.env] = "true" if value else "false"
        else:
            out[item.env] = str(value)
    return out
