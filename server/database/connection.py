"""Opening the database named by the settings: SQLite that several processes can write
at once, or PostgreSQL."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import unquote, urlsplit

import peewee
from playhouse.pool import PooledDatabase

from server.config import Settings

log = logging.getLogger("crmgate.database")

database = peewee.DatabaseProxy()

T = TypeVar("T")

#: How long a statement waits for another writer's lock before SQLite gives up on it.
BUSY_TIMEOUT_SECONDS = 10.0
#: How long a transaction that SQLite still refused is retried before the caller hears.
BUSY_RETRY_SECONDS = 30.0
SQLITE_BUSY = 5

#: WAL lets readers run beside the one writer; the busy timeout (set first, so the other
#: pragmas wait too) makes a writer queue behind another process's instead of failing.
SQLITE_PRAGMAS = {
    "busy_timeout": int(BUSY_TIMEOUT_SECONDS * 1000),
    "journal_mode": "wal",
    "foreign_keys": 1,
    "synchronous": "normal",
}


class SqliteStore(peewee.SqliteDatabase):
    """SQLite whose write transactions take the write lock at BEGIN (IMMEDIATE).

    A deferred transaction that reads, then writes, must upgrade its lock; when another
    writer got there first SQLite fails it at once with SQLITE_BUSY, which no busy timeout
    helps. Taking the lock up front makes writers queue instead. A BEGIN or a statement
    outside a transaction that is still refused after the busy timeout has done nothing,
    so it is tried again, for up to BUSY_RETRY_SECONDS.
    """

    def __init__(self, path: str) -> None:
        super().__init__(
            path,
            pragmas=SQLITE_PRAGMAS,
            timeout=BUSY_TIMEOUT_SECONDS,
            lock_type="IMMEDIATE",
            autoconnect=True,
        )

    def begin(self, lock_type: str | None = None) -> None:
        _retry_busy(lambda: super(SqliteStore, self).begin(lock_type))

    def execute_sql(self, sql: str, params: object = None) -> object:
        if self.in_transaction():
            return super().execute_sql(sql, params)
        return _retry_busy(lambda: super(SqliteStore, self).execute_sql(sql, params))


def _retry_busy(attempt: Callable[[], T]) -> T:
    deadline = time.monotonic() + BUSY_RETRY_SECONDS
    delay = 0.01
    while True:
        try:
            return attempt()
        except peewee.OperationalError as error:
            code = getattr(getattr(error, "orig", None), "sqlite_errorcode", None)
            if code is None or code & 0xFF != SQLITE_BUSY or time.monotonic() > deadline:
                raise
            log.warning("SQLite stayed busy for %.0f s; trying again", BUSY_TIMEOUT_SECONDS)
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def open_database(url: str) -> peewee.Database:
    """A Peewee database for `sqlite:///path` or `postgresql://user@host:port/name`."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = unquote(parts.path)
        if path.startswith("//") or path.startswith("/"):  # sqlite:////abs/path
            path = path[1:]
        return SqliteStore(path)
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


def lock_rows(query: peewee.ModelSelect) -> None:
    """Lock the rows a query selects until the transaction ends, so transactions that
    read, then write them run one after the other (PostgreSQL). SQLite needs nothing:
    its write transactions already run one at a time."""
    if query.model._meta.database.for_update:
        query.for_update().execute()
