"""Objects on local disk, written atomically: a temp file beside the target, then rename."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

TEMP_PREFIX = ".upload-"


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
        ):
            raise ValueError(f"unsafe object key {key!r}")
        return self.bucket_dir(bucket) / key

    def bucket_dir(self, bucket: str) -> Path:
        if "/" in bucket or "\\" in bucket or bucket in ("", ".", ".."):
            raise ValueError(f"unsafe bucket name {bucket!r}")
        return self.root / bucket

    def open_temp(self, bucket: str, key: str) -> tuple[Path, int]:
        """A new temp file in the object's directory (so the rename stays atomic)."""
        target = self.path(bucket, key)
        target.parent.mkdir(parents=True, exist_ok=True)
        descriptor, name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=target.parent)
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

    def list(self, bucket: str) -> Iterator[tuple[str, datetime]]:
        top = self.bucket_dir(bucket)
        for path, modified in _walk(top):
            if not path.name.startswith(TEMP_PREFIX):
                yield path.relative_to(top).as_posix(), modified

    def temp_files(self) -> Iterator[tuple[Path, datetime]]:
        for path, modified in _walk(self.root):
            if path.name.startswith(TEMP_PREFIX):
                yield path, modified

    def open(self, bucket: str, key: str) -> tuple[int, BinaryIO]:
        path = self.path(bucket, key)
        if not path.is_file():
            raise FileNotFoundError(path)
        handle = path.open("rb")
        return os.fstat(handle.fileno()).st_size, handle


def _walk(top: Path) -> Iterator[tuple[Path, datetime]]:
    """Files under top with their modification times; ones removed meanwhile are skipped."""
    for directory, _, names in os.walk(top):
        for name in names:
            path = Path(directory, name)
            try:
                modified = path.stat().st_mtime
            except FileNotFoundError:
                continue
            yield path, datetime.fromtimestamp(modified, UTC)
