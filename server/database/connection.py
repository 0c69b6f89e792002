"""Opening the database named by the settings, and running blocking queries off the loop."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar
from urllib.parse import unquote, urlsplit

import peewee

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
    migrate(db)
    return db


# Peewee is synchronous: queries run on a small pool so the event loop keeps serving.
# Each pool thread keeps its own connection (Peewee connections are thread-local).
_executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="crmgate-db")


async def run_sync(function: Callable[..., T], *args: object) -> T:
    """Run blocking work (queries, file I/O, image conversion) on the worker pool."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor, functools.partial(function, *args))
