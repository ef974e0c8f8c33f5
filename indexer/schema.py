"""Applying the Alembic migrations in `migrations/` to a database."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from indexer.db import failure_reason, make_engine, normalise_url
from indexer.errors import DatabaseBusy
from indexer.urls import mask_url

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = normalise_url(url)
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision`; raises DatabaseBusy when unreachable."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        raise DatabaseBusy(
            f"database at {mask_url(url)} is unreachable: {failure_reason(exc)}"
        ) from exc
    finally:
        engine.dispose()
    command.upgrade(alembic_config(url), revision)
