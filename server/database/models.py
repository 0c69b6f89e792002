"""Plain Peewee models for the core of crmgate: tenants, their hosts, API keys, contacts.

Indices sit beside the fields they serve. Times are naive UTC datetimes.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime

import peewee

from server.database.connection import database
from server.database.migrations import SEARCH_INDEX, ddl


def utcnow() -> datetime:
    """Naive UTC, the form both SQLite and PostgreSQL columns round-trip unchanged."""
    return datetime.now(UTC).replace(tzinfo=None)


def time_ordered_uuid() -> uuid.UUID:
    """A version 7 UUID (RFC 9562): the Unix time in milliseconds, then 74 random bits.
    Why: ids made one after another sit side by side in a unique index, so a batch of new
    contacts writes a few index pages where random (version 4) ids wrote one each: on
    SQLite the random uuid index alone dirtied a page per imported row."""
    milliseconds = time.time_ns() // 1_000_000
    random = int.from_bytes(os.urandom(10), "big") & ~(0xF << 76 | 0x3 << 62)
    return uuid.UUID(int=milliseconds << 80 | random | 0x7 << 76 | 0x2 << 62)


class BaseModel(peewee.Model):
    class Meta:
        database = database
        legacy_table_names = False


class Tenant(BaseModel):
    """A customer of crmgate; every other row belongs to exactly one tenant."""

    name = peewee.CharField(max_length=100, unique=True)
    locale = peewee.CharField(max_length=8, default="en")
    # When true, a caller's Accept-Language may pick the message language.
    honor_accept_language = peewee.BooleanField(default=True)
    created_at = peewee.DateTimeField(default=utcnow)
    # The voyzu subscription: "free" or "paid" (imports and exports need paid).
    plan = peewee.CharField(max_length=16, default="free")
    # Requests per rate window for each of the tenant's keys and sessions; None: the
    # server's default (CRMGATE_RATE_LIMIT).
    request_limit = peewee.IntegerField(null=True)


class TenantHost(BaseModel):
    """A host name bound to one tenant: the C2C base URL is per tenant host."""

    tenant = peewee.ForeignKeyField(Tenant, backref="hosts", on_delete="CASCADE")
    host = peewee.CharField(max_length=253, unique=True)  # lowercase, no port


class ApiKey(BaseModel):
    """An API key, stored only as the SHA-256 of the plaintext shown once at creation.

    Keys carry 256 bits of randomness, so a fast hash is enough: nothing can be guessed
    from it, and lookups by hash stay cheap on every request.
    """

    key_id = peewee.CharField(max_length=40, unique=True)  # public handle for revocation
    tenant = peewee.ForeignKeyField(Tenant, backref="api_keys", on_delete="CASCADE")
    kind = peewee.CharField(max_length=16)  # "c2c" or "close"
    secret_hash = peewee.CharField(max_length=64, unique=True)
    label = peewee.CharField(max_length=100, default="")
    created_at = peewee.DateTimeField(default=utcnow)
    revoked_at = peewee.DateTimeField(null=True)


class User(BaseModel):
    """A voyzu user of a customer (tenant). Passwords are kept only as scrypt hashes."""

    uuid = peewee.UUIDField(default=uuid.uuid4, unique=True)
    tenant = peewee.ForeignKeyField(Tenant, backref="users", on_delete="CASCADE")
    email = peewee.CharField(max_length=320, unique=True)  # lowercase; sign-in is by email
    password_hash = peewee.CharField(max_length=255)
    notify_import_complete = peewee.BooleanField(default=False)
    notify_export_complete = peewee.BooleanField(default=False)
    weekly_digest = peewee.BooleanField(default=False)
    created_at = peewee.DateTimeField(default=utcnow)


class Session(BaseModel):
    """A signed-in voyzu session, stored as the SHA-256 of its random id."""

    token_hash = peewee.CharField(max_length=64, unique=True)
    user = peewee.ForeignKeyField(User, backref="sessions", on_delete="CASCADE")
    created_at = peewee.DateTimeField(default=utcnow)
    expires_at = peewee.DateTimeField(index=True)


class UserShare(BaseModel):
    """`viewer` sees the contacts `owner` owns."""

    owner = peewee.ForeignKeyField(User, backref="shares", on_delete="CASCADE")
    viewer = peewee.ForeignKeyField(User, backref="shared_with_me", on_delete="CASCADE")

    class Meta:
        indexes = ((("owner", "viewer"), True), (("viewer",), False))


class Contact(BaseModel):
    """A person in a tenant's CRM. Deleting only sets deleted_at (soft delete)."""

    uuid = peewee.UUIDField(default=time_ordered_uuid, unique=True)
    # Not indexed alone: the sort and live-email indexes below lead with it (migration 12).
    tenant = peewee.ForeignKeyField(Tenant, backref="contacts", on_delete="CASCADE", index=False)
    email = peewee.CharField(max_length=320)
    # lower(trim(email)): what C2C lookups match on.
    email_normalized = peewee.CharField(max_length=320)
    first_name = peewee.CharField(max_length=100, default="")
    last_name = peewee.CharField(max_length=100, default="")
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)
    deleted_at = peewee.DateTimeField(null=True)
    phone = peewee.CharField(max_length=64, default="")
    company = peewee.CharField(max_length=200, default="")
    # The voyzu user who owns it; None (made by an operator) means every user sees it.
    owner = peewee.ForeignKeyField(User, null=True, backref="contacts", on_delete="SET NULL")
    # What voyzu search matches (server/database/search.py: `document`), written with
    # every change of the fields or custom values; indexed as migration 9 made it.
    search_text = peewee.TextField(default="", constraints=[peewee.SQL("DEFAULT ''")])

    @classmethod
    def create_table(cls, safe: bool = True, **options: object) -> None:
        """The table, its indexes, and the backend's own index of the search documents."""
        super().create_table(safe, **options)
        db = cls._meta.database
        ddl(SEARCH_INDEX)(getattr(db, "obj", db))  # the proxy's database


