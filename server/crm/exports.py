"""Exporting the contacts a search finds to a CSV or XLSX file, kept for the user.

The rows stream: read through a server-side cursor a chunk at a time (with one query per
chunk for their custom values), written as they come into a temp file of the object
store, published when complete. Memory stays flat however many contacts match."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

import peewee
from crm.v1 import crm_pb2

from server.crm import contacts, custom_fields, messages, sheets, spreadsheets
from server.crm.background import Progress
from server.crm.users import require_paid, signed_in
from server.database.connection import database, stream_rows
from server.database.models import Contact, utcnow
from server.errors import invalid_argument
from server.objects import ObjectStorage

#: Contacts fetched at once (and whose custom values one query reads).
CHUNK_ROWS = 2000
#: `dates.iso` for PostgreSQL's to_char (which truncates to milliseconds, as isoformat does).
_ISO_FORMAT = 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'


def _iso(column: peewee.Field) -> peewee.Node:
    """The timestamp column in `dates.iso`'s form, written by the database: formatting
    two dates a row in Python was a third of an export's CPU. SQLite holds the text
    Peewee wrote (`YYYY-MM-DD HH:MM:SS[.ffffff]`), sliced here."""
    if not isinstance(database.obj, peewee.SqliteDatabase):
        return peewee.fn.to_char(column, _ISO_FORMAT)
    day = peewee.fn.substr(column, 1, 10).concat("T")
    return peewee.Case(
        None,
        [(peewee.fn.length(column) > 19, day.concat(peewee.fn.substr(column, 12, 12)))],
        day.concat(peewee.fn.substr(column, 12, 8)).concat(".000"),
    ).concat("Z")


def _columns() -> tuple[peewee.Node, ...]:
    """The contact's id, then its cells in the order of the export's headers."""
    return (
        Contact.id,
        Contact.first_name,
        Contact.last_name,
        Contact.email,
        Contact.phone,
        Contact.company,
        _iso(Contact.created_at),
        _iso(Contact.updated_at),
    )


def export_contacts(
    buckets: ObjectStorage, user_id: int | None, given: crm_pb2.ExportInput, progress: Progress
) -> crm_pb2.ExportResult:
    """Write every contact matching the search, with the standard fields, the dates and
    each custom field as columns."""
    user = signed_in(user_id)
    require_paid(user)
    format_ = given.format or "csv"
    if format_ not in sheets.CONTENT_TYPES:
        raise invalid_argument("Format must be csv or xlsx.")
    names = custom_fields.names(user.tenant_id)
    headers = [*spreadsheets.STANDARD_FIELDS, "CreatedDate", "UpdatedDate", *names]
    query = contacts.matching(user, given.search)
    total = query.order_by().count()
    progress(1, f"Writing {total} contacts")
    rows = _cells(stream_rows(query.select(*_columns()), CHUNK_ROWS), names, progress, total)
    name = f"contacts-{utcnow():%Y%m%d-%H%M%S}.{format_}"
    stored = sheets.store_written(
        buckets, user, name, "export", lambda sink: spreadsheets.write(format_, sink, headers, rows)
    )
    return crm_pb2.ExportResult(spreadsheet=messages.spreadsheet(stored))


def _cells(
    chunks: Iterator[list[tuple[object, ...]]],
    names: Sequence[str],
    progress: Progress,
    total: int,
) -> Iterator[list[tuple[str, ...]]]:
    """Each chunk of contacts (rows of `_columns`) as rows of cells in the order of the
    export's headers; progress after every chunk (where a drain stops the export)."""
    blanks = ("",) * len(names)
    written = 0
    for chunk in chunks:
        values = _custom_values([row[0] for row in chunk]) if names else {}
        rows = []
        for row in chunk:
            own = values.get(row[0])
            rows.append(row[1:] + (tuple(own.get(name, "") for name in names) if own else blanks))
        yield rows  # type: ignore[misc]
        written += len(chunk)
        progress(int(written * 99 / max(total, 1)), f"Wrote {written} of {total} contacts")


def _custom_values(contact_ids: list[int]) -> dict[int, dict[str, str]]:
    """Custom values of the given contacts: contact id → field name → value. The ids go
    as one parameter (an array's text on PostgreSQL, JSON on SQLite): binding and
    planning thousands of parameters took longer than the lookups."""
    if isinstance(database.obj, peewee.SqliteDatabase):
        among, ids = "IN (SELECT value FROM json_each(?))", json.dumps(contact_ids)
    else:
        among, ids = "= ANY(%s::integer[])", "{" + ",".join(map(str, contact_ids)) + "}"
    sql = (
        f'SELECT "contact_id", "name", "value" FROM "custom_field_value" WHERE "contact_id" {among}'
    )
    found: dict[int, dict[str, str]] = {}
    for contact_id, name, value in database.execute_sql(sql, (ids,)).fetchall():
        found.setdefault(contact_id, {})[name] = value
    return found
