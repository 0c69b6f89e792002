"""Objects on local disk, written atomically: a temp file beside the target, then rename."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from aiohttp import web


class LocalObjects:
    """Buckets as directories under one root; keys are relative paths, checked."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def check(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise PermissionError(f"cannot write in {self.root}")

    def check_key(self, bucket: str, key: str) -> None:
        self.path(bucket, key)

    def path(self, bucket: str, key: str) -> Path:
        parts = key.split("/")
        if (
            not key
            or "\\" in key
            or key.startswith("/")
            or any(part in ("", ".", "..") for part in parts)
            or "/" in bucket
            or bucket in ("", ".", "..")
        ):
            raise ValueError(f"unsafe object key {key!r}")
        return self.root / bucket / key

    def open_temp(self, bucket: str, key: str) -> tuple[Path, int]:
        """A new temp file in the object's directory (so the rename stays atomic)."""
        target = self.path(bucket, key)
        target.parent.mkdir(parents=True, exist_ok=True)
        descriptor, name = tempfile.mkstemp(prefix=".upload-", dir=target.parent)
        return Path(name), descriptor

    def publish(self, temp: Path, bucket: str, key: str) -> None:
        os.replace(temp, self.path(bucket, key))

    def write(self, bucket: str, key: str, data: bytes) -> None:
        temp, descriptor = self.open_temp(bucket, key)
        try:
            with os.fdopen(descriptor, "wb") as sink:
                sink.write(data)
                sink.flush()
                os.fsync(sink.fileno())
            self.publish(temp, bucket, key)
        finally:
            temp.unlink(missing_ok=True)

    def read(self, bucket: str, key: str) -> bytes:
        return self.path(bucket, key).read_bytes()

    def delete(self, bucket: str, key: str) -> None:
        self.path(bucket, key).unlink(missing_ok=True)

    async def respond(
        self, request: web.Request, bucket: str, key: str, headers: Mapping[str, str]
    ) -> web.StreamResponse:
        return web.FileResponse(self.path(bucket, key), headers=dict(headers))
