"""Schema versions: an ordered list of migrations, each applied once, under a lock.

Rules, because a migration runs on databases made long before and long after it lands:

* A landed migration is never edited: its SQL is what every database at that version went
  through. A schema change is a new migration appended to MIGRATIONS with the next number,
  e.g. `(6, "what it adds", ddl(Ddl(both=(...), postgresql=(...))))`.
* Migrations never import the models. Each is explicit DDL for both backends (SQLite and
  PostgreSQL; the column types that differ are named once, in `_TYPES`), plus each
  backend's own statements, or a function issuing such DDL, so what it does is fixed the day it lands
  and does not follow the models as they change.
* The DDL is what Peewee would create for the models of the day, with the names Peewee gives
  (tables, `<table>_<columns>` indexes), so a database migrated from empty equals one made
  by `db.create_tables(models)`. tests/test_migrations.py checks that on both backends.
* Every migration, and the creation of the version table itself, runs in a transaction that
  first takes the migration lock (PostgreSQL: `pg_advisory_xact_lock`; SQLite: `BEGIN
  IMMEDIATE`), so processes starting together on one database apply each migration once.

History. Until migration 5 the migrations ran `db.create_tables(models)` on the models of
the day, and migration 1 gained the voyzu user tables after it had landed. Databases begun
at schema 1, 2 or 3 (commits 5c2a7d5, c292dbb, 57dc352) therefore lack the tables `user`,
`session` and `user_share` and the columns `tenant.plan`, `contact.phone`, `contact.company`
and `contact.owner_id`; the code of 52c478d marked such SQLite databases as schema 4
anyway, and could not open such PostgreSQL ones at all. Migrations 1-4 below are those
migrations written out as the DDL they produced on an empty database at 52c478d; migration
4 also creates the user tables when missing, because its foreign keys need them on
PostgreSQL; migration 5 adds whatever else such a database lacks.
tests/fixtures/schemas/ holds a database made at each of those commits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import NamedTuple

import peewee

from server.database import search
from server.database.connection import database

#: The key of the PostgreSQL advisory lock every migrating process takes first.
MIGRATION_LOCK_KEY = 726172


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class SchemaVersion(peewee.Model):
    """One row per applied migration (the table itself is created by explicit DDL)."""

    version = peewee.IntegerField(primary_key=True)
    name = peewee.CharField(max_length=100)
    applied_at = peewee.DateTimeField(default=_utcnow)

    class Meta:
        database = database
        table_name = "schema_version"


#: Column types that differ between the backends, as Peewee writes them; DDL shared by
#: both names them as placeholders (`"id" {pk}`, `"created_at" {timestamp} NOT NULL`).
_TYPES = {
    "sqlite": {
        "pk": "INTEGER NOT NULL PRIMARY KEY",
        "timestamp": "DATETIME",
        "uuid": "TEXT",
        "boolean": "INTEGER",
        "bigint": "INTEGER",
        "blob": "BLOB",
    },
    "postgresql": {
        "pk": "SERIAL NOT NULL PRIMARY KEY",
        "timestamp": "TIMESTAMP",
        "uuid": "UUID",
        "boolean": "BOOLEAN",
        "bigint": "BIGINT",
        "blob": "BYTEA",
    },
}


class Ddl(NamedTuple):
    """Statements for one step: those of both backends (types as `_TYPES` placeholders,
    rendered when run), then each backend's own."""

    both: tuple[str, ...] = ()
    sqlite: tuple[str, ...] = ()
    postgresql: tuple[str, ...] = ()

    def statements(self, db: peewee.Database) -> tuple[str, ...]:
        backend = "postgresql" if _is_postgresql(db) else "sqlite"
        types = _TYPES[backend]
        own = self.postgresql if backend == "postgresql" else self.sqlite
        return tuple(statement.format(**types) for statement in self.both) + own


Migration = tuple[int, str, Callable[[peewee.Database], None]]


def ddl(*steps: Ddl) -> Callable[[peewee.Database], None]:
    """A migration that runs the given steps' statements in order."""

    def run(db: peewee.Database) -> None:
        for step in steps:
            for statement in step.statements(db):
                db.execute_sql(statement)

    return run


