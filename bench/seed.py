"""Bulk-seeding a tenant with synthetic contacts, fast, for the scale benchmarks.

Rows go in by batched SQL (SQLite) or COPY (PostgreSQL) on a schema the migrations made;
each contact's search document is written by `server.database.search.document`, exactly
as the product's write paths do, and SQLite's trigram index is fed by the product's own
triggers. On PostgreSQL the contact indexes are dropped during a big COPY and rebuilt from
their own definitions after, then the tables are vacuumed and analysed, as a database
that has been running a while would be.

Names are built from syllables so their frequencies are known: each of POOL first names
and POOL last names appears once in POOL contacts (about 0.1 % each for POOL = 1000);
one first name in ten carries a non-ASCII letter ("ø") and one in ten an accent ("é").
"""

from __future__ import annotations

import io
import itertools
import os
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import unquote, urlsplit

from server.database import search

POOL = 1000
_LAST_SYLLABLES = ["ka", "ro", "vi", "ne", "lu", "ta", "mo", "si", "pe", "du", "ga", "ri"]
_FIRST_SYLLABLES = ["an", "el", "or", "is", "um", "ad", "et", "ol", "ir", "ub", "ak", "om"]
_COMPANY_WORDS = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Wonka"]
_COMPANY_SUFFIXES = ["Ltd", "GmbH", "Inc", "SA", "Oy", "BV", "Kft"]
REGIONS = ["north", "south", "east", "west", "centre"]
#: One contact in this many has a value of the custom field Region.
REGION_EVERY = 10
BASE_TIME = datetime(2020, 1, 1)
BATCH = 20_000
#: PostgreSQL: loads of at least this many contacts drop the contact indexes and rebuild
#: them after.
REBUILD_INDEXES_FROM = 100_000


def _words(syllables: list[str], count: int) -> list[str]:
    combos = ("".join(parts) for parts in itertools.product(syllables, repeat=3))
    return [word.capitalize() for word, _ in zip(combos, range(count), strict=False)]


LAST_NAMES = _words(_LAST_SYLLABLES, POOL)
FIRST_NAMES = [
    name.replace("o", "ø", 1)
    if index % 10 == 3 and "o" in name
    else name.replace("e", "é", 1)
    if index % 10 == 7 and "e" in name
    else name
    for index, name in enumerate(_words(_FIRST_SYLLABLES, POOL))
]


@dataclass(frozen=True)
class Row:
    first_name: str
    last_name: str
    email: str
    phone: str
    company: str
    region: str


