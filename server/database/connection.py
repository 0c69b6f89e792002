"""Opening the database named by the settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar
from urllib.parse import unquote, urlsplit

import peewee
from playhouse.pool import PooledDatabase

from server.config import Settings

database = peewee.DatabaseProxy()

T = TypeVar("T")

#: SQLite in WAL mode lets readers run beside the one writer; the busy timeout makes a
#: second process (an admin command beside a running server) wait instead of failing.
SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "busy_timeout": 10_000,
    "foreign_keys": 1,
    "synchronous": "normal",
}


def open_database(url: str) -> peewee.Database:
    """A Peewee database for `sqlite:///path` or `postgresql://user@host:port/name`."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = unquote(parts.path)
        if path.startswith("//") or path.startswith("/"):  # sqlite:////abs/path
            path = path[1:]
        return peewee.SqliteDatabase(path, pragmas=SQLITE_PRAGMAS, autoconnect=True)
    if parts.scheme in ("postgres", "postgresql"):
        return peewee.PostgresqlDatabase(
            unquote(parts.path.lstrip("/")),
            user=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            host=parts.hostname,
            port=parts.port,
            autoconnect=True,
        )
    raise ValueError(f"unsupported database URL scheme {parts.scheme!r}")


def connect(settings: Settings) -> peewee.Database:
    """Open the configured database, bind the models to it and bring its schema up to date."""
    from server.database.migrations import migrate

    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = open_database(settings.resolved_database_url)
    database.initialize(db)
    unit_of_work(migrate, db)
    return db


def unit_of_work(function: Callable[..., T], *args: object) -> T:
    """Run database work on this thread; a pooled connection goes back to the pool after,
    so no thread holds one while idle."""
    try:
        return function(*args)
    finally:
        db = database.obj
        if isinstance(db, PooledDatabase):
            db.close()
