"""The browser-POST endpoint: `POST {base}/storage/{bucket}` with multipart/form-data.

Fields come first and are checked against the signed policy before a byte of the file is
read; the file then streams to a temp file (never whole in memory), capped by the
policy's content-length-range. It is then published (renamed or uploaded into place)
and only after that recorded (`claim`), so a crash at any moment never leaves a record
of an upload whose object is not in place; what a crash leaves instead (a temp file, an
object nothing records) is swept by server.consistency. Any other failure leaves nothing
behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import weakref
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import BodyPartReader, web

from gateway.contract import new_request_id
from server.executors import run_storage
from server.files.s3post import responses
from server.files.s3post.policy import Credentials, PolicyError, verify_form
from server.objects import ObjectStorage

log = logging.getLogger("crmgate.storage")

CHUNK_BYTES = 256 * 1024
#: All fields before the file together (S3's limit is 20 KiB; policies can be long).
MAX_FIELD_BYTES = 64 * 1024

#: Whether an object may be written at (bucket, key) now: None, or S3's (code, message).
Authorize = Callable[[str, str], Awaitable[tuple[str, str] | None]]
#: Record an object now in place (bucket, key, size, etag); False refuses it (it is then
#: removed again).
Claim = Callable[[str, str, int, str], Awaitable[bool]]


class PostEndpoint:
    def __init__(
        self,
        buckets: ObjectStorage,
        credentials: Callable[[], Mapping[str, Credentials]],
        authorize: Authorize,
        claim: Claim,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._buckets = buckets
        self._credentials = credentials
        self._authorize = authorize
        self._claim = claim
        self._clock = clock
        # One completion at a time per key: two POSTs of one form must not both publish.
        self._completing: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

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
            await self._complete(temp, bucket, accepted.key, size, etag)
        finally:
            temp.unlink(missing_ok=True)
        status = form.get("success_action_status", "204")
        location = f"{request.url.with_query(None)}/{accepted.key}"
        if status == "201":
            return responses.post_response(location, bucket, accepted.key, etag)
        return web.Response(
            status=200 if status == "200" else 204, headers={"ETag": etag, "Location": location}
        )

    async def _complete(self, temp: Path, bucket: str, key: str, size: int, etag: str) -> None:
        """Publish the object, then record it: the record never runs ahead of the object.
        Under the key's lock, so an upload that finished streaming second finds the
        key taken instead of overwriting the object the first one recorded."""
        lock = self._completing.setdefault((bucket, key), asyncio.Lock())
        async with lock:
            if await self._authorize(bucket, key) is not None:
                raise _completed()
            await run_storage(self._buckets.publish, temp, bucket, key)
            if not await self._claim(bucket, key, size, etag):
                await run_storage(self._buckets.delete, bucket, key)
                raise _completed()


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


def _completed() -> PolicyError:
    return PolicyError("AccessDenied", "This upload has already been completed.", 403)


def _malformed() -> PolicyError:
    return PolicyError(
        "MalformedPOSTRequest",
        "The body of your POST request is not well-formed multipart/form-data.",
        400,
    )
