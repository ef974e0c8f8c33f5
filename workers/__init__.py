"""Celery workers: `celery -A workers worker -Q blocks`.

`workers.app` is loaded when Celery asks for it (PEP 562), so importing this package's
settings or job type (`workers.config`, `workers.jobs`) does not import Celery's app.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "app":
        from workers.app import app

        return app
    raise AttributeError(f"module 'workers' has no attribute {name!r}")
