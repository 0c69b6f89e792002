"""Exporting the contacts a search finds to a CSV or XLSX file, kept for the user."""

from __future__ import annotations

from collections.abc import Iterator

from crm.v1 import crm_pb2

from server.crm import contacts, custom_fields, messages, sheets, spreadsheets
from server.crm.background import Progress
from server.crm.dates import iso
from server.crm.users import require_paid, signed_in
from server.database.models import Contact, utcnow
from server.errors import invalid_argument
from server.objects import ObjectStorage


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
    matches = list(contacts.every_match(user, given.search))
    progress(10, f"Writing {len(matches)} contacts")
    data, count = spreadsheets.write(format_, headers, _cells(matches, names))
    name = f"contacts-{utcnow():%Y%m%d-%H%M%S}.{format_}"
    stored = messages.spreadsheet(sheets.store(buckets, user, name, "export", data, count))
    return crm_pb2.ExportResult(spreadsheet=stored)


def _cells(matches: list[Contact], names: list[str]) -> Iterator[list[str]]:
    """Each contact as a row, in the order of the export's headers."""
    for contact in matches:
        values = {value.name: value.value for value in contact.custom_values}
        yield [
            contact.first_name,
            contact.last_name,
            contact.email,
            contact.phone,
            contact.company,
            iso(contact.created_at),
            iso(contact.updated_at),
            *(values.get(name, "") for name in names),
        ]
