"""Schema migrations: alembic, configured in code, scripts shipped inside the package.

No ``alembic.ini`` is needed: :func:`alembic_config` points alembic at
``autoprune/store/migrations`` and hands it an open connection, so migrations run against the
same engine (and the same SQLite locking rules) as the store itself. :func:`ensure_schema`
runs on every :class:`~autoprune.store.Store` start: a fresh database is created, an older
one upgraded, a newer one (written by a later autoprune) refused.
"""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from autoprune.errors import StoreError
from autoprune.store.engine import WRITE_OPTION, display

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# alembic keeps the running migration in module globals (``alembic.context``, ``alembic.op``):
# two threads of one process must not migrate at once. Processes are serialised by the
# database itself (BEGIN IMMEDIATE on SQLite, an advisory lock on PostgreSQL).
_IN_PROCESS = threading.Lock()


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:  # a packaging mistake, not a user error
        raise StoreError(f"migrations have {len(heads)} heads: {heads}")
    return heads[0]


def current_revision(engine: Engine) -> str | None:
    """The database's schema revision; None for a database alembic has never touched."""
    with engine.connect() as connection:
        heads = MigrationContext.configure(connection).get_current_heads()
    return heads[0] if heads else None


def upgrade(engine: Engine, revision: str = "head") -> str:
    """Bring the schema to ``revision`` (idempotent); returns the revision now in place."""
    config = alembic_config()
    # A write connection: on SQLite it starts with BEGIN IMMEDIATE, so two processes opening
    # a fresh file at once migrate one after the other (the second finds nothing to do).
    with _IN_PROCESS, engine.connect().execution_options(**{WRITE_OPTION: True}) as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    current = current_revision(engine)
    assert current is not None
    return current


def ensure_schema(engine: Engine) -> None:
    """Upgrade to head if the database is behind; refuse one that is ahead."""
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return
    if current is not None:
        known = {script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
        if current not in known:
            raise StoreError(
                f"{display(engine.url)}: schema revision {current!r} is newer than this "
                f"autoprune knows (head {head!r}); upgrade autoprune"
            )
    upgrade(engine)
