"""Importing contacts from a customer's spreadsheet: columns mapped to fields, each row
added as its own contact (a bad row is reported, not fatal), the file kept afterwards."""

from __future__ import annotations

from crm.v1 import crm_pb2

from server.crm import contacts, custom_fields, messages, sheets, spreadsheets
from server.crm.background import Progress
from server.crm.users import require_paid, signed_in
from server.database.connection import database
from server.errors import ApiError, invalid_argument
from server.objects import ObjectStorage

#: Rows applied in one transaction, with the count of those applied so far.
BATCH_ROWS = 100


def import_contacts(
    buckets: ObjectStorage, user_id: int | None, given: crm_pb2.ImportInput, progress: Progress
) -> crm_pb2.ImportResult:
    """Add a contact per row; the file as a whole is refused (INVALID_ARGUMENT) when it
    cannot be read or its columns cannot be mapped, before any contact is added."""
    user = signed_in(user_id)
    require_paid(user)
    try:
        sheet = spreadsheets.read(given.file_name, given.content)
    except spreadsheets.SpreadsheetError as error:
        raise invalid_argument(str(error)) from None
    names = custom_fields.names(user.tenant_id)
    allowed = {*spreadsheets.STANDARD_FIELDS, *(f"custom:{name}" for name in names)}
    wrong = sorted(target for target in given.mapping.values() if target not in allowed)
    if wrong:
        raise invalid_argument(
            f"Mapping targets must be one of {', '.join(sorted(allowed))}; not {', '.join(wrong)}."
        )
    try:
        targets, ignored = spreadsheets.column_targets(sheet.headers, given.mapping, names)
    except spreadsheets.SpreadsheetError as error:
        raise invalid_argument(str(error)) from None
    if "Email" not in targets:
        raise invalid_argument("No column maps to Email; add it to Mapping.")
    errors: list[crm_pb2.RowError] = []
    imported = 0
    total = len(sheet.rows)
    # Recorded before the first row, so an interrupted import shows how far it got: each
    # batch of rows commits with the count, so the count is exact whenever it stops.
    stored = sheets.store(buckets, user, given.file_name, "import", given.content, total)
    for start in range(0, total, BATCH_ROWS):
        end = min(start + BATCH_ROWS, total)
        with database.atomic():
            for index in range(start, end):
                fields, values = spreadsheets.row_values(targets, sheet.rows[index])
                web = crm_pb2.WebContact(
                    first_name=fields.get("FirstName", ""),
                    last_name=fields.get("LastName", ""),
                    email=fields.get("Email", ""),
                    phone=fields.get("Phone", ""),
                    company=fields.get("Company", ""),
                    custom_fields=values,
                )
                try:
                    contacts.add(user, web)
                    imported += 1
                except ApiError as error:
                    errors.append(crm_pb2.RowError(row=index + 2, message=error.message))
            sheets.record_import(stored, imported)
        progress(int(end * 100 / total), f"Imported {end} of {total} rows")
    sheets.record_import(stored, imported, done=True)
    return crm_pb2.ImportResult(
        imported_count=imported,
        errors=errors,
        ignored_columns=ignored,
        spreadsheet=messages.spreadsheet(stored),
    )