def _is_postgresql(db: peewee.Database) -> bool:
    if isinstance(db, peewee.PostgresqlDatabase):
        return True
    if isinstance(db, peewee.SqliteDatabase):
        return False
    raise TypeError(f"no migrations are written for {type(db).__name__}")


# The version table. Created under the lock: concurrent CREATE TABLE IF NOT EXISTS is not
# safe on PostgreSQL (two sessions can both pass the check and one fails on pg_type).
_VERSION_TABLE = Ddl(
    both=(
        """CREATE TABLE IF NOT EXISTS "schema_version" (
        "version" INTEGER NOT NULL PRIMARY KEY,
        "name" VARCHAR(100) NOT NULL,
        "applied_at" {timestamp} NOT NULL
    )""",
    )
)

# The voyzu users, their sessions and shares: part of migration 1 since 52c478d, created
# IF NOT EXISTS so migrations 4 and 5 can also run it on databases begun before.
_USER_TABLES = Ddl(
    both=(
        """CREATE TABLE IF NOT EXISTS "user" (
        "id" {pk},
        "uuid" {uuid} NOT NULL,
        "tenant_id" INTEGER NOT NULL,
        "email" VARCHAR(320) NOT NULL,
        "password_hash" VARCHAR(255) NOT NULL,
        "notify_import_complete" {boolean} NOT NULL,
        "notify_export_complete" {boolean} NOT NULL,
        "weekly_digest" {boolean} NOT NULL,
        "created_at" {timestamp} NOT NULL,
        FOREIGN KEY ("tenant_id") REFERENCES "tenant" ("id") ON DELETE CASCADE
    )""",
        """CREATE TABLE IF NOT EXISTS "session" (
        "id" {pk},
        "token_hash" VARCHAR(64) NOT NULL,
        "user_id" INTEGER NOT NULL,
        "created_at" {timestamp} NOT NULL,
        "expires_at" {timestamp} NOT NULL,
        FOREIGN KEY ("user_id") REFERENCES "user" ("id") ON DELETE CASCADE
    )""",
        """CREATE TABLE IF NOT EXISTS "user_share" (
        "id" {pk},
        "owner_id" INTEGER NOT NULL,
        "viewer_id" INTEGER NOT NULL,
        FOREIGN KEY ("owner_id") REFERENCES "user" ("id") ON DELETE CASCADE,
        FOREIGN KEY ("viewer_id") REFERENCES "user" ("id") ON DELETE CASCADE
    )""",
        'CREATE UNIQUE INDEX IF NOT EXISTS "user_uuid" ON "user" ("uuid")',
        'CREATE INDEX IF NOT EXISTS "user_tenant_id" ON "user" ("tenant_id")',
        'CREATE UNIQUE INDEX IF NOT EXISTS "user_email" ON "user" ("email")',
        'CREATE UNIQUE INDEX IF NOT EXISTS "session_token_hash" ON "session" ("token_hash")',
        'CREATE INDEX IF NOT EXISTS "session_user_id" ON "session" ("user_id")',
        'CREATE INDEX IF NOT EXISTS "session_expires_at" ON "session" ("expires_at")',
        'CREATE INDEX IF NOT EXISTS "user_share_owner_id" ON "user_share" ("owner_id")',
        'CREATE INDEX IF NOT EXISTS "user_share_viewer_id" ON "user_share" ("viewer_id")',
        'CREATE UNIQUE INDEX IF NOT EXISTS "user_share_owner_id_viewer_id" ON "user_share" ("owner_id", "viewer_id")',
    )
)

