"""A contact's media: stored all or nothing (files first, each written atomically, then
every row in one transaction; any failure removes the files already written), listed,
read, deleted, and served publicly by UUID and file name."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import TypeVar

from c2c.v1 import contact_assets_pb2 as pb

from server.c2c import messages
from server.c2c.rules import PreparedFile
from server.database.connection import database
from server.database.models import Contact, Media, normalize_email
from server.errors import not_found
from server.files.uploads import safe_name
from server.objects import ObjectStorage
from server.tenant_hosts import tenant_hosts

MEDIA_BUCKET = "media"
COLLECTION = "default"
_Row = TypeVar("_Row", Contact, Media)


def media_key(tenant_id: int, media_uuid: uuid.UUID, file_name: str) -> str:
    return f"tenants/{tenant_id}/media/{media_uuid}/{file_name}"


def find_contact(tenant_id: int, email: str) -> Contact | None:
    """The tenant's live contact with this email, compared trimmed and lowercased."""
    return (
        Contact.select()
        .where(
            Contact.tenant == tenant_id,
            Contact.email_normalized == normalize_email(email),
            Contact.deleted_at.is_null(),
        )
        .order_by(Contact.id)
        .first()
    )


def store_assets(
    buckets: ObjectStorage, contact: Contact, files: Sequence[PreparedFile]
) -> pb.AttachedAssets:
    written: list[str] = []
    try:
        rows = []
        for prepared in files:
            media_uuid = uuid.uuid4()
            file_name = safe_name(prepared.name)
            key = media_key(contact.tenant_id, media_uuid, file_name)
            buckets.write(MEDIA_BUCKET, key, prepared.data)
            written.append(key)
            rows.append(
                {
                    "uuid": media_uuid,
                    "tenant": contact.tenant_id,
                    "contact": contact.id,
                    "collection": COLLECTION,
                    "name": prepared.name,
                    "file_name": file_name,
                    "storage_key": key,
                    "mime_type": prepared.mime_type,
                    "size": len(prepared.data),
                    "sha256": prepared.sha256,
                    "custom_properties": json.dumps(
                        {"alt": prepared.alt, "description": prepared.description}
                    ),
                }
            )
        with database.atomic():
            stored = [Media.create(**row) for row in rows]
    except BaseException:
        for key in written:
            buckets.delete(MEDIA_BUCKET, key)
        raise
    return messages.attached(contact, stored)


def assets_of(tenant_id: int, contact_uuid: str, base: str) -> list[pb.AssetDetails]:
    """The tenant's contact's assets, newest first; NOT_FOUND for an unknown contact."""
    contact = _owned(Contact, tenant_id, contact_uuid, "contact")
    return [messages.details(row, contact, base) for row in media_of(contact)]


def media_of(contact: Contact) -> list[Media]:
    """A contact's media rows, newest first."""
    return list(
        Media.select()
        .where(Media.contact == contact)
        .order_by(Media.created_at.desc(), Media.id.desc())
    )


def asset(
    buckets: ObjectStorage, tenant_id: int, media_uuid: str, base: str, include_content: bool
) -> tuple[pb.AssetDetails, bytes]:
    """One of the tenant's assets, and its bytes when asked for (else empty)."""
    row = _owned(Media, tenant_id, media_uuid, "asset")
    content = buckets.read(MEDIA_BUCKET, row.storage_key) if include_content else b""
    return messages.details(row, row.contact, base), content


def delete_asset(buckets: ObjectStorage, tenant_id: int, media_uuid: str) -> None:
    """The row first: once it is gone nothing links to the file, which goes next."""
    media = _owned(Media, tenant_id, media_uuid, "asset")
    media.delete_instance()
    buckets.delete(MEDIA_BUCKET, media.storage_key)


def public_media(media_uuid: str, file_name: str, host: str | None) -> Media | None:
    """The asset a public media URL names (its UUID and file name), else None; also
    None on a host bound to another tenant."""
    try:
        parsed = uuid.UUID(media_uuid)
    except ValueError:
        return None
    row = Media.get_or_none(Media.uuid == parsed, Media.file_name == file_name)
    return row if row is not None and tenant_hosts.admits(host, row.tenant_id) else None


def _owned(model: type[_Row], tenant_id: int, row_uuid: str, what: str) -> _Row:
    """The tenant's contact or asset with this UUID. A malformed id names nothing, so it
    is NOT_FOUND as an unknown id (or another tenant's) is."""
    try:
        parsed = uuid.UUID(row_uuid)
    except ValueError:
        raise not_found("not_found", f"No such {what}.") from None
    row = model.get_or_none(model.uuid == parsed, model.tenant == tenant_id)
    if row is None:
        raise not_found("not_found", f"No such {what}.")
    return row
