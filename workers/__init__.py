"""Celery workers: `celery -A workers worker -Q blocks`."""

from workers.app import app

__all__ = ["app"]