# 1: tenants, their hosts and API keys, the voyzu users (see _USER_TABLES), contacts.
_V1_TENANTS = Ddl(
    both=(
        """CREATE TABLE "tenant" (
        "id" {pk},
        "name" VARCHAR(100) NOT NULL,
        "locale" VARCHAR(8) NOT NULL,
        "honor_accept_language" {boolean} NOT NULL,
        "created_at" {timestamp} NOT NULL,
        "plan" VARCHAR(16) NOT NULL
    )""",
        """CREATE TABLE "tenant_host" (
        "id" {pk},
        "tenant_id" INTEGER NOT NULL,
        "host" VARCHAR(253) NOT NULL,
        FOREIGN KEY ("tenant_id") REFERENCES "tenant" ("id") ON DELETE CASCADE
    )""",
        """CREATE TABLE "api_key" (
        "id" {pk},
        "key_id" VARCHAR(40) NOT NULL,
        "tenant_id" INTEGER NOT NULL,
        "kind" VARCHAR(16) NOT NULL,
        "secret_hash" VARCHAR(64) NOT NULL,
        "label" VARCHAR(100) NOT NULL,
        "created_at" {timestamp} NOT NULL,
        "revoked_at" {timestamp},
        FOREIGN KEY ("tenant_id") REFERENCES "tenant" ("id") ON DELETE CASCADE
    )""",
        'CREATE UNIQUE INDEX "tenant_name" ON "tenant" ("name")',
        'CREATE INDEX "tenant_host_tenant_id" ON "tenant_host" ("tenant_id")',
        'CREATE UNIQUE INDEX "tenant_host_host" ON "tenant_host" ("host")',
        'CREATE UNIQUE INDEX "api_key_key_id" ON "api_key" ("key_id")',
        'CREATE INDEX "api_key_tenant_id" ON "api_key" ("tenant_id")',
        'CREATE UNIQUE INDEX "api_key_secret_hash" ON "api_key" ("secret_hash")',
    )
)

_V1_CONTACTS = Ddl(
    both=(
        """CREATE TABLE "contact" (
        "id" {pk},
        "uuid" {uuid} NOT NULL,
        "tenant_id" INTEGER NOT NULL,
        "email" VARCHAR(320) NOT NULL,
        "email_normalized" VARCHAR(320) NOT NULL,
        "first_name" VARCHAR(100) NOT NULL,
        "last_name" VARCHAR(100) NOT NULL,
        "created_at" {timestamp} NOT NULL,
        "updated_at" {timestamp} NOT NULL,
        "deleted_at" {timestamp},
        "phone" VARCHAR(64) NOT NULL,
        "company" VARCHAR(200) NOT NULL,
        "owner_id" INTEGER,
        FOREIGN KEY ("tenant_id") REFERENCES "tenant" ("id") ON DELETE CASCADE,
        FOREIGN KEY ("owner_id") REFERENCES "user" ("id") ON DELETE SET NULL
    )""",
        'CREATE UNIQUE INDEX "contact_uuid" ON "contact" ("uuid")',
        'CREATE INDEX "contact_tenant_id" ON "contact" ("tenant_id")',
        'CREATE INDEX "contact_owner_id" ON "contact" ("owner_id")',
        'CREATE INDEX "contact_tenant_id_email_normalized" ON "contact" ("tenant_id", "email_normalized")',
    )
)

# 2: the files attached to contacts.
_V2_MEDIA = Ddl(
    both=(
        """CREATE TABLE "media" (
        "id" {pk},
        "uuid" {uuid} NOT NULL,
        "tenant_id" INTEGER NOT NULL,
        "contact_id" INTEGER NOT NULL,
        "collection" VARCHAR(64) NOT NULL,
        "disk" VARCHAR(32) NOT NULL,
        "name" VARCHAR(255) NOT NULL,
        "file_name" VARCHAR(255) NOT NULL,
        "storage_key" VARCHAR(512) NOT NULL,
        "mime_type" VARCHAR(127) NOT NULL,
        "size" INTEGER NOT NULL,
        "sha256" VARCHAR(64) NOT NULL,
        "custom_properties" TEXT NOT NULL,
        "created_at" {timestamp} NOT NULL,
        FOREIGN KEY ("tenant_id") REFERENCES "tenant" ("id") ON DELETE CASCADE,
        FOREIGN KEY ("contact_id") REFERENCES "contact" ("id") ON DELETE CASCADE
    )""",
        'CREATE UNIQUE INDEX "media_uuid" ON "media" ("uuid")',
        'CREATE INDEX "media_tenant_id" ON "media" ("tenant_id")',
        'CREATE INDEX "media_contact_id" ON "media" ("contact_id")',
        'CREATE UNIQUE INDEX "media_storage_key" ON "media" ("storage_key")',
        'CREATE INDEX "media_contact_id_collection_created_at" ON "media" ("contact_id", "collection", "created_at")',
    )
)

