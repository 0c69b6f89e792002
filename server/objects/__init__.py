"""Where stored files live: local disk by default, S3-compatible storage for scale-out.

Keys are built by crmgate (`tenants/<id>/…`), never taken from clients as they are; each
store still refuses a key that could escape its bucket. Objects are named by a logical
bucket (`media`, `crmgate-files`, `spreadsheets`) and a key.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Protocol

from aiohttp import web


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

    async def respond(
        self, request: web.Request, bucket: str, key: str, headers: Mapping[str, str]
    ) -> web.StreamResponse:
        """Serve an object over HTTP with these headers (type, disposition…); raise
        FileNotFoundError, before anything is sent, when the object is missing."""


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
