"""c2c.v1.ContactAssets: the C2C public API, and asset access for internal callers."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Sequence

import grpc
from c2c.v1 import contact_assets_pb2 as pb
from c2c.v1 import contact_assets_pb2_grpc

from gateway.localisation import choose_locale, summary, translate
from server.c2c.media import MEDIA_BUCKET, delete_asset, find_contact, store_assets
from server.c2c.rules import FileInput, PreparedFile, Violation, check_request, prepare
from server.database.models import Contact, Media
from server.errors import ApiError
from server.executors import run_cpu, run_db, run_storage
from server.files.storage_http import PUBLIC_MEDIA_PATH
from server.links import PublicLinks, call_metadata
from server.objects import ObjectStorage
from server.principal import Principal, require_principal

log = logging.getLogger("crmgate.c2c")


class ContactAssetsService(contact_assets_pb2_grpc.ContactAssetsServicer):
    def __init__(self, buckets: ObjectStorage, links: PublicLinks) -> None:
        self._buckets = buckets
        self._links = links

    async def Health(
        self, request: pb.HealthRequest, context: grpc.aio.ServicerContext
    ) -> pb.HealthResponse:
        # Reaching here means the pipeline accepted the caller's key for this host.
        return pb.HealthResponse(data=pb.HealthStatus(status="ok"))

    async def AttachAssets(
        self, request: pb.AttachAssetsRequest, context: grpc.aio.ServicerContext
    ) -> pb.AttachAssetsResponse:
        principal = require_principal()
        locale = _locale(principal, context)
        files = [
            FileInput(f.filename, f.mime_type, f.content, f.alt, f.description)
            for f in request.files
        ]
        violations = check_request(request.email, files)
        prepared: list[PreparedFile] = []
        if not violations:
            results = await asyncio.gather(
                *(run_cpu(prepare, index, upload) for index, upload in enumerate(files))
            )
            violations = [result for result in results if isinstance(result, Violation)]
            prepared = [result for result in results if isinstance(result, PreparedFile)]
        del files
        if violations:
            raise validation_failed(violations, locale)
        contact = await run_db(find_contact, principal.tenant_id, request.email)
        if contact is None:
            raise ApiError(
                grpc.StatusCode.NOT_FOUND,
                "contact_not_found",
                translate("contact_not_found", locale),
            )
        try:
            rows = await store_assets(self._buckets, contact, prepared)
        except Exception:
            log.exception(
                "storing %d assets for tenant %s failed", len(prepared), principal.tenant_name
            )
            raise ApiError(
                grpc.StatusCode.INTERNAL, "store_failed", translate("store_failed", locale)
            ) from None
        return pb.AttachAssetsResponse(
            data=pb.AttachedAssets(
                contact=pb.ContactReference(uuid=str(contact.uuid), email=contact.email),
                assets=[_asset(row) for row in rows],
            )
        )

    async def ListContactAssets(
        self, request: pb.ListContactAssetsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListContactAssetsResponse:
        principal = require_principal()
        base = self._links.base(call_metadata(context))

        def listing() -> pb.ListContactAssetsResponse:
            contact = _contact(principal, request.contact_uuid)
            rows = (
                Media.select()
                .where(Media.contact == contact)
                .order_by(Media.created_at.desc(), Media.id.desc())
            )
            return pb.ListContactAssetsResponse(
                assets=[_details(row, contact, base) for row in rows]
            )

        return await run_db(listing)

    async def GetAsset(
        self, request: pb.GetAssetRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetAssetResponse:
        principal = require_principal()
        base = self._links.base(call_metadata(context))

        def get() -> tuple[Media, Contact]:
            row = _media(principal, request.uuid)
            return row, row.contact

        row, contact = await run_db(get)
        content = b""
        if request.include_content:
            content = await run_storage(self._buckets.read, MEDIA_BUCKET, row.storage_key)
        return pb.GetAssetResponse(asset=_details(row, contact, base), content=content)

    async def DeleteAsset(
        self, request: pb.DeleteAssetRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteAssetResponse:
        principal = require_principal()
        await delete_asset(self._buckets, await run_db(_media, principal, request.uuid))
        return pb.DeleteAssetResponse()


def validation_failed(violations: Sequence[Violation], locale: str) -> ApiError:
    """422 validation_failed: Laravel's message (the first error, and how many more)."""
    texts = [(p.field, translate(p.key, locale, field=p.field, **p.params)) for p in violations]
    message = summary([text for _, text in texts], locale)
    return ApiError(
        grpc.StatusCode.INVALID_ARGUMENT, "validation_failed", message, violations=texts
    )


def _locale(principal: Principal, context: object) -> str:
    language = call_metadata(context).get("accept-language", "")
    return choose_locale(principal.locale, principal.honor_accept_language, language)


def _asset(row: Media) -> pb.Asset:
    return pb.Asset(
        uuid=str(row.uuid),
        name=row.name,
        mime_type=row.mime_type,
        type="image" if row.mime_type.startswith("image/") else "file",
        size=row.size,
        created_at=row.created_at.strftime("%Y-%m-%d %H:%M:%S"),
    )


def _details(row: Media, contact: Contact, base: str) -> pb.AssetDetails:
    properties = json.loads(row.custom_properties)
    return pb.AssetDetails(
        asset=_asset(row),
        contact_uuid=str(contact.uuid),
        collection=row.collection,
        sha256=row.sha256,
        alt=properties.get("alt", ""),
        description=properties.get("description", ""),
        url=f"{base}{PUBLIC_MEDIA_PATH}{row.uuid}/{row.file_name}",
    )


def _parse_uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ApiError(grpc.StatusCode.NOT_FOUND, "not_found", f"No such {what}.") from None


def _contact(principal: Principal, contact_uuid: str) -> Contact:
    contact = Contact.get_or_none(
        Contact.uuid == _parse_uuid(contact_uuid, "contact"),
        Contact.tenant == principal.tenant_id,
    )
    if contact is None:
        raise ApiError(grpc.StatusCode.NOT_FOUND, "not_found", "No such contact.")
    return contact


def _media(principal: Principal, media_uuid: str) -> Media:
    row = Media.get_or_none(
        Media.uuid == _parse_uuid(media_uuid, "asset"), Media.tenant == principal.tenant_id
    )
    if row is None:
        raise ApiError(grpc.StatusCode.NOT_FOUND, "not_found", "No such asset.")
    return row