# 3: Close file uploads, email activities and their attachments, server-side secrets.
_V3_CLOSE = Ddl(
    both=(
        """CREATE TABLE "file_upload" (
        "id" {pk},
        "file_id" VARCHAR(40) NOT NULL,
        "tenant_id" INTEGER NOT NULL,
        "bucket" VARCHAR(63) NOT NULL,
        "key" VARCHAR(512) NOT NULL,
        "filename" VARCHAR(255) NOT NULL,
        "content_type" VARCHAR(127) NOT NULL,
        "size" {bigint},
        "etag" VARCHAR(64),
        "created_at" {timestamp} NOT NULL,
        "uploaded_at" {timestamp},
        FOREIGN KEY ("tenant_id") REFERENCES "tenant" ("id") ON DELETE CASCADE
    )""",
        """CREATE TABLE "email_activity" (
        "id" {pk},
        "activity_id" VARCHAR(40) NOT NULL,
        "tenant_id" INTEGER NOT NULL,
        "contact_id" INTEGER NOT NULL,
        "fields" TEXT NOT NULL,
        "created_at" {timestamp} NOT NULL,
        FOREIGN KEY ("tenant_id") REFERENCES "tenant" ("id") ON DELETE CASCADE,
        FOREIGN KEY ("contact_id") REFERENCES "contact" ("id") ON DELETE CASCADE
    )""",
        """CREATE TABLE "email_attachment" (
        "id" {pk},
        "activity_id" INTEGER NOT NULL,
        "upload_id" INTEGER NOT NULL,
        "position" INTEGER NOT NULL,
        "url" VARCHAR(1024) NOT NULL,
        "filename" VARCHAR(255) NOT NULL,
        "size" INTEGER NOT NULL,
        "content_type" VARCHAR(127) NOT NULL,
        FOREIGN KEY ("activity_id") REFERENCES "email_activity" ("id") ON DELETE CASCADE,
        FOREIGN KEY ("upload_id") REFERENCES "file_upload" ("id") ON DELETE RESTRICT
    )""",
        """CREATE TABLE "service_secret" (
        "id" {pk},
        "name" VARCHAR(64) NOT NULL,
        "value" VARCHAR(128) NOT NULL,
        "created_at" {timestamp} NOT NULL
    )""",
        'CREATE UNIQUE INDEX "file_upload_file_id" ON "file_upload" ("file_id")',
        'CREATE INDEX "file_upload_tenant_id" ON "file_upload" ("tenant_id")',
        'CREATE UNIQUE INDEX "file_upload_key" ON "file_upload" ("key")',
        'CREATE UNIQUE INDEX "email_activity_activity_id" ON "email_activity" ("activity_id")',
        'CREATE INDEX "email_activity_tenant_id" ON "email_activity" ("tenant_id")',
        'CREATE INDEX "email_activity_contact_id" ON "email_activity" ("contact_id")',
        'CREATE INDEX "email_attachment_activity_id" ON "email_attachment" ("activity_id")',
        'CREATE INDEX "email_attachment_upload_id" ON "email_attachment" ("upload_id")',
        'CREATE UNIQUE INDEX "email_attachment_activity_id_position" ON "email_attachment" ("activity_id", "position")',
        'CREATE UNIQUE INDEX "service_secret_name" ON "service_secret" ("name")',
    )
)

