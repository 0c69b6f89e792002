"""files.v1 messages built from stored rows: the one place the Files package turns what
it stores into what the Close-compatible contract returns."""

from __future__ import annotations

import json
from datetime import datetime

from files.v1 import files_pb2

from server.database.models import Contact, EmailActivity, EmailAttachment


def contact_id(contact: Contact) -> str:
    """Close-style id of a contact: `cont_` and the contact's UUID in hex."""
    return "cont_" + contact.uuid.hex


def activity(row: EmailActivity) -> files_pb2.EmailActivity:
    """An email activity with its attachments, in the order they were given (queries)."""
    fields = json.loads(row.fields)
    attachments = [
        files_pb2.EmailAttachment(
            url=a.url, filename=a.filename, size=a.size, content_type=a.content_type
        )
        for a in row.attachments.order_by(EmailAttachment.position)
    ]
    return files_pb2.EmailActivity(
        id=row.activity_id,
        contact_id=contact_id(row.contact),
        attachments=attachments,
        date_created=_iso(row.created_at),
        **fields,
    )


def upload(
    form_url: str, fields: dict[str, str], download_url: str
) -> tuple[files_pb2.UploadForm, files_pb2.DownloadLink]:
    """Where and how a browser posts a new file, and the link it is downloaded by."""
    return (
        files_pb2.UploadForm(url=form_url, fields=fields),
        files_pb2.DownloadLink(url=download_url),
    )


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds") + "+00:00"
