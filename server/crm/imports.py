"""Importing contacts from a customer's spreadsheet: columns mapped to fields, each row
added as its own contact (a bad row is reported, not fatal), the file kept afterwards."""

from __future__ import annotations

from crm.v1 import crm_pb2

from server.crm import contacts, custom_fields, sheets, spreadsheets
from server.crm.background import Progress
from server.crm.users import require_paid, signed_in
from server.errors import ApiError, invalid_argument
from server.objects import ObjectStorage


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
    for index, row in enumerate(sheet.rows):
        fields, values = spreadsheets.row_values(targets, row)
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
        progress(int((index + 1) * 100 / total), f"Imported {index + 1} of {total} rows")
    stored = sheets.store(buckets, user, given.file_name, "import", given.content, total)
    return crm_pb2.ImportResult(
        imported_count=imported, errors=errors, ignored_columns=ignored, spreadsheet=stored
    )