# 4: voyzu custom fields and their values, spreadsheets, background requests.
_V4_VOYZU = Ddl(
    both=(
        """CREATE TABLE "custom_field" (
        "id" {pk},
        "tenant_id" INTEGER NOT NULL,
        "name" VARCHAR(100) NOT NULL,
        "type" VARCHAR(16) NOT NULL,
        "options" TEXT NOT NULL,
        FOREIGN KEY ("tenant_id") REFERENCES "tenant" ("id") ON DELETE CASCADE
    )""",
        """CREATE TABLE "custom_field_value" (
        "id" {pk},
        "contact_id" INTEGER NOT NULL,
        "name" VARCHAR(100) NOT NULL,
        "value" TEXT NOT NULL,
        FOREIGN KEY ("contact_id") REFERENCES "contact" ("id") ON DELETE CASCADE
    )""",
        """CREATE TABLE "spreadsheet" (
        "id" {pk},
        "uuid" {uuid} NOT NULL,
        "tenant_id" INTEGER NOT NULL,
        "owner_id" INTEGER NOT NULL,
        "name" VARCHAR(255) NOT NULL,
        "format" VARCHAR(8) NOT NULL,
        "kind" VARCHAR(8) NOT NULL,
        "size" INTEGER NOT NULL,
        "row_count" INTEGER NOT NULL,
        "storage_key" VARCHAR(512) NOT NULL,
        "created_at" {timestamp} NOT NULL,
        FOREIGN KEY ("tenant_id") REFERENCES "tenant" ("id") ON DELETE CASCADE,
        FOREIGN KEY ("owner_id") REFERENCES "user" ("id") ON DELETE CASCADE
    )""",
        """CREATE TABLE "background_request" (
        "id" {pk},
        "request_id" VARCHAR(40) NOT NULL,
        "tenant_id" INTEGER NOT NULL,
        "user_id" INTEGER NOT NULL,
        "method" VARCHAR(200) NOT NULL,
        "request" {blob} NOT NULL,
        "status" VARCHAR(16) NOT NULL,
        "percent_complete" INTEGER NOT NULL,
        "commentary" VARCHAR(500) NOT NULL,
        "result" {blob},
        "error" {blob},
        "attempts" INTEGER NOT NULL,
        "lease_until" {timestamp},
        "created_at" {timestamp} NOT NULL,
        "updated_at" {timestamp} NOT NULL,
        FOREIGN KEY ("tenant_id") REFERENCES "tenant" ("id") ON DELETE CASCADE,
        FOREIGN KEY ("user_id") REFERENCES "user" ("id") ON DELETE CASCADE
    )""",
        'CREATE INDEX "custom_field_tenant_id" ON "custom_field" ("tenant_id")',
        'CREATE UNIQUE INDEX "custom_field_tenant_id_name" ON "custom_field" ("tenant_id", "name")',
        'CREATE INDEX "custom_field_value_contact_id" ON "custom_field_value" ("contact_id")',
        'CREATE UNIQUE INDEX "custom_field_value_contact_id_name" ON "custom_field_value" ("contact_id", "name")',
        'CREATE UNIQUE INDEX "spreadsheet_uuid" ON "spreadsheet" ("uuid")',
        'CREATE INDEX "spreadsheet_tenant_id" ON "spreadsheet" ("tenant_id")',
        'CREATE INDEX "spreadsheet_owner_id" ON "spreadsheet" ("owner_id")',
        'CREATE UNIQUE INDEX "spreadsheet_storage_key" ON "spreadsheet" ("storage_key")',
        'CREATE INDEX "spreadsheet_owner_id_created_at" ON "spreadsheet" ("owner_id", "created_at")',
        'CREATE UNIQUE INDEX "background_request_request_id" ON "background_request" ("request_id")',
        'CREATE INDEX "background_request_tenant_id" ON "background_request" ("tenant_id")',
        'CREATE INDEX "background_request_user_id" ON "background_request" ("user_id")',
        'CREATE INDEX "background_request_status" ON "background_request" ("status")',
    )
)

