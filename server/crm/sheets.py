"""Spreadsheets kept for their owner: every import's upload and every export's file, as an
object in storage and a row describing it. (Reading and writing the files themselves is
server/crm/spreadsheets.py.)"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import BinaryIO

from crm.v1 import crm_pb2
from google.api import httpbody_pb2

from server.crm import messages, spreadsheets
from server.database.models import Spreadsheet, User, utcnow
from server.errors import invalid_argument, not_found
from server.files.uploads import display_name, safe_name
from server.objects import ObjectStorage

SPREADSHEET_BUCKET = "spreadsheets"
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def store(
    buckets: ObjectStorage, user: User, name: str, kind: str, data: bytes, rows: int
) -> Spreadsheet:
    """Keep a spreadsheet: the object first, then its row; an object whose row cannot be
    saved is removed again, so no row ever points at nothing. An import's row is RUNNING
    until `record_import(…, done=True)`."""
    row = _described(user, name, kind)
    row.size, row.row_count = len(data), rows
    if kind == "import":
        row.import_status, row.imported_count, row.heartbeat_at = "RUNNING", 0, utcnow()
    buckets.write(SPREADSHEET_BUCKET, row.storage_key, data)
    return _saved(buckets, row)


def store_written(
    buckets: ObjectStorage, user: User, name: str, kind: str, fill: Callable[[BinaryIO], int]
) -> Spreadsheet:
    """Keep a spreadsheet that `fill` writes (answering its number of data rows) into a
    temp file of the store, published once complete: however big, it is never in memory.
    A failure midway (a drain's Released included) leaves no object and no row."""
    row = _described(user, name, kind)
    temp, descriptor = buckets.open_temp(SPREADSHEET_BUCKET, row.storage_key)
    try:
        with os.fdopen(descriptor, "wb") as sink:
            row.row_count = fill(sink)
            sink.flush()
            os.fsync(sink.fileno())
            row.size = sink.tell()
        buckets.publish(temp, SPREADSHEET_BUCKET, row.storage_key)
    finally:
        temp.unlink(missing_ok=True)
    return _saved(buckets, row)


def _described(user: User, name: str, kind: str) -> Spreadsheet:
    row = Spreadsheet(
        tenant=user.tenant_id,
        owner=user,
        name=display_name(name),
        kind=kind,
        format=spreadsheets.spreadsheet_format(name),
    )
    row.storage_key = f"tenants/{user.tenant_id}/spreadsheets/{row.uuid}/{safe_name(name)}"
    return row


def _saved(buckets: ObjectStorage, row: Spreadsheet) -> Spreadsheet:
    """The row saved after its object; the object removed again when it cannot be."""
    try:
        row.save(force_insert=True)
    except BaseException:
        buckets.delete(SPREADSHEET_BUCKET, row.storage_key)
        raise
    return row


def record_import(row: Spreadsheet, imported: int, *, done: bool = False) -> None:
    """How many of an import's rows were applied so far (a heartbeat too), or that it is
    DONE."""
    row.imported_count, row.heartbeat_at = imported, utcnow()
    if done:
        row.import_status = "DONE"
    row.save(only=[Spreadsheet.imported_count, Spreadsheet.heartbeat_at, Spreadsheet.import_status])


def listing(user_id: int | None) -> list[crm_pb2.Spreadsheet]:
    """The user's spreadsheets, newest first."""
    rows = (
        Spreadsheet.select()
        .where(Spreadsheet.owner == user_id)
        .order_by(Spreadsheet.created_at.desc(), Spreadsheet.id.desc())
    )
    return [messages.spreadsheet(row) for row in rows]


def owned(user_id: int | None, sheet_id: str) -> Spreadsheet:
    """One of the user's spreadsheets: a malformed id is INVALID_ARGUMENT, one that is
    not theirs NOT_FOUND (as contacts.find)."""
    try:
        parsed = uuid.UUID(sheet_id)
    except ValueError:
        raise invalid_argument(f"{sheet_id!r} is not a spreadsheet id.") from None
    row = Spreadsheet.get_or_none(Spreadsheet.uuid == parsed, Spreadsheet.owner == user_id)
    if row is None:
        raise not_found("spreadsheet_not_found", f"No spreadsheet {sheet_id}.")
    return row


def download(buckets: ObjectStorage, user_id: int | None, sheet_id: str) -> httpbody_pb2.HttpBody:
    """One of the user's spreadsheets as one message (GetSpreadsheet, for `?async=true`:
    downloads stream through DownloadSpreadsheet)."""
    row = owned(user_id, sheet_id)
    data = buckets.read(SPREADSHEET_BUCKET, row.storage_key)
    return httpbody_pb2.HttpBody(content_type=CONTENT_TYPES[row.format], data=data)