#: Every voyzu sort order (column, then id) of a tenant's live contacts is an index walk;
#: the owner rides along so visibility is decided without reading the row.
SORT_INDEXES = {}
for _column in (
    Contact.first_name,
    Contact.last_name,
    Contact.email_normalized,
    Contact.company,
    Contact.phone,
    Contact.created_at,
    Contact.updated_at,
):
    SORT_INDEXES[_column.name] = f"contact_sort_{_column.name}"
    Contact.add_index(
        Contact.tenant,
        _column,
        Contact.id,
        Contact.owner,
        where=Contact.deleted_at.is_null(),
        name=SORT_INDEXES[_column.name],
    )


# One live contact per email in a tenant, enforced by the database so that racing creates
# cannot both pass a check; a deleted contact frees its email. Also serves C2C lookups.
Contact.add_index(
    Contact.tenant,
    Contact.email_normalized,
    unique=True,
    where=Contact.deleted_at.is_null(),
    name="contact_tenant_live_email",
)


def normalize_email(email: str) -> str:
    return email.strip().lower()


class Media(BaseModel):
    """A stored file attached to a contact, in a named collection (C2C uses "default").

    Written only after its file is safely in storage, and in the same transaction as the
    other files of its request, so a request's media appear all together or not at all.
    """

    uuid = peewee.UUIDField(default=uuid.uuid4, unique=True)
    tenant = peewee.ForeignKeyField(Tenant, backref="media", on_delete="CASCADE")
    contact = peewee.ForeignKeyField(Contact, backref="media", on_delete="CASCADE")
    collection = peewee.CharField(max_length=64, default="default")
    disk = peewee.CharField(max_length=32, default="public")
    name = peewee.CharField(max_length=255)  # the stored name, e.g. photo.webp
    file_name = peewee.CharField(max_length=255)  # the name in storage (sanitized)
    storage_key = peewee.CharField(max_length=512, unique=True)
    mime_type = peewee.CharField(max_length=127)
    size = peewee.IntegerField()
    sha256 = peewee.CharField(max_length=64)
    custom_properties = peewee.TextField(default="{}")  # JSON: alt, description
    created_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("contact", "collection", "created_at"), False),)


class FileUpload(BaseModel):
    """A Close Files API upload: pending until object storage receives the file."""

    file_id = peewee.CharField(max_length=40, unique=True)  # "file_…"
    tenant = peewee.ForeignKeyField(Tenant, backref="file_uploads", on_delete="CASCADE")
    bucket = peewee.CharField(max_length=63)
    key = peewee.CharField(max_length=512, unique=True)
    filename = peewee.CharField(max_length=255)
    content_type = peewee.CharField(max_length=127)
    size = peewee.BigIntegerField(null=True)
    etag = peewee.CharField(max_length=64, null=True)
    created_at = peewee.DateTimeField(default=utcnow)
    uploaded_at = peewee.DateTimeField(null=True)  # set once storage has the file


class EmailActivity(BaseModel):
    """An email logged on a contact through the Close-compatible API."""

    activity_id = peewee.CharField(max_length=40, unique=True)  # "acti_…"
    tenant = peewee.ForeignKeyField(Tenant, backref="email_activities", on_delete="CASCADE")
    contact = peewee.ForeignKeyField(Contact, backref="email_activities", on_delete="CASCADE")
    # Close's other fields (subject, bodies, recipients…) as JSON: they are only echoed.
    fields = peewee.TextField(default="{}")
    created_at = peewee.DateTimeField(default=utcnow)