# 5: the columns migration 1 gained after it landed, each (table, column, DDL). Rows already
# there get the models' defaults; on PostgreSQL the default is then dropped so the column is
# exactly as a fresh one. SQLite cannot drop a column default without rebuilding the table,
# so there the DEFAULT stays (harmless: every insert names every column).
_V5_COLUMNS: tuple[tuple[str, str, Ddl], ...] = (
    (
        "tenant",
        "plan",
        Ddl(
            both=(
                """ALTER TABLE "tenant" ADD COLUMN "plan" VARCHAR(16) NOT NULL DEFAULT 'free'""",
            ),
            postgresql=('ALTER TABLE "tenant" ALTER COLUMN "plan" DROP DEFAULT',),
        ),
    ),
    (
        "contact",
        "phone",
        Ddl(
            both=("""ALTER TABLE "contact" ADD COLUMN "phone" VARCHAR(64) NOT NULL DEFAULT ''""",),
            postgresql=('ALTER TABLE "contact" ALTER COLUMN "phone" DROP DEFAULT',),
        ),
    ),
    (
        "contact",
        "company",
        Ddl(
            both=(
                """ALTER TABLE "contact" ADD COLUMN "company" VARCHAR(200) NOT NULL DEFAULT ''""",
            ),
            postgresql=('ALTER TABLE "contact" ALTER COLUMN "company" DROP DEFAULT',),
        ),
    ),
    (
        "contact",
        "owner_id",
        # PostgreSQL names the constraint contact_owner_id_fkey, as CREATE TABLE does.
        Ddl(
            both=(
                'ALTER TABLE "contact" ADD COLUMN "owner_id" INTEGER '
                'REFERENCES "user" ("id") ON DELETE SET NULL',
            ),
        ),
    ),
)

_V5_INDEXES = Ddl(both=('CREATE INDEX IF NOT EXISTS "contact_owner_id" ON "contact" ("owner_id")',))


def _repair_databases_begun_before_voyzu(db: peewee.Database) -> None:
    """Add what migration 1 gained after it landed, wherever it is missing (idempotent).

    Needed by databases begun at schema 1-3 (see the module docstring), including SQLite
    ones that the code of 52c478d-72ca1fc then marked as schema 4 without these tables.
    """
    ddl(_USER_TABLES)(db)
    present: dict[str, set[str]] = {}
    for table, column, step in _V5_COLUMNS:
        if table not in present:
            present[table] = {c.name for c in db.get_columns(table)}
        if column not in present[table]:
            ddl(step)(db)
    ddl(_V5_INDEXES)(db)


# 6: an import's spreadsheet is stored before its rows are applied, with its progress.
_V6_IMPORT_PROGRESS = Ddl(
    both=(
        'ALTER TABLE "spreadsheet" ADD COLUMN "import_status" VARCHAR(16)',
        'ALTER TABLE "spreadsheet" ADD COLUMN "imported_count" INTEGER',
        'ALTER TABLE "spreadsheet" ADD COLUMN "heartbeat_at" {timestamp}',
    )
)


# 7: background requests are claimed by whichever server gets there first, as their owner.
_V7_REQUEST_OWNER = Ddl(both=('ALTER TABLE "background_request" ADD COLUMN "owner" VARCHAR(100)',))


# 11: a background request keeps its caller's trace (W3C traceparent), to run in it.
_V11_TRACE_PARENT = Ddl(
    both=('ALTER TABLE "background_request" ADD COLUMN "trace_parent" VARCHAR(64)',)
)


# 12: no query reads contacts by tenant alone (they go by uuid, or by the live-email or a
# sort index, which lead with the tenant), and crmgate never deletes a tenant; yet every
# contact written updated this index too.
_V12_NO_TENANT_INDEX = Ddl(both=('DROP INDEX IF EXISTS "contact_tenant_id"',))


# 10: shared rate-limit counters, and each tenant's request budget.
_V10_RATE_LIMITS = Ddl(
    both=(
        """CREATE TABLE "rate_counter" (
            "key" VARCHAR(64) NOT NULL PRIMARY KEY,
            "window_start" {bigint} NOT NULL,
            "count" INTEGER NOT NULL)""",
        'ALTER TABLE "tenant" ADD COLUMN "request_limit" INTEGER',
    )
)


