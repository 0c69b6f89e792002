"""Opening the database named by the settings: SQLite that several processes can write
at once, or PostgreSQL through a bounded pool that outlives lost connections."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar
from urllib.parse import unquote, urlsplit

import peewee
from playhouse.pool import MaxConnectionsExceeded, PooledDatabase, PooledPostgresqlDatabase

from server.config import Settings
from server.tracing import statement_span

log = logging.getLogger("crmgate.database")

database = peewee.DatabaseProxy()
#: Told each statement's SQL and seconds when metrics are kept (server.metrics).
statement_observer: Callable[[str, float], None] | None = None

T = TypeVar("T")

#: How long a statement waits for another writer's lock before SQLite gives up on it.
BUSY_TIMEOUT_SECONDS = 10.0
#: How long a transaction that SQLite still refused is retried before the caller hears.
BUSY_RETRY_SECONDS = 30.0
SQLITE_BUSY = 5
SQLITE_LOCKED = 6
SQLITE_INTERRUPT = 9
#: A time-limited unit on SQLite checks its deadline every this many steps of SQLite's
#: virtual machine (well under a millisecond of work: each check takes the GIL).
DEADLINE_CHECK_STEPS = 100_000

#: WAL lets readers run beside the one writer; the busy timeout (set first, so the other
#: pragmas wait too) makes a writer queue behind another process's instead of failing.
SQLITE_PRAGMAS = {
    "busy_timeout": int(BUSY_TIMEOUT_SECONDS * 1000),
    "journal_mode": "wal",
    "foreign_keys": 1,
    "synchronous": "normal",
}


class TimedStatements(peewee.Database):
    """Each statement's time to `statement_observer`, when one is set (every attempt of
    a retried statement counts: each held a connection)."""

    def execute_sql(self, sql: str, params: object = None) -> object:
        observe = statement_observer
        if observe is None:
            return super().execute_sql(sql, params)
        started = time.perf_counter()
        try:
            return super().execute_sql(sql, params)
        finally:
            observe(sql, time.perf_counter() - started)


#: How long a bulk job lets waiting writers go first before its next transaction, at most.
MAKE_WAY_SECONDS = 1.0


class WriteGate:
    """Where writers waiting for SQLite's write lock say so, for bulk jobs to let them go
    first: a file beside the database that a waiting BEGIN holds a shared lock on (flock),
    each thread through its own descriptor. SQLite's busy handler polls for the write
    lock, sleeping up to 100 ms, and a job that commits and begins again at once keeps
    the lock for all but moments: measured, a create made during an import waited ~1 s."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._mine = threading.local()

    def _descriptor(self) -> int:
        mine = getattr(self._mine, "file", None)
        if mine is None:
            mine = self._mine.file = _GateFile(self._path)
        return mine.descriptor

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """Held while this thread waits for the write lock (its BEGIN)."""
        descriptor = self._descriptor()
        fcntl.flock(descriptor, fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)

    def make_way(self) -> None:
        """Return once no writer waits (none holds the file), or after MAKE_WAY_SECONDS:
        new writers can keep coming, and the job must not starve either."""
        descriptor = self._descriptor()
        deadline = time.monotonic() + MAKE_WAY_SECONDS
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.0005)
            else:
                fcntl.flock(descriptor, fcntl.LOCK_UN)
                return


class _GateFile:
    """One thread's descriptor of the gate file (flock locks belong to the open file, so
    threads must not share one), closed with the thread."""

    def __init__(self, path: str) -> None:
        self.descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def __del__(self) -> None:
        os.close(self.descriptor)


