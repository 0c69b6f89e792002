"""Importing contacts from a customer's spreadsheet: columns mapped to fields, each row
added as its own contact (a bad row is reported, not fatal), the file kept afterwards.

Rows are applied in batches: each batch is checked in Python, then inserted with one
multi-row statement per table in one transaction that also records how many rows were
applied. The database decides duplicates (its partial unique index on live emails), so
a contact created meanwhile by someone else is reported like any other duplicate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from crm.v1 import crm_pb2

from server.crm import contacts, custom_fields, messages, sheets, spreadsheets
from server.crm.background import Progress
from server.crm.users import require_paid, signed_in
from server.database.connection import database
from server.database.models import (
    BaseModel,
    Contact,
    CustomField,
    CustomFieldValue,
    User,
    utcnow,
)
from server.errors import ApiError, invalid_argument
from server.objects import ObjectStorage

#: Rows applied in one transaction, with the count of those applied so far: big enough
#: that statements carry many rows, small enough that a batch commits in milliseconds.
BATCH_ROWS = 1000
#: Rows per INSERT statement: SQLite allows 32,766 parameters; a contact takes 11.
INSERT_ROWS = 500


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
    known = custom_fields.by_name(user.tenant_id)
    names = sorted(field.name for field in known.values())
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
        batch = _Batch(user, known)
        for index in range(start, end):
            batch.check(sheet.numbers[index], spreadsheets.row_values(targets, sheet.rows[index]))
        with database.atomic():
            imported += batch.insert()
            sheets.record_import(stored, imported)
        errors += sorted(batch.errors, key=lambda error: error.row)
        progress(int(end * 100 / total), f"Imported {end} of {total} rows")
    sheets.record_import(stored, imported, done=True)
    return crm_pb2.ImportResult(
        imported_count=imported,
        errors=errors,
        ignored_columns=ignored,
        spreadsheet=messages.spreadsheet(stored),
    )


class _Batch:
    """Rows of one transaction: those that passed the checks, and the errors so far."""

    def __init__(self, user: User, known: Mapping[str, CustomField]) -> None:
        self.user = user
        self.known = known
        self.now = utcnow()
        self.errors: list[crm_pb2.RowError] = []
        #: (row number, contact columns, custom values) of the rows to insert.
        self.rows: list[tuple[int, dict[str, object], dict[str, str]]] = []

    def check(self, number: int, row: tuple[dict[str, str], dict[str, str]]) -> None:
        fields, values = row
        web = crm_pb2.WebContact(
            first_name=fields.get("FirstName", ""),
            last_name=fields.get("LastName", ""),
            email=fields.get("Email", ""),
            phone=fields.get("Phone", ""),
            company=fields.get("Company", ""),
            custom_fields=values,
        )
        try:
            checked = contacts.check(self.known, web)
        except ApiError as error:
            self.errors.append(crm_pb2.RowError(row=number, message=error.message))
            return
        self.rows.append((number, contacts.contact_row(self.user, web, checked, self.now), checked))

    def insert(self) -> int:
        """Insert the rows (inside the caller's transaction); a row whose email is taken
        — by a live contact or an earlier row of the file — is a duplicate error. Answers
        how many were inserted."""
        inserted: dict[str, int] = {}
        for start in range(0, len(self.rows), INSERT_ROWS):
            chunk = [columns for _, columns, _ in self.rows[start : start + INSERT_ROWS]]
            inserted.update(_insert_new(chunk))
        duplicate = contacts.duplicate().message
        values = []
        for number, columns, custom in self.rows:
            contact_id = inserted.get(columns["uuid"].hex)  # type: ignore[attr-defined]
            if contact_id is None:
                self.errors.append(crm_pb2.RowError(row=number, message=duplicate))
                continue
            values += [
                {"contact": contact_id, "name": name, "value": value}
                for name, value in custom.items()
                if value != ""
            ]
        for start in range(0, len(values), INSERT_ROWS):
            _insert(CustomFieldValue, values[start : start + INSERT_ROWS])
        return len(inserted)


def _insert_new(rows: Sequence[dict[str, object]]) -> dict[str, int]:
    """Insert the contacts no unique index refuses (the first of two rows with one email
    wins); answers the inserted ones' ids by their uuid's hex digits (SQLite stores
    those; PostgreSQL answers the dashed form)."""
    found = _insert(Contact, rows, ' ON CONFLICT DO NOTHING RETURNING "uuid", "id"')
    return {str(raw).replace("-", ""): contact_id for raw, contact_id in found}


def _insert(model: type[BaseModel], rows: Sequence[dict[str, object]], tail: str = "") -> list:
    """One multi-row INSERT of rows keyed alike by field name, written directly: Peewee's
    insert_many spends more time building the statement than the database running it."""
    if not rows:
        return []
    fields = [model._meta.fields[name] for name in rows[0]]
    db = model._meta.database
    one = "(" + ", ".join([db.param] * len(fields)) + ")"
    columns = ", ".join(f'"{field.column_name}"' for field in fields)
    sql = f'INSERT INTO "{model._meta.table_name}" ({columns}) VALUES ' + ", ".join(
        [one] * len(rows)
    )
    values = [field.db_value(row[field.name]) for row in rows for field in fields]
    cursor = db.execute_sql(sql + tail, values)
    return cursor.fetchall() if tail else []
