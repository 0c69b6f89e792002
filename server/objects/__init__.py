"""Where stored files live: local disk by default, S3-compatible storage for scale-out.

Keys are built by crmgate (`tenants/<id>/…`), never taken from clients as they are; each
store still refuses a key that could escape its bucket. Objects are named by a logical
bucket (`media`, `crmgate-files`, `spreadsheets`) and a key.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Protocol

from gateway.contract import CHUNK_BYTES
from server.errors import not_found
from server.executors import run_storage

log = logging.getLogger("crmgate.storage")


class Reader(Protocol):
    """A stored object's bytes, read in pieces (a local file, a boto3 body)."""

    def read(self, size: int) -> bytes: ...

    def close(self) -> None: ...


class ObjectStorage(Protocol):
    def check(self) -> None:
        """Raise when the store cannot be reached or written (the readiness probe)."""

    def check_key(self, bucket: str, key: str) -> None:
        """Raise ValueError for a key that is empty, absolute or climbs out of its bucket."""

    def open_temp(self, bucket: str, key: str) -> tuple[Path, int]:
        """A local temp file (path, descriptor) to stream an object into before publish."""

    def publish(self, temp: Path, bucket: str, key: str) -> None:
        """Make the temp file the object, atomically; the temp file is consumed."""

    def write(self, bucket: str, key: str, data: bytes) -> None:
        """Store a whole object atomically: readers see the old state or the new."""

    def read(self, bucket: str, key: str) -> bytes: ...

    def delete(self, bucket: str, key: str) -> None:
        """Remove an object; a missing one is not an error."""

    def list(self, bucket: str) -> Iterator[tuple[str, datetime]]:
        """Every object of a bucket as (key, last modified, aware UTC), temp files
        excluded: what the orphan sweep and fsck hold against the rows."""

    def temp_files(self) -> Iterator[tuple[Path, datetime]]:
        """Temp files of this store (from open_temp), with their last modification: a
        crash mid-upload leaves them behind, and only a sweep removes them."""

    def open(self, bucket: str, key: str) -> tuple[int, Reader]:
        """An object's size and a reader of its bytes; FileNotFoundError when missing."""


def open_storage(storage_url: str | None, data_dir: Path) -> ObjectStorage:
    """CRMGATE_STORAGE_URL: `s3://bucket/prefix`, a path or `file://` URL; unset means
    `<data dir>/objects`."""
    from server.objects.local import LocalObjects

    if storage_url and storage_url.startswith("s3://"):
        from server.objects.s3 import S3Objects

        return S3Objects(storage_url)
    if storage_url:
        return LocalObjects(Path(storage_url.removeprefix("file://")))
    return LocalObjects(data_dir / "objects")


async def stream_object(
    buckets: ObjectStorage, bucket: str, key: str
) -> tuple[int, AsyncIterator[bytes]]:
    """An object's size and its bytes in chunks, read off the event loop: what the
    streaming RPCs send, never the whole object in memory. NOT_FOUND when a row outlived
    its object (`crmgate admin fsck` says which and repairs them)."""
    try:
        size, reader = await run_storage(buckets.open, bucket, key)
    except FileNotFoundError:
        log.error("object %s/%s is missing though a row points at it", bucket, key)
        raise not_found("not_found", "No such file.") from None

    async def chunks() -> AsyncIterator[bytes]:
        try:
            while chunk := await run_storage(reader.read, CHUNK_BYTES):
                yield chunk
        finally:
            reader.close()

    return size, chunks()
