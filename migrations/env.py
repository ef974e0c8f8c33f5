"""Alembic environment: the URL comes from `chainpulse db upgrade` (or DATABASE_URL)."""

from __future__ import annotations

from alembic import context

from indexer.config import IndexerSettings
from indexer.db import make_engine, normalise_url
from indexer.models import metadata

config = context.config
url = config.attributes.get("url") or normalise_url(IndexerSettings.from_env().database_url)


def run_offline() -> None:
    context.configure(url=url, target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=metadata,
                render_as_batch=connection.dialect.name == "sqlite",
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