class EmailAttachment(BaseModel):
    """A file attached to an email activity; it keeps the upload alive past 24 hours."""

    activity = peewee.ForeignKeyField(EmailActivity, backref="attachments", on_delete="CASCADE")
    upload = peewee.ForeignKeyField(FileUpload, backref="attachments", on_delete="RESTRICT")
    position = peewee.IntegerField()
    url = peewee.CharField(max_length=1024)
    filename = peewee.CharField(max_length=255)
    size = peewee.IntegerField()
    content_type = peewee.CharField(max_length=127)

    class Meta:
        indexes = ((("activity", "position"), True),)


class ServiceSecret(BaseModel):
    """Server-side signing keys (storage credentials, download tokens), made at first use
    and shared by every process on the same database."""

    name = peewee.CharField(max_length=64, unique=True)
    value = peewee.CharField(max_length=128)
    created_at = peewee.DateTimeField(default=utcnow)


class CustomField(BaseModel):
    """A custom field a customer defined for its contacts."""

    tenant = peewee.ForeignKeyField(Tenant, backref="custom_fields", on_delete="CASCADE")
    name = peewee.CharField(max_length=100)
    type = peewee.CharField(max_length=16)  # text, number, date, boolean, select
    options = peewee.TextField(default="[]")  # JSON list, for select


# Field names are matched ignoring case, so they are unique ignoring case.
CustomField.add_index(
    CustomField.tenant,
    peewee.fn.LOWER(CustomField.name),
    unique=True,
    name="custom_field_tenant_name_nocase",
)


class CustomFieldValue(BaseModel):
    """One contact's value of one custom field (searched with the contact)."""

    contact = peewee.ForeignKeyField(Contact, backref="custom_values", on_delete="CASCADE")
    name = peewee.CharField(max_length=100)
    value = peewee.TextField()

    class Meta:
        indexes = ((("contact", "name"), True),)


class Spreadsheet(BaseModel):
    """A CSV or XLSX file a user imported or exported; its bytes are in object storage."""

    uuid = peewee.UUIDField(default=uuid.uuid4, unique=True)
    tenant = peewee.ForeignKeyField(Tenant, backref="spreadsheets", on_delete="CASCADE")
    owner = peewee.ForeignKeyField(User, backref="spreadsheets", on_delete="CASCADE")
    name = peewee.CharField(max_length=255)
    format = peewee.CharField(max_length=8)  # csv, xlsx
    kind = peewee.CharField(max_length=8)  # import, export
    size = peewee.IntegerField()
    row_count = peewee.IntegerField(default=0)
    storage_key = peewee.CharField(max_length=512, unique=True)
    created_at = peewee.DateTimeField(default=utcnow)
    # Imports only: recorded before the first row is applied, so one a crash interrupted
    # shows how far it got. RUNNING (while `heartbeat_at` is fresh), DONE.
    import_status = peewee.CharField(max_length=16, null=True)
    imported_count = peewee.IntegerField(null=True)
    heartbeat_at = peewee.DateTimeField(null=True)

    class Meta:
        indexes = ((("owner", "created_at"), False),)


class BackgroundRequest(BaseModel):
    """A voyzu `?async=true` call: the stored request, its progress and its outcome.

    In the database so any server process can answer a poll and work survives a restart:
    a worker claims a row with a lease; rows whose lease ran out are retried or failed.
    """

    request_id = peewee.CharField(max_length=40, unique=True)
    tenant = peewee.ForeignKeyField(Tenant, backref="requests", on_delete="CASCADE")
    user = peewee.ForeignKeyField(User, backref="requests", on_delete="CASCADE")
    method = peewee.CharField(max_length=200)
    request = peewee.BlobField()  # the serialized google.protobuf.Any
    status = peewee.CharField(max_length=16, default="PENDING", index=True)
    percent_complete = peewee.IntegerField(default=0)
    commentary = peewee.CharField(max_length=500, default="Queued")
    result = peewee.BlobField(null=True)  # serialized Any of the response
    error = peewee.BlobField(null=True)  # serialized google.rpc.Status
    attempts = peewee.IntegerField(default=0)
    lease_until = peewee.DateTimeField(null=True)
    # The server running it (host:pid:random), set when claimed; finishing checks it.
    owner = peewee.CharField(max_length=100, null=True)
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)
    # The W3C traceparent of the call that started it (tracing on): it runs in that trace.
    trace_parent = peewee.CharField(max_length=64, null=True)


class RateCounter(BaseModel):
    """One fixed-window counter shared by every server process: failed sign-ins per
    account or address, wrong credentials per address, requests per key or session.
    `key` is a digest (never an email, address or credential in the clear)."""

    key = peewee.CharField(max_length=64, primary_key=True)
    window_start = peewee.BigIntegerField()  # Unix seconds
    count = peewee.IntegerField()
