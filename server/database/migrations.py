"""Schema versions: an ordered list of migrations, each applied once, in a transaction.

Rules for adding one: append a new (version, name, function) — never edit an applied one.
A migration that adds a column to an existing table uses `add_columns`, so a fresh
database (whose tables were created from the current models) and an old one converge.
"""

from __future__ import annotations

from collections.abc import Callable

import peewee
from playhouse.migrate import SchemaMigrator
from playhouse.migrate import migrate as apply_operations

from server.database.models import (
    ApiKey,
    BackgroundRequest,
    BaseModel,
    Contact,
    CustomField,
    CustomFieldValue,
    EmailActivity,
    EmailAttachment,
    FileUpload,
    Media,
    ServiceSecret,
    Session,
    Spreadsheet,
    Tenant,
    TenantHost,
    User,
    UserShare,
    utcnow,
)


class SchemaVersion(BaseModel):
    """One row per applied migration."""

    version = peewee.IntegerField(primary_key=True)
    name = peewee.CharField(max_length=100)
    applied_at = peewee.DateTimeField(default=utcnow)


Migration = tuple[int, str, Callable[[peewee.Database], None]]


def create_tables(*models: type[BaseModel]) -> Callable[[peewee.Database], None]:
    def run(db: peewee.Database) -> None:
        db.create_tables(models, safe=True)

    return run


def add_columns(model: type[BaseModel], *names: str) -> Callable[[peewee.Database], None]:
    """Add the model's named fields to its table unless they are there already."""

    def run(db: peewee.Database) -> None:
        table = model._meta.table_name
        present = {column.name for column in db.get_columns(table)}
        migrator = SchemaMigrator.from_database(db)
        operations = [
            migrator.add_column(
                table, model._meta.fields[name].column_name, model._meta.fields[name]
            )
            for name in names
            if model._meta.fields[name].column_name not in present
        ]
        if operations:
            apply_operations(*operations)

    return run


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
        """CREATE UNIQUE INDEX IF NOT EXISTS contact_tenant_live_email
            ON contact (tenant_id, email_normalized) WHERE deleted_at IS NULL""",
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


MIGRATIONS: list[Migration] = [
    (
        1,
        "core tables",
        create_tables(Tenant, TenantHost, ApiKey, User, Session, UserShare, Contact),
    ),
    (2, "contact media", create_tables(Media)),
    (
        3,
        "close files and email activities",
        create_tables(FileUpload, EmailActivity, EmailAttachment, ServiceSecret),
    ),
    (
        4,
        "voyzu custom fields, spreadsheets and background requests",
        create_tables(CustomField, CustomFieldValue, Spreadsheet, BackgroundRequest),
    ),
    (5, "uniqueness rules as unique indexes", unique_in_the_database),
]


def migrate(db: peewee.Database) -> list[int]:
    """Apply every pending migration; returns the versions applied now."""
    applied_now: list[int] = []
    with db.bind_ctx([SchemaVersion]):
        db.create_tables([SchemaVersion], safe=True)
        for version, name, run in MIGRATIONS:
            with _exclusive(db):
                if isinstance(db, peewee.PostgresqlDatabase):
                    # Two processes starting at once must not both apply a migration.
                    db.execute_sql("SELECT pg_advisory_xact_lock(726172)")
                if SchemaVersion.get_or_none(SchemaVersion.version == version):
                    continue
                run(db)
                SchemaVersion.create(version=version, name=name)
                applied_now.append(version)
    return applied_now


def _exclusive(db: peewee.Database) -> peewee._atomic:
    """A transaction that holds the write lock from its first statement on SQLite."""
    if isinstance(db, peewee.SqliteDatabase):
        return db.atomic("IMMEDIATE")
    return db.atomic()


def current_version(db: peewee.Database) -> int:
    with db.bind_ctx([SchemaVersion]):
        row = SchemaVersion.select(peewee.fn.MAX(SchemaVersion.version)).scalar()
    return int(row or 0)