# 8: uniqueness rules that were checked in Python become unique indexes.
def unique_in_the_database(db: peewee.Database) -> None:
    """Uniqueness rules checked in Python become unique indexes, so racing writers cannot
    both pass: one live contact per (tenant, email) — a partial index, deleted contacts
    free their email — and custom field names per tenant ignoring case.

    Plain DDL that reads no model, so it means the same whatever the models become.
    Duplicates that races let in before are settled first, keeping the oldest: later
    live contacts with the same email are soft-deleted (their rows stay), and later
    custom field definitions whose name differs only in case are removed.
    """
    postgres = isinstance(db, peewee.PostgresqlDatabase)
    if postgres:
        db.execute_sql("SET LOCAL statement_timeout = 0")  # index builds may take a while
    now = "(now() AT TIME ZONE 'UTC')" if postgres else "strftime('%Y-%m-%d %H:%M:%f', 'now')"
    for statement in (
        f"""UPDATE contact SET deleted_at = {now}
            WHERE deleted_at IS NULL AND EXISTS (
                SELECT 1 FROM contact AS kept
                WHERE kept.tenant_id = contact.tenant_id
                  AND kept.email_normalized = contact.email_normalized
                  AND kept.deleted_at IS NULL AND kept.id < contact.id)""",
        "DROP INDEX IF EXISTS contact_tenant_id_email_normalized",
        'CREATE UNIQUE INDEX IF NOT EXISTS "contact_tenant_live_email" '
        'ON "contact" ("tenant_id", "email_normalized") WHERE ("deleted_at" IS NULL)',
        """DELETE FROM custom_field WHERE EXISTS (
                SELECT 1 FROM custom_field AS kept
                WHERE kept.tenant_id = custom_field.tenant_id
                  AND lower(kept.name) = lower(custom_field.name)
                  AND kept.id < custom_field.id)""",
        "DROP INDEX IF EXISTS custom_field_tenant_id_name",
        """CREATE UNIQUE INDEX IF NOT EXISTS custom_field_tenant_name_nocase
            ON custom_field (tenant_id, lower(name))""",
    ):
        db.execute_sql(statement)


# 9: voyzu search reads a folded search document per contact through a substring index,
# and every sort order walks an index of the tenant's live contacts.
_V9_SEARCH = Ddl(
    both=(
        """ALTER TABLE "contact" ADD COLUMN "search_text" TEXT NOT NULL DEFAULT ''""",
        *(
            f'CREATE INDEX IF NOT EXISTS "contact_sort_{column}" ON "contact" '
            f'("tenant_id", "{column}", "id", "owner_id") WHERE ("deleted_at" IS NULL)'
            for column in (
                "first_name",
                "last_name",
                "email_normalized",
                "company",
                "phone",
                "created_at",
                "updated_at",
            )
        ),
    ),
    postgresql=("SET LOCAL statement_timeout = 0",),
)
#: The substring index of the search documents (the models' Contact.create_table runs it
#: too): SQLite's FTS5 with the trigram tokenizer, an external-content table the triggers
#: keep in step; PostgreSQL's pg_trgm GIN index.
SEARCH_INDEX = Ddl(
    sqlite=(
        """CREATE VIRTUAL TABLE "contact_search" USING fts5(search_text, content='contact', """
        """content_rowid='id', tokenize='trigram case_sensitive 1', detail='none')""",
        """INSERT INTO "contact_search" ("contact_search") VALUES ('rebuild')""",
        """CREATE TRIGGER "contact_search_insert" AFTER INSERT ON "contact" BEGIN
        INSERT INTO "contact_search" (rowid, search_text) VALUES (new.id, new.search_text);
    END""",
        """CREATE TRIGGER "contact_search_delete" AFTER DELETE ON "contact" BEGIN
        INSERT INTO "contact_search" ("contact_search", rowid, search_text)
        VALUES ('delete', old.id, old.search_text);
    END""",
        """CREATE TRIGGER "contact_search_update" AFTER UPDATE OF search_text ON "contact" BEGIN
        INSERT INTO "contact_search" ("contact_search", rowid, search_text)
        VALUES ('delete', old.id, old.search_text);
        INSERT INTO "contact_search" (rowid, search_text) VALUES (new.id, new.search_text);
    END""",
    ),
    postgresql=(
        "CREATE EXTENSION IF NOT EXISTS pg_trgm",
        'CREATE INDEX "contact_search_text_trgm" ON "contact" '
        'USING gin ("search_text" gin_trgm_ops)',
    ),
)


