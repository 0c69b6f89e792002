"""c2c.v1.ContactAssets: the C2C public API, and asset access for internal callers. Each
method reads the caller, runs this package's domain functions off the event loop (checks
and conversions on the CPU pool, queries and storage on the database pool), and words its
refusals in the caller's language."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence

import grpc
from c2c.v1 import contact_assets_pb2 as pb
from c2c.v1 import contact_assets_pb2_grpc

from gateway.contract import ACCEPT_LANGUAGE_KEY
from gateway.localisation import choose_locale, summary, translate
from server.c2c import media
from server.c2c.rules import FileInput, PreparedFile, Violation, check_request, prepare
from server.errors import ApiError, not_found
from server.executors import run_cpu, run_db
from server.links import PublicLinks, call_host, call_metadata
from server.objects import ObjectStorage, stream_object
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

    async def GetMessageLocale(
        self, request: pb.GetMessageLocaleRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMessageLocaleResponse:
        return pb.GetMessageLocaleResponse(locale=_locale(require_principal(), context))

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
        contact = await run_db(media.find_contact, principal.tenant_id, request.email)
        if contact is None:
            raise ApiError(
                grpc.StatusCode.NOT_FOUND,
                "contact_not_found",
                translate("contact_not_found", locale),
            )
        try:
            attached = await run_db(media.store_assets, self._buckets, contact, prepared)
        except Exception:
            log.exception(
                "storing %d assets for tenant %s failed", len(prepared), principal.tenant_name
            )
            raise ApiError(
                grpc.StatusCode.INTERNAL, "store_failed", translate("store_failed", locale)
            ) from None
        return pb.AttachAssetsResponse(data=attached)

    async def ListContactAssets(
        self, request: pb.ListContactAssetsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListContactAssetsResponse:
        principal = require_principal()
        base = self._links.base(call_metadata(context))
        assets = await run_db(media.assets_of, principal.tenant_id, request.contact_uuid, base)
        return pb.ListContactAssetsResponse(assets=assets)

    async def GetAsset(
        self, request: pb.GetAssetRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetAssetResponse:
        principal = require_principal()
        base = self._links.base(call_metadata(context))
        asset, content = await run_db(
            media.asset,
            self._buckets,
            principal.tenant_id,
            request.uuid,
            base,
            request.include_content,
        )
        return pb.GetAssetResponse(asset=asset, content=content)

    async def DeleteAsset(
        self, request: pb.DeleteAssetRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteAssetResponse:
        principal = require_principal()
        await run_db(media.delete_asset, self._buckets, principal.tenant_id, request.uuid)
        return pb.DeleteAssetResponse()

    async def GetMedia(
        self, request: pb.GetMediaRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.GetMediaResponse]:
        """Public, as the media URL is: the UUID and file name are the capability, on
        the hosts of the tenant that owns it."""
        row = await run_db(media.public_media, request.uuid, request.name, call_host(context))
        if row is None:
            raise not_found("not_found", "No such file.")
        size, chunks = await stream_object(self._buckets, media.MEDIA_BUCKET, row.storage_key)
        yield pb.GetMediaResponse(
            metadata=pb.MediaMetadata(content_type=row.mime_type, content_length=size)
        )
        async for chunk in chunks:
            yield pb.GetMediaResponse(chunk=chunk)


def validation_failed(violations: Sequence[Violation], locale: str) -> ApiError:
    """422 validation_failed: Laravel's message (the first error, and how many more)."""
    texts = [(p.field, translate(p.key, locale, field=p.field, **p.params)) for p in violations]
    message = summary([text for _, text in texts], locale)
    return ApiError(
        grpc.StatusCode.INVALID_ARGUMENT, "validation_failed", message, violations=texts
    )


def _locale(principal: Principal, context: object) -> str:
    language = call_metadata(context).get(ACCEPT_LANGUAGE_KEY, "")
    return choose_locale(principal.locale, principal.honor_accept_language, language)
