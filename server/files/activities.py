"""Close email activities: checked field by field (every problem reported at once), then
stored with their attachments all or nothing."""

from __future__ import annotations

import json
import re
import secrets
import uuid
from datetime import date, datetime

import grpc
from files.v1 import files_pb2

from server.database.connection import database
from server.database.models import Contact, EmailActivity, EmailAttachment
from server.errors import ApiError
from server.files import messages
from server.files.uploads import REQUIRED, attachable, display_name, download_url
from server.validation import Violations

DIRECTIONS = ("incoming", "outgoing")
STATUSES = ("inbox", "draft", "scheduled", "outbox", "sent")


def create(
    tenant_id: int, request: files_pb2.CreateEmailActivityRequest, base: str
) -> files_pb2.EmailActivity:
    """A new activity on one of the tenant's contacts. Attachments must be this server's
    download URLs (under `base`) of the tenant's completed, unexpired uploads, and are
    stored in canonical form; the upload fills in what the caller left out (name, size,
    type)."""
    violations = Violations()
    if request.direction and request.direction not in DIRECTIONS:
        violations.add("direction", f"Must be one of: {', '.join(DIRECTIONS)}.")
    if request.status and request.status not in STATUSES:
        violations.add("status", f"Must be one of: {', '.join(STATUSES)}.")
    if request.status == "scheduled" and not request.date_scheduled:
        violations.add("date_scheduled", "Required when status is scheduled.")
    if request.date_scheduled and _moment(request.date_scheduled, date_only=False) is None:
        violations.add("date_scheduled", "Enter an ISO-8601 date and time.")
    if request.followup_date and _moment(request.followup_date, date_only=True) is None:
        violations.add("followup_date", "Enter an ISO-8601 date or date and time.")
    contact = _contact(tenant_id, request.contact_id, violations)
    uploads = []
    for index, attachment in enumerate(request.attachments):
        upload = attachable(tenant_id, attachment.url, base) if attachment.url else None
        if upload is None:
            violations.add(
                f"attachments.{index}.url",
                "Not a download URL of a completed, unexpired upload of yours."
                if attachment.url
                else REQUIRED,
            )
        uploads.append(upload)
    violations.raise_if_any("validation_failed", "Invalid email activity.")
    assert contact is not None
    fields = {
        "lead_id": request.lead_id,
        "user_id": request.user_id,
        "direction": request.direction or "outgoing",
        "status": request.status or "draft",
        "subject": request.subject,
        "body_text": request.body_text,
        "body_html": request.body_html,
        "sender": request.sender,
        "template_id": request.template_id,
        "date_scheduled": request.date_scheduled,
        "followup_date": request.followup_date,
        "to": list(request.to),
        "cc": list(request.cc),
        "bcc": list(request.bcc),
    }
    with database.atomic():
        activity = EmailActivity.create(
            activity_id="acti_" + secrets.token_hex(12),
            tenant=tenant_id,
            contact=contact,
            fields=json.dumps(fields),
        )
        for position, (attachment, upload) in enumerate(
            zip(request.attachments, uploads, strict=True)
        ):
            EmailAttachment.create(
                activity=activity,
                upload=upload,
                position=position,
                url=download_url(base, upload),
                filename=display_name(attachment.filename) or upload.filename,
                size=attachment.size or upload.size or 0,
                content_type=attachment.content_type or upload.content_type,
            )
    return messages.activity(activity)


def _moment(text: str, *, date_only: bool) -> datetime | None:
    """An ISO-8601 date-time (or, where `date_only` allows, a calendar date), else None."""
    try:
        if date_only and len(text) == 10:
            return datetime.combine(date.fromisoformat(text), datetime.min.time())
        return datetime.fromisoformat(text.replace("Z", "+00:00")) if "T" in text else None
    except ValueError:
        return None


def get(tenant_id: int, activity_id: str) -> files_pb2.EmailActivity:
    """The tenant's activity; NOT_FOUND for another tenant's or an unknown id."""
    activity = EmailActivity.get_or_none(
        EmailActivity.activity_id == activity_id, EmailActivity.tenant == tenant_id
    )
    if activity is None:
        raise ApiError(grpc.StatusCode.NOT_FOUND, "not_found", "No email activity with that id.")
    return messages.activity(activity)


def _contact(tenant_id: int, close_id: str, violations: Violations) -> Contact | None:
    """The tenant's live contact a Close id (`cont_` and hex) names, else a violation."""
    if not close_id:
        violations.add("contact_id", REQUIRED)
        return None
    match = re.fullmatch(r"cont_([0-9a-f]{32})", close_id)
    contact = None
    if match:
        contact = Contact.get_or_none(
            Contact.uuid == uuid.UUID(match.group(1)),
            Contact.tenant == tenant_id,
            Contact.deleted_at.is_null(),
        )
    if contact is None:
        violations.add("contact_id", "Contact not found.")
    return contact
