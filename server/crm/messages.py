"""crm.v1 (and google.longrunning) messages built from stored rows: the one place the CRM
package turns what it stores into what its contract returns, so every method words a
contact, a spreadsheet or a request the same way."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import timedelta

from c2c.v1 import contact_assets_pb2
from crm.v1 import crm_pb2
from google.longrunning import operations_pb2
from google.protobuf import any_pb2
from google.rpc import status_pb2

from server.crm.dates import iso
from server.database.models import (
    BackgroundRequest,
    Contact,
    CustomField,
    Media,
    Spreadsheet,
    User,
    utcnow,
)

#: What an operation's name starts with: `requests/{RequestId}` is the request
#: /api/request/get/{RequestId} reports.
OPERATION_PREFIX = "requests/"


def to_web(contact: Contact, values: Mapping[str, str] | None = None) -> crm_pb2.WebContact:
    """A contact with its custom values: those given, else the prefetched or queried."""
    if values is None:
        values = {value.name: value.value for value in contact.custom_values}
    return crm_pb2.WebContact(
        id=str(contact.uuid),
        first_name=contact.first_name,
        last_name=contact.last_name,
        email=contact.email,
        phone=contact.phone,
        company=contact.company,
        custom_fields=values,
        created_date=iso(contact.created_at),
        updated_date=iso(contact.updated_at),
    )


def custom_field(field: CustomField) -> crm_pb2.CustomFieldDefinition:
    return crm_pb2.CustomFieldDefinition(
        name=field.name, type=field.type, options=json.loads(field.options)
    )


#: An import whose worker has not reported for this long was interrupted (its process died).
HEARTBEAT_STALE = timedelta(minutes=2)


def import_status(row: Spreadsheet) -> str:
    """RUNNING, DONE, or INTERRUPTED for a RUNNING import nobody reports on any more."""
    if row.import_status == "RUNNING" and row.heartbeat_at < utcnow() - HEARTBEAT_STALE:
        return "INTERRUPTED"
    return row.import_status or ""


def spreadsheet(row: Spreadsheet) -> crm_pb2.Spreadsheet:
    return crm_pb2.Spreadsheet(
        id=str(row.uuid),
        name=row.name,
        format=row.format,
        kind=row.kind,
        size=row.size,
        row_count=row.row_count,
        created_date=iso(row.created_at),
        import_status=import_status(row),
        imported_count=row.imported_count or 0,
    )


def contact_asset(row: Media, details: contact_assets_pb2.AssetDetails) -> crm_pb2.ContactAsset:
    """A C2C asset (with the details C2C words it with, its URL included) as voyzu's."""
    return crm_pb2.ContactAsset(
        id=details.asset.uuid,
        name=details.asset.name,
        mime_type=details.asset.mime_type,
        type=details.asset.type,
        size=details.asset.size,
        created_date=iso(row.created_at),
        url=details.url,
        alt=details.alt,
        description=details.description,
    )


def web_user(user: User) -> crm_pb2.WebUser:
    return crm_pb2.WebUser(id=str(user.uuid), email=user.email)


def request_status(
    row: BackgroundRequest,
) -> tuple[crm_pb2.RequestStatus, status_pb2.Status | None]:
    """A stored request as a RequestStatus, and the status it failed with, if it did."""
    status = crm_pb2.RequestStatus(
        request_id=row.request_id,
        commentary=row.commentary,
        percent_complete=row.percent_complete,
        process_status=row.status,
        created_date=iso(row.created_at),
        updated_date=iso(row.updated_at),
    )
    if row.result is not None:
        status.result.CopyFrom(any_pb2.Any.FromString(row.result))
    error = status_pb2.Status.FromString(row.error) if row.error is not None else None
    if error is not None:
        status.error_message = error.message
    return status, error


def operation(row: BackgroundRequest) -> operations_pb2.Operation:
    """A stored request as a long-running operation: done once processed or failed."""
    status, error = request_status(row)
    result = operations_pb2.Operation(name=OPERATION_PREFIX + row.request_id)
    result.metadata.Pack(status)
    if row.status == "PROCESSED":
        result.done = True
        result.response.CopyFrom(status.result)
    elif error is not None:
        result.done = True
        result.error.CopyFrom(error)
    return result
