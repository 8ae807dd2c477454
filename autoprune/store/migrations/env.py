"""Alembic environment: runs on the connection :mod:`autoprune.store.migrate` hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from autoprune.store.schema import Base

# Any fixed number: the PostgreSQL advisory lock that serialises concurrent migrations.
_MIGRATION_LOCK = 7_360_151


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("autoprune migrations run through autoprune.store.migrate.upgrade")
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # ALTER via table copy on SQLite
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Two services starting on a fresh database: the second waits, then finds the
            # version table at head and does nothing.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported")
run_migrations_online()