def row(index: int) -> Row:
    """The index-th synthetic contact of a tenant (the same in every tenant)."""
    first = FIRST_NAMES[index % POOL]
    last = LAST_NAMES[(index // POOL + index * 7) % POOL]
    local = search.fold(f"{first}.{last}").replace("ø", "o")
    company = f"{_COMPANY_WORDS[index % 7]} {_COMPANY_SUFFIXES[index // 7 % 7]}"
    return Row(
        first_name=first,
        last_name=last,
        email=f"{local}{index}@mail{index % 50}.example",
        phone=f"+1 555 {index:07d}",
        company=company,
        region=REGIONS[index % len(REGIONS)] if index % REGION_EVERY == 0 else "",
    )


def document(contact: Row) -> str:
    values = [contact.region] if contact.region else []
    return search.document(
        contact.first_name,
        contact.last_name,
        contact.email,
        contact.phone,
        contact.company,
        values,
    )


_COLUMNS = (
    "id",
    "uuid",
    "tenant_id",
    "email",
    "email_normalized",
    "first_name",
    "last_name",
    "created_at",
    "updated_at",
    "phone",
    "company",
    "owner_id",
    "search_text",
)


def _rows(first_id: int, tenant_id: int, owner_id: int, count: int) -> Iterator[tuple]:
    """Contact rows; every other one owned by `owner_id`, the rest by nobody (both
    visible to that user)."""
    for index in range(count):
        contact = row(index)
        at = BASE_TIME + timedelta(seconds=index)
        yield (
            first_id + index,
            str(uuid.UUID(bytes=os.urandom(16), version=4)),
            tenant_id,
            contact.email,
            contact.email.lower(),
            contact.first_name,
            contact.last_name,
            at,
            at,
            contact.phone,
            contact.company,
            owner_id if index % 2 == 0 else None,
            document(contact),
        )


def seed(database_url: str, tenant_name: str, owner_email: str, count: int) -> None:
    """Add `count` synthetic contacts (and their Region values) to the tenant, owned by
    the user as described in `_rows`. The schema must be migrated and the custom field
    Region defined (text) already."""
    parts = urlsplit(database_url)
    if parts.scheme == "sqlite":
        _seed_sqlite(unquote(parts.path)[1:], tenant_name, owner_email, count)
    else:
        _seed_postgresql(database_url, tenant_name, owner_email, count)


def _ids(cursor: object, tenant_name: str, owner_email: str, param: str) -> tuple[int, int, int]:
    cursor.execute(f"SELECT id FROM tenant WHERE name = {param}", (tenant_name,))
    (tenant_id,) = cursor.fetchone()
    cursor.execute(f'SELECT id FROM "user" WHERE email = {param}', (owner_email,))
    (owner_id,) = cursor.fetchone()
    cursor.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM contact")
    (first_id,) = cursor.fetchone()
    return tenant_id, owner_id, first_id


def _values(first_id: int, count: int) -> Iterator[tuple[int, str, str]]:
    for index in range(0, count, REGION_EVERY):
        yield first_id + index, "Region", row(index).region


def _seed_sqlite(path: str, tenant_name: str, owner_email: str, count: int) -> None:
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        cursor = connection.cursor()
        cursor.execute("PRAGMA synchronous = OFF")
        cursor.execute("PRAGMA cache_size = -262144")
        tenant_id, owner_id, first_id = _ids(cursor, tenant_name, owner_email, "?")
        columns = ", ".join(f'"{column}"' for column in _COLUMNS)
        marks = ", ".join("?" for _ in _COLUMNS)
        cursor.execute("BEGIN")
        # The trigger's insert, done once for all rows: inside a trigger FTS5 flushes its
        # pending terms at every statement (a statement savepoint), so row by row is slow.
        cursor.execute("SELECT sql FROM sqlite_master WHERE name = 'contact_search_insert'")
        (trigger,) = cursor.fetchone()
        cursor.execute('DROP TRIGGER "contact_search_insert"')
        rows = _rows(first_id, tenant_id, owner_id, count)
        while batch := list(itertools.islice(rows, BATCH)):
            cursor.executemany(f"INSERT INTO contact ({columns}) VALUES ({marks})", batch)
        cursor.execute(
            "INSERT INTO contact_search (rowid, search_text)"
            " SELECT id, search_text FROM contact WHERE id >= ?",
            (first_id,),
        )
        cursor.execute(trigger)
        cursor.executemany(
            "INSERT INTO custom_field_value (contact_id, name, value) VALUES (?, ?, ?)",
            _values(first_id, count),
        )
        cursor.execute("COMMIT")
        cursor.execute("ANALYZE")
    finally:
        connection.close()


def _copy_text(value: object) -> str:
    if value is None:
        return "\\N"
    text = value.isoformat(sep=" ") if isinstance(value, datetime) else str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


class _CopyStream(io.RawIOBase):
    """Rows as COPY text, produced as psycopg2 reads them (nothing held whole)."""

    def __init__(self, rows: Iterator[tuple]) -> None:
        self._lines = ("\t".join(map(_copy_text, values)) + "\n" for values in rows)
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:
        while len(self._pending) < len(buffer):
            chunk = "".join(itertools.islice(self._lines, 1000)).encode()
            if not chunk:
                break
            self._pending += chunk
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def _seed_postgresql(url: str, tenant_name: str, owner_email: str, count: int) -> None:
    import psycopg2

    connection = psycopg2.connect(url)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute("SET statement_timeout = 0")
            cursor.execute("SET maintenance_work_mem = '256MB'")
            tenant_id, owner_id, first_id = _ids(cursor, tenant_name, owner_email, "%s")
            cursor.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'contact'"
                " AND indexname NOT IN ('contact_pkey', 'contact_uuid')"
            )
            # Rebuilding the indexes beats maintaining them row by row only for a big load.
            indexes = cursor.fetchall() if count >= REBUILD_INDEXES_FROM else []
            for name, _ in indexes:
                cursor.execute(f'DROP INDEX "{name}"')
            columns = ", ".join(f'"{column}"' for column in _COLUMNS)
            cursor.copy_expert(
                f"COPY contact ({columns}) FROM STDIN",
                _CopyStream(_rows(first_id, tenant_id, owner_id, count)),
            )
            cursor.copy_expert(
                "COPY custom_field_value (contact_id, name, value) FROM STDIN",
                _CopyStream(_values(first_id, count)),
            )
            for _, definition in indexes:
                cursor.execute(definition)
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence('contact', 'id'), (SELECT MAX(id) FROM contact))"
            )
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE contact")
            cursor.execute("VACUUM ANALYZE custom_field_value")
    finally:
        connection.close()
