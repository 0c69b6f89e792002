"""Migrations on SQLite and PostgreSQL: the schema they build equals the models', concurrent
first starts apply each migration once, and databases from every landed schema upgrade."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import peewee
import pytest

from server.database import models
from server.database.connection import database, open_database
from server.database.migrations import (
    MIGRATION_LOCK_KEY,
    MIGRATIONS,
    SchemaVersion,
    current_version,
    migrate,
)
from tests.conftest import create_postgres_database, drop_postgres_database

FIXTURES = Path(__file__).parent / "fixtures" / "schemas"
REPOSITORY = Path(__file__).parents[1]

ALL_MODELS: list[type[peewee.Model]] = [
    model
    for model in vars(models).values()
    if isinstance(model, type)
    and issubclass(model, models.BaseModel)
    and model is not models.BaseModel
]

Schema = dict[str, dict[str, Any]]


def schema_of(db: peewee.Database) -> Schema:
    """Every table's columns (type, nullability, key, default), indexes (name, columns,
    uniqueness, partial predicate) and foreign keys (with ON DELETE and, on PostgreSQL, the
    constraint's name)."""
    postgresql = isinstance(db, peewee.PostgresqlDatabase)
    schema: Schema = {}
    for table in db.get_tables():
        schema[table] = {
            "columns": {
                c.name: (
                    c.full_type if postgresql else c.data_type.upper(),
                    c.null,
                    c.primary_key,
                    c.default,
                )
                for c in db.get_columns(table)
            },
            "indexes": sorted(
                (i.name, tuple(i.columns), i.unique, index_predicate(i.sql))
                for i in db.get_indexes(table)
            ),
            "foreign_keys": sorted(
                (f.column, f.dest_table, f.dest_column, f.on_delete, f.name or "")
                for f in db.get_foreign_keys(table)
            ),
        }
    return schema


def index_predicate(sql: str | None) -> str:
    """The WHERE of a partial index, unquoted and on one line, so both spellings compare."""
    match = re.search(r"\bWHERE\b(.*)$", sql or "", re.IGNORECASE | re.DOTALL)
    return " ".join(match.group(1).replace('"', "").split()) if match else ""


@pytest.fixture(params=["sqlite", "postgresql"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def new_database(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[], str]]:
    """Makes fresh, empty databases of `kind` (URLs), dropped at the end of the test."""
    made: list[str] = []
    admin = request.getfixturevalue("postgres_admin") if kind == "postgresql" else None

    def make() -> str:
        if kind == "sqlite":
            return f"sqlite:///{tmp_path}/{uuid.uuid4().hex[:8]}.sqlite3"
        name = create_postgres_database(admin)
        made.append(name)
        return f"postgresql://postgres@127.0.0.1:5432/{name}"

    yield make
    for name in made:
        drop_postgres_database(admin, name)


def models_schema(url: str) -> Schema:
    """What Peewee creates from today's models (and the version table's model)."""
    db = open_database(url)
    try:
        with db.bind_ctx([*ALL_MODELS, SchemaVersion]):
            db.create_tables([*ALL_MODELS, SchemaVersion])
        return schema_of(db)
    finally:
        db.close()


def test_migrating_from_empty_equals_the_models(new_database: Callable[[], str]) -> None:
    expected = models_schema(new_database())
    db = open_database(new_database())
    try:
        assert migrate(db) == [version for version, _, _ in MIGRATIONS]
        migrated = schema_of(db)
    finally:
        db.close()
    assert sorted(migrated) == sorted(expected)
    for table in expected:
        assert migrated[table] == expected[table], table


def test_the_comparison_sees_a_missing_index_column_and_table(
    new_database: Callable[[], str],
) -> None:
    """The check above would fail on any of the differences the old migrations left."""
    expected = models_schema(new_database())
    db = open_database(new_database())
    try:
        migrate(db)
        db.execute_sql('DROP INDEX "contact_owner_id"')
        assert schema_of(db)["contact"]["indexes"] != expected["contact"]["indexes"]
        db.execute_sql('ALTER TABLE "tenant" DROP COLUMN "plan"')
        assert schema_of(db)["tenant"]["columns"] != expected["tenant"]["columns"]
        db.execute_sql('DROP TABLE "user_share"')
        assert "user_share" not in schema_of(db)
    finally:
        db.close()


# --- Concurrent first starts ------------------------------------------------------------

# Each process imports everything, says it is ready, and connects when told to: the
# parent releases all of them at once, so they race on the same fresh database.
_START = textwrap.dedent(
    """
    import sys
    from server.config import Settings
    from server.database.connection import connect

    settings = Settings(database_url=sys.argv[1])
    print("ready", flush=True)
    sys.stdin.readline()
    connect(settings).close()
    print("done", flush=True)
    """
)


def start_together(url: str, processes: int) -> list[subprocess.CompletedProcess]:
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _START, url],
            cwd=REPOSITORY,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline() == "ready\n"
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        results = []
        for child in children:
            out, err = child.communicate(timeout=60)
            results.append(subprocess.CompletedProcess(child.args, child.returncode, out, err))
        return results
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()


@pytest.mark.parametrize("trial", range(5))
def test_processes_starting_together_on_a_fresh_database_all_succeed(
    new_database: Callable[[], str], trial: int
) -> None:
    url = new_database()
    results = start_together(url, processes=4)
    assert [(r.returncode, r.stderr) for r in results] == [(0, "")] * 4
    db = open_database(url)
    try:
        with db.bind_ctx([SchemaVersion]):
            rows = [row.version for row in SchemaVersion.select().order_by(SchemaVersion.version)]
    finally:
        db.close()
    assert rows == [version for version, _, _ in MIGRATIONS]


def test_the_version_table_is_created_under_the_lock(new_database: Callable[[], str]) -> None:
    """While another session holds the migration lock, a migrating process creates nothing."""
    url = new_database()
    holder = open_database(url)
    db = open_database(url)
    outcome: list[object] = []
    postgresql = isinstance(holder, peewee.PostgresqlDatabase)

    def run() -> None:
        try:
            outcome.append(migrate(db))
        except Exception as error:  # reported by the assertion below
            outcome.append(error)
        finally:
            db.close()

    thread = threading.Thread(target=run)
    try:
        with holder.atomic() if postgresql else holder.atomic("IMMEDIATE"):
            if postgresql:
                holder.execute_sql("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
            thread.start()
            thread.join(timeout=1.5)
            assert thread.is_alive() and not outcome  # waiting for the lock
            assert "schema_version" not in holder.get_tables()
        thread.join(timeout=30)
        assert outcome == [[version for version, _, _ in MIGRATIONS]]
    finally:
        holder.close()


# --- Databases from every landed schema ----------------------------------------------------

#: Each fixture, the versions it records and the versions upgrading it applies.
LANDED = {
    "v1-5c2a7d5": [1],
    "v2-c292dbb": [1, 2],
    "v3-57dc352": [1, 2, 3],
    "v4-52c478d": [1, 2, 3, 4],
    "v4-52c478d-over-v3-57dc352": [1, 2, 3, 4],  # SQLite only: see build.py
}

#: Fixtures begun before 52c478d: migration 5 adds columns to them.
BEGUN_BEFORE_VOYZU = {name for name in LANDED if name != "v4-52c478d"}

#: The defaults SQLite keeps on the NOT NULL columns migration 5 adds (it cannot drop one
#: without rebuilding the table); PostgreSQL drops them.
SQLITE_ADDED_DEFAULTS = {
    ("tenant", "plan"): "'free'",
    ("contact", "phone"): "''",
    ("contact", "company"): "''",
}


def open_fixture(name: str, kind: str, url: str) -> peewee.Database:
    """A copy of the fixture database `name` at `url` (an empty database of `kind`)."""
    if kind == "sqlite":
        path = url.removeprefix("sqlite:///")
        shutil.copyfile(FIXTURES / f"{name}.sqlite3", path)
        return open_database(url)
    import psycopg2

    loader = psycopg2.connect(url)
    try:
        with loader, loader.cursor() as cursor:
            cursor.execute((FIXTURES / f"{name}.sql").read_text())
    finally:
        loader.close()
    return open_database(url)


def fixture_cases() -> list[Any]:
    cases = []
    for name in LANDED:
        for kind in ("sqlite", "postgresql"):
            path = FIXTURES / f"{name}.{'sqlite3' if kind == 'sqlite' else 'sql'}"
            if path.exists():
                cases.append(pytest.param(name, kind, id=f"{name}-{kind}"))
    return cases


def test_every_landed_schema_has_its_fixtures() -> None:
    made = sorted(path.name for path in FIXTURES.iterdir() if path.suffix != ".py")
    expected = [f"{name}.sql" for name in LANDED if "-over-" not in name]
    expected += [f"{name}.sqlite3" for name in LANDED]
    assert made == sorted(expected)


@pytest.mark.parametrize(("name", "kind"), fixture_cases())
def test_a_database_from_a_landed_schema_upgrades_to_the_models(
    name: str, kind: str, request: pytest.FixtureRequest
) -> None:
    make = request.getfixturevalue("new_database")
    expected = models_schema(make())
    db = open_fixture(name, kind, make())
    database.initialize(db)
    try:
        recorded = LANDED[name]
        assert current_version(db) == recorded[-1]
        assert migrate(db) == [v for v, _, _ in MIGRATIONS if v not in recorded]
        upgraded = schema_of(db)
        assert migrate(db) == []

        # Migration 5 again (it is idempotent) changes nothing either.
        repair = {version: run for version, _, run in MIGRATIONS}[5]
        with db.atomic():
            repair(db)
        assert schema_of(db) == upgraded

        if kind == "sqlite" and name in BEGUN_BEFORE_VOYZU:
            for (table, column), default in SQLITE_ADDED_DEFAULTS.items():
                type_, null, key, kept = upgraded[table]["columns"][column]
                assert kept == default
                upgraded[table]["columns"][column] = (type_, null, key, None)
        assert sorted(upgraded) == sorted(expected)
        for table in expected:
            assert upgraded[table] == expected[table], table

        assert_rows_survived(db)
    finally:
        db.close()


def assert_rows_survived(db: peewee.Database) -> None:
    """The fixture's tenant and contact are intact, and usable through today's models."""
    tenant = models.Tenant.get(models.Tenant.name == "fixture-tenant")
    assert (tenant.locale, tenant.honor_accept_language, tenant.plan) == ("es", False, "free")
    contact = models.Contact.get(models.Contact.tenant == tenant)
    assert contact.uuid == uuid.UUID("00000000-0000-4000-8000-000000000001")
    assert (contact.email, contact.email_normalized) == ("  Ada@Example.COM ", "ada@example.com")
    assert (contact.first_name, contact.last_name) == ("Ada", "Lovelace")
    assert (contact.phone, contact.company, contact.owner) == ("", "", None)

    user = models.User.create(tenant=tenant, email="ada@example.com", password_hash="x")
    contact.owner = user
    contact.save()
    models.Session.create(token_hash="0" * 64, user=user, expires_at=models.utcnow())
    user.delete_instance()  # ON DELETE SET NULL on contact.owner_id, CASCADE on sessions
    assert models.Contact.get_by_id(contact.id).owner is None
    assert models.Session.select().count() == 0
