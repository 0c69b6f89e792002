"""The browser-POST target's core, whatever carries the form: Files.UploadObject, which
every gateway's `POST /storage/{bucket}` streams to.

The fields are checked against the signed policy before a byte of the file is read; the
file then streams to a temp file (never whole in memory), capped by the policy's
content-length-range. It is then published (renamed or uploaded into place) and only
after that recorded (`claim`), so a crash at any moment never leaves a record of an
upload whose object is not in place; what a crash leaves instead (a temp file, an object
nothing records) is swept by server.consistency. Any other failure leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import weakref
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from server.executors import run_storage
from server.files.s3post.policy import Credentials, PolicyError, verify_form
from server.objects import ObjectStorage

#: Whether an object may be written at (bucket, key) now, through this public host (None:
#: a caller that did not say): None, or S3's (code, message).
Authorize = Callable[[str, str, str | None], Awaitable[tuple[str, str] | None]]
#: Record an object now in place (bucket, key, size, etag); False refuses it (it is then
#: removed again).
Claim = Callable[[str, str, int, str], Awaitable[bool]]


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    #: S3's ETag: the quoted hex MD5 of the bytes.
    etag: str


class PostTarget:
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

    async def store(
        self,
        bucket: str,
        fields: Iterable[tuple[str, str]],
        filename: str,
        chunks: AsyncIterable[bytes],
        host: str | None = None,
    ) -> StoredObject:
        """Verify the form (fields as sent before the file), then stream, publish and
        record the file; raises PolicyError with S3's code and status."""
        form: dict[str, str] = {}
        for name, value in fields:
            lowered = name.lower()  # S3 treats field names case-insensitively
            if lowered in form:
                # Two values for one field: which one the policy vouched for is unclear.
                raise PolicyError("InvalidArgument", f"Field {lowered!r} is given twice.", 400)
            form[lowered] = value
        accepted = verify_form(form, bucket, self._credentials(), self._clock(), filename)
        try:
            self._buckets.check_key(bucket, accepted.key)
        except ValueError:
            raise PolicyError("InvalidArgument", "Invalid object key.", 400) from None
        refusal = await self._authorize(bucket, accepted.key, host)
        if refusal is not None:
            raise PolicyError(refusal[0], refusal[1], 403)
        temp, descriptor = self._buckets.open_temp(bucket, accepted.key)
        try:
            size, etag = await _stream(chunks, descriptor, accepted.max_bytes)
            if size < accepted.min_bytes:
                raise PolicyError(
                    "EntityTooSmall",
                    "Your proposed upload is smaller than the minimum allowed size.",
                    400,
                )
            await self._complete(temp, bucket, accepted.key, size, etag, host)
        finally:
            temp.unlink(missing_ok=True)
        return StoredObject(accepted.key, size, etag)

    async def _complete(
        self, temp: Path, bucket: str, key: str, size: int, etag: str, host: str | None
    ) -> None:
        """Publish the object, then record it: the record never runs ahead of the object.
        Under the key's lock, so an upload that finished streaming second finds the
        key taken instead of overwriting the object the first one recorded."""
        lock = self._completing.setdefault((bucket, key), asyncio.Lock())
        async with lock:
            if await self._authorize(bucket, key, host) is not None:
                raise _completed()
            await run_storage(self._buckets.publish, temp, bucket, key)
            if not await self._claim(bucket, key, size, etag):
                await run_storage(self._buckets.delete, bucket, key)
                raise _completed()


async def _stream(
    chunks: AsyncIterable[bytes], descriptor: int, max_bytes: int | None
) -> tuple[int, str]:
    """Copy the file to the temp file as its chunks arrive; (size, quoted MD5 ETag)."""
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    with os.fdopen(descriptor, "wb") as sink:
        async for chunk in chunks:
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
