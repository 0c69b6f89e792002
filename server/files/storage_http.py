"""The HTTP side of embedded storage, served beside the gateway by `crmgate serve`:
the S3 browser-POST endpoint for Close uploads and the 24-hour download URLs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache

from aiohttp import web

from server.c2c.media import MEDIA_BUCKET, public_media
from server.c2c.messages import PUBLIC_MEDIA_PATH
from server.config import Settings
from server.database.connection import unit_of_work
from server.database.models import utcnow
from server.executors import run_db
from server.files.s3post.endpoint import PostEndpoint
from server.files.s3post.policy import Credentials, build_form
from server.files.uploads import (
    DOWNLOAD_PATH,
    content_disposition,
    is_pending,
    mark_uploaded,
    resolve,
)
from server.objects import ObjectStorage, open_storage
from server.signing_keys import signing_key

log = logging.getLogger("crmgate.storage")

STORAGE_PATH = "/storage/"
ACCESS_KEY_ID = "crmgate"


def object_storage(settings: Settings) -> ObjectStorage:
    """Where objects live: CRMGATE_STORAGE_URL, else the data dir."""
    return open_storage(settings.storage_url, settings.data_dir)


@cache
def storage_credentials() -> Credentials:
    return Credentials(ACCESS_KEY_ID, signing_key("storage-access-key"))


def sign_upload_form(
    bucket: str, key: str, content_type: str, disposition: str, max_bytes: int, base: str
) -> tuple[str, dict[str, str]]:
    """The Files service's form signer: a V4 form valid for 60 seconds."""
    fields = {
        "Content-Type": content_type,
        "Content-Disposition": disposition,
        "success_action_status": "201",
    }
    form = build_form(storage_credentials(), bucket, key, fields, max_bytes, datetime.now(UTC))
    return f"{base}{STORAGE_PATH}{bucket}", form


class StorageRoutes:
    def __init__(self, buckets: ObjectStorage) -> None:
        self._buckets = buckets
        unit_of_work(storage_credentials)  # read once, now: never a query on the event loop
        self._post = PostEndpoint(buckets, self._credentials, self._authorize, self._claim)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post(STORAGE_PATH + "{bucket}", self._post.handle),
            web.get(DOWNLOAD_PATH + "{token}/{name}", self.download),
            web.get(PUBLIC_MEDIA_PATH + "{uuid}/{name}", self.media),
        ]

    @staticmethod
    def _credentials() -> Mapping[str, Credentials]:
        credentials = storage_credentials()
        return {credentials.access_key_id: credentials}

    @staticmethod
    async def _authorize(bucket: str, key: str) -> tuple[str, str] | None:
        if await run_db(is_pending, bucket, key):
            return None
        return "AccessDenied", "No pending upload for this key (it may be complete already)."

    @staticmethod
    async def _claim(bucket: str, key: str, size: int, etag: str) -> bool:
        return await run_db(mark_uploaded, bucket, key, size, etag)

    async def download(self, request: web.Request) -> web.StreamResponse:
        found = await run_db(resolve, request.match_info["token"], utcnow())
        if found is None:
            return _json_error(404, "not_found", "No such file.")
        if found.expired:
            return _json_error(410, "expired", "This download link has expired.")
        upload = found.upload
        return await self._respond(
            request,
            upload.bucket,
            upload.key,
            {
                "Content-Type": upload.content_type,
                "Content-Disposition": content_disposition(upload.filename),
                "X-Content-Type-Options": "nosniff",
            },
        )

    async def media(self, request: web.Request) -> web.StreamResponse:
        """C2C media on the tenants' public disk, served so a browser never sniffs or runs
        it: the stored type, nosniff, and a sandboxing Content-Security-Policy."""
        row = await run_db(public_media, request.match_info["uuid"], request.match_info["name"])
        if row is None:
            return _json_error(404, "not_found", "No such file.")
        return await self._respond(
            request,
            MEDIA_BUCKET,
            row.storage_key,
            {
                "Content-Type": row.mime_type,
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; sandbox",
                "Cache-Control": "public, max-age=31536000, immutable",
            },
        )

    async def _respond(
        self, request: web.Request, bucket: str, key: str, headers: Mapping[str, str]
    ) -> web.StreamResponse:
        """The object, or a JSON 404 when a row outlived it (`crmgate admin fsck` says
        which and repairs them)."""
        try:
            return await self._buckets.respond(request, bucket, key, headers)
        except FileNotFoundError:
            log.error("object %s/%s is missing though a row points at it", bucket, key)
            return _json_error(404, "not_found", "No such file.")


def _json_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)
