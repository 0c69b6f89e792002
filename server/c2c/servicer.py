"""c2c.v1.ContactAssets: the C2C public API, and asset access for internal callers. Each
method reads the caller, runs this package's domain functions off the event loop (checks
and conversions on the CPU pool, queries and storage on the database pool), and words its
refusals in the caller's language."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import grpc
from c2c.v1 import contact_assets_pb2 as pb
from c2c.v1 import contact_assets_pb2_grpc

from gateway.contract import ACCEPT_LANGUAGE_KEY, MAX_MESSAGE_BYTES
from gateway.localisation import choose_locale, summary, translate
from server.c2c import media
from server.c2c.rules import (
    FileFacts,
    FileInput,
    PreparedFile,
    Violation,
    check_request,
    prepare,
)
from server.c2c.spool import MALFORMED, Spool
from server.errors import ApiError, invalid_argument, not_found
from server.executors import run_cpu, run_db, run_storage
from server.links import PublicLinks, call_host, call_metadata
from server.objects import ObjectStorage, stream_object
from server.principal import Principal, require_principal

log = logging.getLogger("crmgate.c2c")
#: Health's one answer, built once (a message costs as much to build as the rest of the
#: method): callers only read or serialize it.
HEALTHY = pb.HealthResponse(data=pb.HealthStatus(status="ok"))


class ContactAssetsService(contact_assets_pb2_grpc.ContactAssetsServicer):
    def __init__(self, buckets: ObjectStorage, links: PublicLinks) -> None:
        self._buckets = buckets
        self._links = links

    async def Health(
        self, request: pb.HealthRequest, context: grpc.aio.ServicerContext
    ) -> pb.HealthResponse:
        # Reaching here means the pipeline accepted the caller's key for this host.
        return HEALTHY

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
        if violations:
            raise validation_failed(violations, locale)
        del files
        contents = [f.content for f in request.files]
        attached = await self._attach(
            principal, locale, request.email, request.files, lambda spool: spool.write(contents)
        )
        return pb.AttachAssetsResponse(data=attached)

    async def UploadAssets(
        self,
        request_iterator: AsyncIterator[pb.UploadAssetsRequest],
        context: grpc.aio.ServicerContext,
    ) -> pb.UploadAssetsResponse:
        """AttachAssets with the bytes streamed: checked from the manifest before any byte
        is read, then spooled to temp files."""
        principal = require_principal()
        locale = _locale(principal, context)
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("part") != "manifest":
            raise invalid_argument("The first message must carry the manifest.", MALFORMED)
        manifest = first.manifest
        if any(f.size < 0 for f in manifest.files):
            raise invalid_argument("A file's size cannot be negative.", MALFORMED)
        violations = check_request(manifest.email, manifest.files)
        if violations:
            await _drain(request_iterator)
            raise validation_failed(violations, locale)
        sizes = [f.size for f in manifest.files]
        attached = await self._attach(
            principal,
            locale,
            manifest.email,
            manifest.files,
            lambda spool: spool.take(sizes, _chunks(request_iterator)),
        )
        return pb.UploadAssetsResponse(data=attached)

    async def _attach(
        self,
        principal: Principal,
        locale: str,
        email: str,
        files: Sequence[FileFacts],
        fill: Callable[[Spool], Awaitable[None]],
    ) -> pb.AttachedAssets:
        """Spool the files' bytes (`fill`), check and convert each (read back on the CPU
        pool), then store them all or none; the temp files go whatever happens."""
        spool = Spool(self._buckets, principal.tenant_id)
        try:
            try:
                await fill(spool)
            except OSError:
                log.exception(
                    "spooling %d files for tenant %s failed", len(files), principal.tenant_name
                )
                raise store_failed(locale) from None
            results = await asyncio.gather(
                *(run_cpu(_prepare, index, upload, spool) for index, upload in enumerate(files))
            )
        finally:
            await run_storage(spool.remove)
        violations = [result for result in results if isinstance(result, Violation)]
        if violations:
            raise validation_failed(violations, locale)
        prepared = [result for result in results if isinstance(result, PreparedFile)]
        contact = await run_db(media.find_contact, principal.tenant_id, email)
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
            raise store_failed(locale) from None
        return attached

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


def _prepare(index: int, upload: FileFacts, spool: Spool) -> PreparedFile | Violation:
    """One spooled file, read back and prepared (rules.prepare); for the CPU pool."""
    content = spool.read(index)
    return prepare(
        index,
        FileInput(upload.filename, upload.mime_type, content, upload.alt, upload.description),
    )


async def _chunks(messages: AsyncIterator[pb.UploadAssetsRequest]) -> AsyncIterator[bytes]:
    """The files' bytes from the messages after the manifest."""
    async for message in messages:
        if message.WhichOneof("part") != "chunk":
            raise invalid_argument("Only the first message carries the manifest.", MALFORMED)
        yield message.chunk


async def _drain(messages: AsyncIterator[pb.UploadAssetsRequest]) -> None:
    """Read and drop the rest of a refused upload (at most what one request can hold): a
    caller still writing when the call ends may be told of a transport error instead of
    the refusal (grpc.aio reports a write that raced the status as INTERNAL)."""
    seen = 0
    async for message in messages:
        seen += len(message.chunk)
        if seen > MAX_MESSAGE_BYTES:
            return


def store_failed(locale: str) -> ApiError:
    """500 store_failed: nothing was kept (a write failed while spooling or storing)."""
    return ApiError(grpc.StatusCode.INTERNAL, "store_failed", translate("store_failed", locale))


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
