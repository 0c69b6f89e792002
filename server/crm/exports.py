"""Exporting the contacts a search finds to a CSV or XLSX file, kept for the user.

The rows stream: read through a server-side cursor a chunk at a time (with one query per
chunk for their custom values), written as they come into a temp file of the object
store, published when complete. Memory stays flat however many contacts match."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from crm.v1 import crm_pb2

from server.crm import contacts, custom_fields, messages, sheets, spreadsheets
from server.crm.background import Progress
from server.crm.dates import iso_stored
from server.crm.users import require_paid, signed_in
from server.database.connection import stream_rows
from server.database.models import Contact, CustomFieldValue, utcnow
from server.errors import invalid_argument
from server.objects import ObjectStorage

#: Contacts fetched at once (and whose custom values one query reads).
CHUNK_ROWS = 2000
COLUMNS = (
    Contact.id,
    Contact.first_name,
    Contact.last_name,
    Contact.email,
    Contact.phone,
    Contact.company,
    Contact.created_at,
    Contact.updated_at,
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
    rows = _cells(stream_rows(query.select(*COLUMNS), CHUNK_ROWS), names, progress, total)
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
) -> Iterator[list[list[str]]]:
    """Each chunk of contacts (rows of COLUMNS) as rows of cells in the order of the
    export's headers; progress after every chunk (where a drain stops the export)."""
    blanks = [""] * len(names)
    written = 0
    for chunk in chunks:
        values = _custom_values([row[0] for row in chunk]) if names else {}
        rows = []
        for id_, first, last, email, phone, company, created, updated in chunk:
            row = [first, last, email, phone, company, iso_stored(created), iso_stored(updated)]
            if names:
                own = values.get(id_)
                row += [own.get(name, "") for name in names] if own else blanks
            rows.append(row)
        yield rows  # type: ignore[misc]
        written += len(chunk)
        progress(int(written * 99 / max(total, 1)), f"Wrote {written} of {total} contacts")


def _custom_values(contact_ids: list[object]) -> dict[object, dict[str, str]]:
    """Custom values of the given contacts: contact id → field name → value. Written
    directly: Peewee builds an IN list of thousands slower than the database answers."""
    db = CustomFieldValue._meta.database
    marks = ", ".join([db.param] * len(contact_ids))
    sql = f'SELECT "contact_id", "name", "value" FROM "custom_field_value" WHERE "contact_id" IN ({marks})'
    found: dict[object, dict[str, str]] = {}
    for contact_id, name, value in db.execute_sql(sql, contact_ids).fetchall():
        found.setdefault(contact_id, {})[name] = value
    return found
