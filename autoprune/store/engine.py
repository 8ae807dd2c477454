"""Database URLs and engines: SQLite by default, PostgreSQL by URL.

Resolution order: an explicit URL (``--db``), else ``$AUTOPRUNE_DB``, else a SQLite file
under ``~/.autoprune/``. Every way a URL can fail to open (unparsable, unknown backend,
unreachable server, missing database, a file that is not SQLite) becomes one
:class:`~autoprune.errors.DatabaseURLError` naming the URL (password masked).

SQLite specifics, and why:

* WAL journal, so readers (``autoprune status``) never block the runner's writes;
* a busy timeout, so concurrent writers wait instead of failing with "database is locked";
* transactions that write start with ``BEGIN IMMEDIATE`` (selected per engine with the
  ``autoprune_write`` execution option). A deferred transaction that reads and then writes
  can fail outright when another writer committed in between (the busy timeout does not
  apply to that lock upgrade); taking the write lock up front serialises read-modify-write
  sequences such as claiming a job or numbering a trial.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from autoprune.errors import DatabaseURLError

ENV_VAR = "AUTOPRUNE_DB"
DEFAULT_PATH = Path("~/.autoprune/autoprune.db")
BUSY_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 10
WRITE_OPTION = "autoprune_write"


def default_url() -> str:
    return f"sqlite:///{DEFAULT_PATH.expanduser()}"


def resolve_url(explicit: str | None = None) -> str:
    """The database URL to use: ``explicit``, else ``$AUTOPRUNE_DB``, else the default file."""
    for candidate in (explicit, os.environ.get(ENV_VAR)):
        if candidate is not None and candidate.strip():
            return candidate.strip()
    return default_url()


def display(url: URL | str) -> str:
    """A URL fit for messages: the password masked."""
    if isinstance(url, str):
        try:
            url = make_url(url)
        except (ArgumentError, ValueError):
            return url
    return url.render_as_string(hide_password=True)


def normalize_url(text: str) -> URL:
    """Parse ``text`` and pin the driver: plain ``postgresql://`` means psycopg 3."""
    try:
        url = make_url(text)
    except (ArgumentError, ValueError):
        raise DatabaseURLError(
            f"{text!r} is not a database URL (expected sqlite:///PATH or "
            "postgresql://USER@HOST:PORT/DB)"
        ) from None
    backend = url.get_backend_name()
    if url.drivername in ("postgres", "postgresql"):
        url = url.set(drivername="postgresql+psycopg")
    elif backend not in ("sqlite", "postgresql"):
        raise DatabaseURLError(
            f"{display(url)}: unsupported database {backend!r} (use sqlite or postgresql)"
        )
    if backend == "sqlite" and url.database not in (None, "", ":memory:"):
        path = Path(url.database).expanduser().resolve()
        url = url.set(database=str(path))
    return url


def _sqlite_engine(url: URL) -> Engine:
    memory = url.database in (None, "", ":memory:")
    if not memory:
        path = Path(str(url.database))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseURLError(
                f"{display(url)}: cannot create {str(path.parent)!r} ({exc.strerror})"
            ) from None
        if path.is_dir():
            raise DatabaseURLError(f"{display(url)}: {str(path)!r} is a directory")
    options: dict[str, Any] = {"connect_args": {"timeout": BUSY_TIMEOUT_S}}
    if memory:  # one shared connection, or every connection would see its own empty database
        options = {"connect_args": {"check_same_thread": False}, "poolclass": StaticPool}
    engine = create_engine(url, **options)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, record: Any) -> None:
        # Let SQLAlchemy's "begin" event (below) issue BEGIN itself instead of pysqlite's
        # implicit, always-deferred one.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        _use_wal(cursor)
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _use_wal(cursor: sqlite3.Cursor) -> None:
    """Switch the file to WAL, retrying while another connection holds the lock.

    Connections that open a new file at the same moment all try to switch it, and the losers
    get "database is locked" at once: the busy timeout does not cover this switch (measured:
    8 of 240 connections, 4 threads at a time, failed without the retry). WAL is stored in
    the file, so once one of them has switched it the others' retry succeeds. The wait is
    bounded by the busy timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _postgres_engine(url: URL) -> Engine:
    return create_engine(
        url,
        pool_pre_ping=True,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
    )


def open_engine(url_text: str) -> Engine:
    """An engine for ``url_text``, checked by connecting once."""
    url = normalize_url(url_text)
    try:
        engine = _sqlite_engine(url) if url.get_backend_name() == "sqlite" else _postgres_engine(url)
    except (NoSuchModuleError, ImportError, ArgumentError) as exc:
        raise DatabaseURLError(f"{display(url)}: cannot use this driver ({exc})") from None
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except (SQLAlchemyError, sqlite3.Error, OSError) as exc:
        engine.dispose()
        raise DatabaseURLError(f"{display(url)}: cannot open the database ({_reason(exc)})") from None
    return engine


def _reason(exc: BaseException) -> str:
    """The driver's own first line ("connection refused", "file is not a database")."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return text[0].strip() if text else type(orig).__name__
