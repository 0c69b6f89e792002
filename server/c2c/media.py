"""Storing a request's assets all or nothing: files first (each written atomically),
then every row in one transaction; any failure removes the files already written."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

from server.c2c.rules import PreparedFile
from server.database.models import Contact, Media, normalize_email
from server.executors import run_db, run_storage
from server.files.uploads import safe_name
from server.objects import ObjectStorage

MEDIA_BUCKET = "media"
COLLECTION = "default"


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


async def store_assets(
    buckets: ObjectStorage, contact: Contact, files: Sequence[PreparedFile]
) -> list[Media]:
    rows = []
    for prepared in files:
        media_uuid = uuid.uuid4()
        file_name = safe_name(prepared.name)
        rows.append(
            {
                "uuid": media_uuid,
                "tenant": contact.tenant_id,
                "contact": contact.id,
                "collection": COLLECTION,
                "name": prepared.name,
                "file_name": file_name,
                "storage_key": media_key(contact.tenant_id, media_uuid, file_name),
                "mime_type": prepared.mime_type,
                "size": len(prepared.data),
                "sha256": prepared.sha256,
                "custom_properties": json.dumps(
                    {"alt": prepared.alt, "description": prepared.description}
                ),
            }
        )
    keys = [row["storage_key"] for row in rows]
    await run_storage(_write_files, buckets, keys, [prepared.data for prepared in files])
    try:
        return await run_db(_insert, rows)
    except BaseException:
        await run_storage(_delete_files, buckets, keys)
        raise


def _write_files(buckets: ObjectStorage, keys: list[str], contents: list[bytes]) -> None:
    written: list[str] = []
    try:
        for key, data in zip(keys, contents, strict=True):
            buckets.write(MEDIA_BUCKET, key, data)
            written.append(key)
    except BaseException:
        _delete_files(buckets, written)
        raise


def _delete_files(buckets: ObjectStorage, keys: list[str]) -> None:
    for key in keys:
        buckets.delete(MEDIA_BUCKET, key)


def _insert(rows: list[dict[str, object]]) -> list[Media]:
    with Media._meta.database.atomic():
        return [Media.create(**row) for row in rows]


async def delete_asset(buckets: ObjectStorage, media: Media) -> None:
    await run_db(media.delete_instance)
    await run_storage(buckets.delete, MEDIA_BUCKET, media.storage_key)
