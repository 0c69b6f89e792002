"""c2c.v1 messages built from stored rows: the one place the C2C package turns media rows
into what its contract returns."""

from __future__ import annotations

import json
from collections.abc import Sequence

from c2c.v1 import contact_assets_pb2 as pb

from gateway.contract import PUBLIC_MEDIA_PATH
from server.database.models import Contact, Media


def asset(row: Media) -> pb.Asset:
    return pb.Asset(
        uuid=str(row.uuid),
        name=row.name,
        mime_type=row.mime_type,
        type="image" if row.mime_type.startswith("image/") else "file",
        size=row.size,
        created_at=row.created_at.strftime("%Y-%m-%d %H:%M:%S"),
    )


def attached(contact: Contact, rows: Sequence[Media]) -> pb.AttachedAssets:
    """What AttachAssets answers: the contact, and the assets just stored."""
    return pb.AttachedAssets(
        contact=pb.ContactReference(uuid=str(contact.uuid), email=contact.email),
        assets=[asset(row) for row in rows],
    )


def details(row: Media, contact: Contact, base: str) -> pb.AssetDetails:
    """An asset with its contact, properties and public URL under `base`."""
    properties = json.loads(row.custom_properties)
    return pb.AssetDetails(
        asset=asset(row),
        contact_uuid=str(contact.uuid),
        collection=row.collection,
        sha256=row.sha256,
        alt=properties.get("alt", ""),
        description=properties.get("description", ""),
        url=f"{base}{PUBLIC_MEDIA_PATH}{row.uuid}/{row.file_name}",
    )
