"""An upload's files on disk while they are checked: UploadAssets' chunks (or
AttachAssets' contents) go to the store's temp files as they arrive, so no request is
whole in memory twice; the files are read back one by one to be checked and converted,
and removed whatever happens (a crash leaves temp files only the sweep removes)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from server.c2c.media import MEDIA_BUCKET
from server.errors import ApiError, invalid_argument
from server.executors import run_storage
from server.objects import ObjectStorage

#: The reason of a stream that does not follow UploadAssets' protocol.
MALFORMED = "malformed_stream"


class Spool:
    """The temp files of one upload, one per file, in request order."""

    def __init__(self, buckets: ObjectStorage, tenant_id: int) -> None:
        self._buckets = buckets
        self._key = f"tenants/{tenant_id}/media/upload"
        self.paths: list[Path] = []

    async def take(self, sizes: Sequence[int], chunks: AsyncIterator[bytes]) -> None:
        """Write `chunks` (the files' bytes, concatenated in order) to one temp file per
        size; INVALID_ARGUMENT when they hold fewer or more bytes than the sizes say."""
        pending = memoryview(b"")
        for size in sizes:
            with self._open() as sink:
                remaining = size
                while remaining:
                    if not pending:
                        chunk = await anext(chunks, None)
                        if chunk is None:
                            raise _malformed("The chunks end before the files the manifest lists.")
                        pending = memoryview(chunk)
                    piece, pending = pending[:remaining], pending[remaining:]
                    await run_storage(sink.write, piece)
                    remaining -= len(piece)
        if pending or await anext(chunks, None) is not None:
            raise _malformed("The chunks hold more bytes than the manifest lists.")

    async def write(self, contents: Iterable[bytes]) -> None:
        """Files given whole (a unary AttachAssets request's contents)."""
        for content in contents:
            with self._open() as sink:
                await run_storage(sink.write, content)

    def read(self, index: int) -> bytes:
        return self.paths[index].read_bytes()

    @contextmanager
    def _open(self) -> Iterator[BinaryIO]:
        path, descriptor = self._buckets.open_temp(MEDIA_BUCKET, self._key)
        self.paths.append(path)
        with os.fdopen(descriptor, "wb") as sink:
            yield sink

    def remove(self) -> None:
        for path in self.paths:
            path.unlink(missing_ok=True)


def _malformed(text: str) -> ApiError:
    return invalid_argument(text, MALFORMED)