class SqliteStore(TimedStatements, peewee.SqliteDatabase):
    """SQLite whose write transactions take the write lock at BEGIN (IMMEDIATE).

    A deferred transaction that reads, then writes, must upgrade its lock; when another
    writer got there first SQLite fails it at once with SQLITE_BUSY, which no busy timeout
    helps. Taking the lock up front makes writers queue instead. A BEGIN or a statement
    outside a transaction that is still refused after the busy timeout has done nothing,
    so it is tried again, for up to BUSY_RETRY_SECONDS. A BEGIN waits through the
    database's WriteGate, so that bulk jobs let it in between their transactions.
    """

    def __init__(
        self, path: str, statement_timeout: float = 30.0, cache_kib: int | None = None
    ) -> None:
        #: How long a time-limited unit may run (see `time_limited`).
        self.statement_timeout = statement_timeout
        cache = {} if cache_kib is None else {"cache_size": -cache_kib}
        super().__init__(
            path,
            pragmas={**SQLITE_PRAGMAS, **cache},
            timeout=BUSY_TIMEOUT_SECONDS,
            lock_type="IMMEDIATE",
            autoconnect=True,
        )
        # SQLite's LOWER folds ASCII only ("Émile" stays "Émile"); PostgreSQL's folds all of
        # Unicode. Python's, in its place, makes case-insensitive search agree on both.
        self.register_function(_lower, "lower", 1, deterministic=True)
        in_memory = path in ("", ":memory:") or path.startswith("file:")
        self.gate = None if in_memory else WriteGate(path + "-writers")

    def _connect(self) -> sqlite3.Connection:
        # Switching a new database to WAL takes an exclusive lock that processes starting
        # together contend for, and SQLite answers that pragma BUSY without waiting.
        return _retry_busy(super()._connect)

    def begin(self, lock_type: str | None = None) -> None:
        with self.gate.waiting() if self.gate else contextlib.nullcontext():
            _retry_busy(lambda: super(SqliteStore, self).begin(lock_type))

    def execute_sql(self, sql: str, params: object = None) -> object:
        with statement_span("sqlite", sql):
            if self.in_transaction():
                return super().execute_sql(sql, params)
            return _retry_busy(lambda: super(SqliteStore, self).execute_sql(sql, params))


def make_way_for_writers() -> None:
    """Between a bulk job's transactions: on SQLite, the writers now waiting for the write
    lock go first (WriteGate). PostgreSQL's writers wait on no such lock."""
    store = database.obj
    if isinstance(store, SqliteStore) and store.gate is not None:
        store.gate.make_way()


def _lower(text: str | None) -> str | None:
    return text.lower() if isinstance(text, str) else text


def unavailable(error: BaseException) -> bool:
    """Whether a database error means it could not answer now — lost or refused
    connections, a statement cancelled or interrupted for time, SQLite still locked after
    the retries, no pooled connection free in time — so the caller may retry, rather than
    a bug."""
    if isinstance(error, peewee.InterfaceError | MaxConnectionsExceeded):
        return True
    if not isinstance(error, peewee.OperationalError):
        return False
    code = getattr(getattr(error, "orig", None), "sqlite_errorcode", None)
    # PostgreSQL's OperationalErrors are all of that kind; SQLite's include "no such table".
    return code is None or code & 0xFF in (SQLITE_BUSY, SQLITE_LOCKED, SQLITE_INTERRUPT)


def _retry_busy(attempt: Callable[[], T]) -> T:
    deadline = time.monotonic() + BUSY_RETRY_SECONDS
    delay = 0.01
    while True:
        started = time.monotonic()
        try:
            return attempt()
        except (peewee.OperationalError, sqlite3.OperationalError) as error:
            code = getattr(getattr(error, "orig", error), "sqlite_errorcode", None)
            if code is None or code & 0xFF != SQLITE_BUSY or time.monotonic() > deadline:
                raise
            if time.monotonic() - started >= BUSY_TIMEOUT_SECONDS:
                log.warning("SQLite stayed busy for %.0f s; trying again", BUSY_TIMEOUT_SECONDS)
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


class PostgresStore(TimedStatements, PooledPostgresqlDatabase):
    """PostgreSQL through a bounded pool. Each unit of work (see `unit_of_work`) checks a
    connection out and gives it back; the pool pings an idle one before handing it out and
    replaces it when the server dropped it (a restart, pg_terminate_backend).

    A connection lost while checked out is replaced, and the statement retried, only where
    nothing can have been committed: at BEGIN, and for a read outside a transaction. Past
    BEGIN the transaction dies with the connection, and the caller hears of it.
    """

    def begin(self, isolation_level: int | None = None) -> None:
        self._again_if_lost(lambda: super(PostgresStore, self).begin(isolation_level))

    def execute_sql(self, sql: str, params: object = None) -> object:
        with statement_span("postgresql", sql):
            if self.in_transaction() or sql.lstrip()[:6].upper() != "SELECT":
                return super().execute_sql(sql, params)
            return self._again_if_lost(lambda: super(PostgresStore, self).execute_sql(sql, params))

    def _again_if_lost(self, attempt: Callable[[], T]) -> T:
        try:
            return attempt()
        except (peewee.OperationalError, peewee.InterfaceError):
            connection = self._state.conn
            if connection is None or not connection.closed:
                raise  # not a lost connection: a real error, or none could be opened
            log.warning("database connection lost; retrying on a new one")
            self.close()  # the pool discards a closed connection
            self.close_idle()  # its idle siblings most likely went with it
        return attempt()