def search_documents(db: peewee.Database) -> None:
    """Add the search document column and its indexes, writing every contact's document
    (search.document, as the write paths do) before the substring index is built."""
    ddl(_V9_SEARCH)(db)
    batch = 5000
    last = 0
    while True:
        rows = db.execute_sql(
            'SELECT "id", "first_name", "last_name", "email", "phone", "company" FROM "contact"'
            ' WHERE "id" > %s ORDER BY "id" LIMIT %s'.replace("%s", db.param),
            (last, batch),
        ).fetchall()
        if not rows:
            break
        last = rows[-1][0]
        values: dict[int, list[str]] = {}
        for contact_id, value in db.execute_sql(
            'SELECT "contact_id", "value" FROM "custom_field_value"'
            ' WHERE "contact_id" BETWEEN %s AND %s ORDER BY "contact_id", "name"'.replace(
                "%s", db.param
            ),
            (rows[0][0], last),
        ):
            values.setdefault(contact_id, []).append(value)
        for contact_id, *fields in rows:
            db.execute_sql(
                'UPDATE "contact" SET "search_text" = %s WHERE "id" = %s'.replace("%s", db.param),
                (search.document(*fields, values.get(contact_id, ())), contact_id),
            )
    ddl(SEARCH_INDEX)(db)


MIGRATIONS: list[Migration] = [
    (1, "core tables", ddl(_V1_TENANTS, _USER_TABLES, _V1_CONTACTS)),
    (2, "contact media", ddl(_V2_MEDIA)),
    (3, "close files and email activities", ddl(_V3_CLOSE)),
    (
        4,
        "voyzu custom fields, spreadsheets and background requests",
        ddl(_USER_TABLES, _V4_VOYZU),
    ),
    (
        5,
        "repair databases begun before the voyzu user tables",
        _repair_databases_begun_before_voyzu,
    ),
    (6, "imports recorded before their rows", ddl(_V6_IMPORT_PROGRESS)),
    (7, "background requests claimed by a server", ddl(_V7_REQUEST_OWNER)),
    (8, "uniqueness rules as unique indexes", unique_in_the_database),
    (9, "search documents and their indexes", search_documents),
    (10, "rate-limit counters and tenant request budgets", ddl(_V10_RATE_LIMITS)),
    (11, "background requests keep their caller's trace", ddl(_V11_TRACE_PARENT)),
    (12, "contacts lose their index on the tenant alone", ddl(_V12_NO_TENANT_INDEX)),
]


def migrate(db: peewee.Database) -> list[int]:
    """Apply every pending migration; returns the versions applied now.

    Each migration runs in its own locked transaction and is skipped if another process
    recorded it meanwhile, so any number of processes may call this at once.
    """
    if db.in_transaction():
        raise RuntimeError("migrate() takes its lock with a transaction of its own")
    applied_now: list[int] = []
    with db.bind_ctx([SchemaVersion]):
        pending = _pending(db)
        if not pending:
            return applied_now
        with _locked(db):
            ddl(_VERSION_TABLE)(db)
        for version, name, run in MIGRATIONS:
            if version not in pending:
                continue
            with _locked(db):
                if SchemaVersion.get_or_none(SchemaVersion.version == version):
                    continue
                run(db)
                SchemaVersion.create(version=version, name=name)
                applied_now.append(version)
    return applied_now


def _pending(db: peewee.Database) -> set[int]:
    """Versions not yet recorded, read without the lock: rows are only ever added, so a
    version seen here is applied for good; the others are checked again under the lock."""
    if not SchemaVersion.table_exists():
        return {version for version, _, _ in MIGRATIONS}
    done = {row.version for row in SchemaVersion.select(SchemaVersion.version)}
    return {version for version, _, _ in MIGRATIONS} - done


@contextmanager
def _locked(db: peewee.Database) -> Iterator[None]:
    """A transaction holding the migration lock from its first statement to its end."""
    if _is_postgresql(db):
        with db.atomic():
            db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
            yield
    else:
        with db.atomic("IMMEDIATE"):
            yield


def current_version(db: peewee.Database) -> int:
    """The highest applied migration, 0 for a database never migrated."""
    with db.bind_ctx([SchemaVersion]):
        if not SchemaVersion.table_exists():
            return 0
        row = SchemaVersion.select(peewee.fn.MAX(SchemaVersion.version)).scalar()
    return int(row or 0)
