"""Shared fixtures: databases (SQLite and PostgreSQL) and real crmgate processes."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import peewee
import pytest
from hypothesis import settings

from server.database.connection import database, open_database
from server.database.migrations import migrate
from tests.support.processes import CrmgateProcess

# Property tests try new examples on every local run; CI runs the same ones every time, so
# a red build can be reproduced (what a local run finds is kept as an explicit @example).
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

POSTGRES = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


def _postgres_admin() -> object | None:
    import psycopg2

    try:
        connection = psycopg2.connect(dbname="test", connect_timeout=3, **POSTGRES)
    except psycopg2.OperationalError as error:
        sys.stderr.write(f"\n*** PostgreSQL at 127.0.0.1:5432 did not answer ({error}) ***\n")
        return None
    connection.autocommit = True
    return connection


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[object]:
    connection = _postgres_admin()
    if connection is None:
        pytest.skip("NO POSTGRESQL ANSWERS AT 127.0.0.1:5432: PostgreSQL store tests skipped")
    yield connection
    connection.close()


def create_postgres_database(admin: object) -> str:
    name = f"crmgate_test_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cursor:  # type: ignore[attr-defined]
        cursor.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_postgres_database(admin: object, name: str) -> None:
    with admin.cursor() as cursor:  # type: ignore[attr-defined]
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of each kind crmgate supports."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/crmgate.sqlite3"
        return
    admin = request.getfixturevalue("postgres_admin")
    name = create_postgres_database(admin)
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        drop_postgres_database(admin, name)


@pytest.fixture
def store(database_url: str) -> Iterator[peewee.Database]:
    """The models bound to a migrated database of each kind."""
    db = open_database(database_url)
    database.initialize(db)
    migrate(db)
    yield db
    # A test that re-bound the models elsewhere (say, by starting a runtime) did not run
    # on the backend it claims to.
    assert database.obj is db, "the models were re-bound during the test"
    db.close()


@pytest.fixture(
    scope="module",
    params=[("in-process", "sqlite"), ("channel", "sqlite"), ("in-process", "postgresql")],
    ids=["in-process-sqlite", "channel-sqlite", "in-process-postgresql"],
)
def crmgate(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CrmgateProcess]:
    """A real `crmgate serve` on free ports: both ways the gateway calls services on
    SQLite, and the in-process way on PostgreSQL."""
    gateway_calls, backend = request.param
    data_dir = tmp_path_factory.mktemp("crmgate")
    with (
        database_env(request, backend) as env,
        CrmgateProcess.start(data_dir, gateway_calls=gateway_calls, env=env) as process,
    ):
        yield process


@contextmanager
def database_env(
    request: pytest.FixtureRequest, backend: str, env: dict[str, str] | None = None
) -> Iterator[dict[str, str]]:
    """`env` for crmgate processes on `backend`: as it is for SQLite (in the data dir);
    for PostgreSQL with CRMGATE_DATABASE_URL naming a fresh database, dropped after."""
    env = dict(env or {})
    if backend == "sqlite":
        yield env
        return
    admin = request.getfixturevalue("postgres_admin")
    name = create_postgres_database(admin)
    env["CRMGATE_DATABASE_URL"] = f"postgresql://postgres@127.0.0.1:5432/{name}"
    try:
        yield env
    finally:
        drop_postgres_database(admin, name)


@pytest.fixture
def server_db(crmgate: CrmgateProcess) -> Iterator[peewee.Database]:
    """The running server's own database, for reading secrets and ageing rows."""
    connection = open_database(crmgate.resolved_database_url)
    database.initialize(connection)
    yield connection
    assert database.obj is connection, "the models were re-bound during the test"
    connection.close()
