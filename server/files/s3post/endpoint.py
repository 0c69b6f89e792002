"""The browser-POST endpoint: `POST {base}/storage/{bucket}` with multipart/form-data.

Fields come first and are checked against the signed policy before a byte of the file is
read; the file then streams to a temp file (never whole in memory), capped by the
policy's content-length-range, and is renamed into place only once the service layer has
accepted it (`claim`). Any failure leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime

from aiohttp import BodyPartReader, web

from server.executors import run_storage
from server.files.s3post import responses
from server.files.s3post.policy import Credentials, PolicyError, verify_form
from server.objects import ObjectStorage
from server.pipeline import new_request_id

log = logging.getLogger("crmgate.storage")

CHUNK_BYTES = 256 * 1024
#: All fields before the file together (S3's limit is 20 KiB; policies can be long).
MAX_FIELD_BYTES = 64 * 1024

#: Whether an object may be written at (bucket, key) now: None, or S3's (code, message).
Authorize = Callable[[str, str], Awaitable[tuple[str, str] | None]]
#: Record a stored object (bucket, key, size, etag); False refuses it (it is then removed).
Claim = Callable[[str, str, int, str], Awaitable[bool]]
#: Undo a claim whose object could not be put in place after all.
Release = Callable[[str, str], Awaitable[None]]


class PostEndpoint:
    def __init__(
        self,
        buckets: ObjectStorage,
        credentials: Callable[[], Mapping[str, Credentials]],
        authorize: Authorize,
        claim: Claim,
        release: Release,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._buckets = buckets
        self._credentials = credentials
        self._authorize = authorize
        self._claim = claim
        self._release = release
        self._clock = clock

    async def handle(self, request: web.Request) -> web.StreamResponse:
        request_id = new_request_id()
        bucket = request.match_info["bucket"]
        try:
            return await self._post(request, bucket, request_id)
        except PolicyError as error:
            return responses.error(error.code, error.message, error.status, request_id)
        except Exception:
            log.exception("storing an upload to %s failed (request %s)", bucket, request_id)
            return responses.error(
                "InternalError",
                "We encountered an internal error. Please try again.",
                500,
                request_id,
            )

    async def _post(self, request: web.Request, bucket: str, request_id: str) -> web.Response:
        if not request.content_type.startswith("multipart/form-data"):
            raise PolicyError(
                "PreconditionFailed",
                "Bucket POST must be of the enclosure-type multipart/form-data.",
                412,
            )
        try:
            reader = await request.multipart()
        except (ValueError, AssertionError):
            raise _malformed() from None
        form: dict[str, str] = {}
        file_part: BodyPartReader | None = None
        while (part := await _next_part(reader)) is not None:
            if not isinstance(part, BodyPartReader) or not part.name:
                raise _malformed()
            name = part.name.lower()
            if name == "file":
                file_part = part
                break  # S3 ignores whatever follows the file
            if name in form:
                # Two values for one field: which one the policy vouched for is unclear.
                raise PolicyError("InvalidArgument", f"Field {name!r} is given twice.", 400)
            form[name] = await _field(part, MAX_FIELD_BYTES - sum(map(len, form.values())))
        if file_part is None:
            raise PolicyError(
                "IncorrectNumberOfFilesInPostRequest",
                "POST requires exactly one file upload per request.",
                400,
            )
        accepted = verify_form(
            form, bucket, self._credentials(), self._clock(), file_part.filename or ""
        )
        try:
            self._buckets.check_key(bucket, accepted.key)
        except ValueError:
            raise PolicyError("InvalidArgument", "Invalid object key.", 400) from None
        refusal = await self._authorize(bucket, accepted.key)
        if refusal is not None:
            raise PolicyError(refusal[0], refusal[1], 403)
        temp, descriptor = self._buckets.open_temp(bucket, accepted.key)
        try:
            size, etag = await _stream(file_part, descriptor, accepted.max_bytes)
            if size < accepted.min_bytes:
                raise PolicyError(
                    "EntityTooSmall",
                    "Your proposed upload is smaller than the minimum allowed size.",
                    400,
                )
            if not await self._claim(bucket, accepted.key, size, etag):
                raise PolicyError("AccessDenied", "This upload has already been completed.", 403)
            try:
                await run_storage(self._buckets.publish, temp, bucket, accepted.key)
            except BaseException:
                await self._release(bucket, accepted.key)
                raise
        finally:
            temp.unlink(missing_ok=True)
        status = form.get("success_action_status", "204")
        location = f"{request.url.with_query(None)}/{accepted.key}"
        if status == "201":
            return responses.post_response(location, bucket, accepted.key, etag)
        return web.Response(
            status=200 if status == "200" else 204, headers={"ETag": etag, "Location": location}
        )


async def _next_part(reader: object) -> object | None:
    try:
        return await reader.next()  # type: ignore[attr-defined]
    except (ValueError, AssertionError, asyncio.IncompleteReadError):
        raise _malformed() from None


async def _field(part: BodyPartReader, budget: int) -> str:
    """A form field's value, read in chunks so an oversized one is refused unread."""
    value = bytearray()
    while chunk := await part.read_chunk(8192):
        value += chunk
        if len(value) > budget:
            raise PolicyError(
                "MaxPostPreDataLengthExceeded",
                "Your POST request fields preceeding the upload file was too large.",
                400,
            )
    return value.decode("utf-8", "replace")


async def _stream(part: BodyPartReader, descriptor: int, max_bytes: int | None) -> tuple[int, str]:
    """Copy the file part to the temp file in chunks; (size, quoted MD5 ETag)."""
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    with os.fdopen(descriptor, "wb") as sink:
        while chunk := await part.read_chunk(CHUNK_BYTES):
            size += len(chunk)
            if max_bytes is not None and size > max_bytes:
                raise PolicyError(
                    "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size.", 400
                )
            digest.update(chunk)
            await run_storage(sink.write, chunk)
        await run_storage(_sync, sink)
    return size, f'"{digest.hexdigest()}"'


def _sync(sink: object) -> None:
    sink.flush()  # type: ignore[attr-defined]
    os.fsync(sink.fileno())  # type: ignore[attr-defined]


def _malformed() -> PolicyError:
    return PolicyError(
        "MalformedPOSTRequest",
        "The body of your POST request is not well-formed multipart/form-data.",
        400,
    )