def open_database(
    url: str,
    *,
    pool_size: int = 8,
    statement_timeout: float = 30.0,
    sqlite_cache_kib: int | None = None,
) -> peewee.Database:
    """A Peewee database for `sqlite:///path` or `postgresql://user@host:port/name`.

    PostgreSQL gets `pool_size` connections for queries and one for the health probe, and
    cancels any statement after `statement_timeout` seconds; SQLite limits time-limited
    units (see `time_limited`) to that, and gives its connections a page cache of
    `sqlite_cache_kib` (else SQLite's 2 MiB).
    """
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = unquote(parts.path)
        if path.startswith("//") or path.startswith("/"):  # sqlite:////abs/path
            path = path[1:]
        return SqliteStore(path, statement_timeout, sqlite_cache_kib)
    if parts.scheme in ("postgres", "postgresql"):
        return PostgresStore(
            unquote(parts.path.lstrip("/")),
            user=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            host=parts.hostname,
            port=parts.port,
            autoconnect=True,
            max_connections=pool_size + 1,
            stale_timeout=300,  # recycle connections now and then
            timeout=BUSY_RETRY_SECONDS,  # wait for a free connection this long
            connect_timeout=5,
            options=f"-c statement_timeout={int(statement_timeout * 1000)}",
        )
    raise ValueError(f"unsupported database URL scheme {parts.scheme!r}")


def connect(settings: Settings) -> peewee.Database:
    """Open the configured database, bind the models to it and bring its schema up to date."""
    from server.database.migrations import migrate
    from server.executors import PoolSizes

    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = open_database(
        settings.resolved_database_url,
        # A connection for each database thread and each search thread.
        pool_size=settings.db_pool_size + PoolSizes.search,
        statement_timeout=settings.db_statement_timeout,
    )
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


def time_limited(function: Callable[..., T], *args: object) -> T:
    """Run database work that must not hold its connection for long (a search): past the
    statement timeout it fails as a database that did not answer (see `unavailable`).
    PostgreSQL cancels every statement that runs that long itself; SQLite has no such
    limit, so its statements are interrupted from SQLite's progress handler once the
    unit's deadline has passed."""
    db = database.obj
    if not isinstance(db, SqliteStore):
        return function(*args)
    connection = db.connection()
    deadline = time.monotonic() + db.statement_timeout
    connection.set_progress_handler(lambda: time.monotonic() > deadline, DEADLINE_CHECK_STEPS)
    try:
        return function(*args)
    finally:
        connection.set_progress_handler(None, 0)


def lock_rows(query: peewee.ModelSelect) -> None:
    """Lock the rows a query selects until the transaction ends, so transactions that
    read, then write them run one after the other (PostgreSQL). SQLite needs nothing:
    its write transactions already run one at a time."""
    if query.model._meta.database.for_update:
        query.for_update().execute()


def stream_rows(query: peewee.ModelSelect, size: int) -> Iterator[list[tuple[object, ...]]]:
    """The query's rows as the database stores them (no conversion), `size` at a time,
    never all in memory: PostgreSQL through a server-side cursor (DECLARE, then FETCH) in
    a transaction of its own; SQLite's cursor steps through the rows as they are fetched
    anyway (and takes no write lock: a read needs no transaction)."""
    db = query.model._meta.database
    sql, params = query.sql()
    if not db.for_update:  # SQLite
        cursor = db.execute_sql(sql, params)
        try:
            while rows := cursor.fetchmany(size):
                yield rows
        finally:
            cursor.close()
        return
    name = f"crmgate_stream_{uuid.uuid4().hex}"
    with db.atomic():  # the cursor lives until the transaction ends
        db.execute_sql(f'DECLARE "{name}" NO SCROLL CURSOR FOR {sql}', params)
        while rows := db.execute_sql(f'FETCH FORWARD {int(size)} FROM "{name}"').fetchall():
            yield rows
