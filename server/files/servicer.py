"""files.v1.Files: the Close-compatible Files API and email activities."""

from __future__ import annotations

import json
import re
import secrets
import uuid
from collections.abc import Callable
from datetime import datetime

import grpc
from files.v1 import files_pb2, files_pb2_grpc

from server.database.models import Contact, EmailActivity, EmailAttachment
from server.errors import ApiError
from server.executors import run_db
from server.files.uploads import attachable, content_disposition, create_upload, download_url
from server.links import PublicLinks, call_metadata
from server.principal import require_principal
from server.validation import Violations

REQUIRED = "This field is required."
MIME_TYPE = re.compile(r"[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*")
DIRECTIONS = ("incoming", "outgoing")
STATUSES = ("inbox", "draft", "scheduled", "outbox", "sent")
MAX_UPLOAD_BYTES = 100 * 1024 * 1024

#: Builds the signed browser-POST form: (bucket, key, content_type, disposition, max bytes,
#: base URL) → (upload URL, form fields).
FormSigner = Callable[[str, str, str, str, int, str], tuple[str, dict[str, str]]]


def contact_id(contact: Contact) -> str:
    """Close-style id of a contact: `cont_` and the contact's UUID in hex."""
    return "cont_" + contact.uuid.hex


class FilesService(files_pb2_grpc.FilesServicer):
    def __init__(self, links: PublicLinks, sign_form: FormSigner) -> None:
        self._links = links
        self._sign_form = sign_form

    async def CreateUpload(
        self, request: files_pb2.CreateUploadRequest, context: grpc.aio.ServicerContext
    ) -> files_pb2.CreateUploadResponse:
        principal = require_principal()
        violations = Violations()
        if not request.filename.strip():
            violations.add("filename", REQUIRED)
        elif len(request.filename) > 255:
            violations.add("filename", "Ensure this value has at most 255 characters.")
        if not request.content_type.strip():
            violations.add("content_type", REQUIRED)
        elif not MIME_TYPE.fullmatch(request.content_type.strip()):
            violations.add("content_type", "Enter a valid MIME type, such as image/jpeg.")
        violations.raise_if_any("validation_failed", "Invalid upload request.")
        base = self._links.base(call_metadata(context))

        def create() -> files_pb2.CreateUploadResponse:
            upload = create_upload(
                principal.tenant_id, request.filename.strip(), request.content_type.strip()
            )
            url, fields = self._sign_form(
                upload.bucket,
                upload.key,
                upload.content_type,
                content_disposition(upload.filename),
                MAX_UPLOAD_BYTES,
                base,
            )
            return files_pb2.CreateUploadResponse(
                upload=files_pb2.UploadForm(url=url, fields=fields),
                download=files_pb2.DownloadLink(url=download_url(base, upload)),
            )

        return await run_db(create)

    async def CreateEmailActivity(
        self, request: files_pb2.CreateEmailActivityRequest, context: grpc.aio.ServicerContext
    ) -> files_pb2.CreateEmailActivityResponse:
        principal = require_principal()
        violations = Violations()
        if request.direction and request.direction not in DIRECTIONS:
            violations.add("direction", f"Must be one of: {', '.join(DIRECTIONS)}.")
        if request.status and request.status not in STATUSES:
            violations.add("status", f"Must be one of: {', '.join(STATUSES)}.")

        def create() -> files_pb2.CreateEmailActivityResponse:
            contact = _contact(principal.tenant_id, request.contact_id, violations)
            uploads = []
            for index, attachment in enumerate(request.attachments):
                upload = attachable(principal.tenant_id, attachment.url) if attachment.url else None
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
                "to": list(request.to),
                "cc": list(request.cc),
                "bcc": list(request.bcc),
            }
            with EmailActivity._meta.database.atomic():
                activity = EmailActivity.create(
                    activity_id="acti_" + secrets.token_hex(12),
                    tenant=principal.tenant_id,
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
                        url=attachment.url,
                        filename=attachment.filename or upload.filename,
                        size=attachment.size or upload.size or 0,
                        content_type=attachment.content_type or upload.content_type,
                    )
            return files_pb2.CreateEmailActivityResponse(activity=_activity(activity))

        return await run_db(create)

    async def GetEmailActivity(
        self, request: files_pb2.GetEmailActivityRequest, context: grpc.aio.ServicerContext
    ) -> files_pb2.GetEmailActivityResponse:
        principal = require_principal()

        def get() -> files_pb2.GetEmailActivityResponse:
            activity = EmailActivity.get_or_none(
                EmailActivity.activity_id == request.id,
                EmailActivity.tenant == principal.tenant_id,
            )
            if activity is None:
                raise ApiError(
                    grpc.StatusCode.NOT_FOUND, "not_found", "No email activity with that id."
                )
            return files_pb2.GetEmailActivityResponse(activity=_activity(activity))

        return await run_db(get)


def _contact(tenant_id: int, close_id: str, violations: Violations) -> Contact | None:
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


def _activity(activity: EmailActivity) -> files_pb2.EmailActivity:
    fields = json.loads(activity.fields)
    attachments = [
        files_pb2.EmailAttachment(
            url=a.url, filename=a.filename, size=a.size, content_type=a.content_type
        )
        for a in activity.attachments.order_by(EmailAttachment.position)
    ]
    return files_pb2.EmailActivity(
        id=activity.activity_id,
        contact_id=contact_id(activity.contact),
        attachments=attachments,
        date_created=_iso(activity.created_at),
        **fields,
    )


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds") + "+00:00"
