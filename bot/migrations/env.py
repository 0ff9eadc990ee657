"""Alembic environment: runs migrations on the connection bot.database hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

import bot.admin
import bot.ledger
import bot.tokens  # noqa: F401
from bot.database import Base, to_sync_url

config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    """Print the SQL instead of running it (`--sql`); needs attributes["url"]."""
    context.configure(
        url=to_sync_url(config.attributes["url"]),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run on attributes["connection"] (what bot.database does), else on attributes["url"]."""
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(to_sync_url(config.attributes["url"]), poolclass=NullPool)
    try:
        with engine.connect() as own_connection:
            context.configure(
                connection=own_connection, target_metadata=target_metadata, render_as_batch=True
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
