"""Objects in an S3-compatible bucket (`CRMGATE_STORAGE_URL=s3://bucket/prefix`), for
running several crmgate processes on several machines. Credentials, region and endpoint
come from the standard AWS settings (AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, …).

Logical buckets become key prefixes: object `media/tenants/1/…` of crmgate is
`<prefix>/media/tenants/1/…` in the real bucket. Uploads stream to a local temp file
first, so a failed request never leaves a partial object behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from server.objects.local import LocalObjects

TEMP_PREFIX = "crmgate-upload-"


class S3Objects:
    def __init__(self, url: str, temp_dir: Path | None = None) -> None:
        import boto3  # only deployments that use S3 pay for importing it

        parts = urlsplit(url)
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self.temp_dir = temp_dir or Path(tempfile.gettempdir())
        self._client = boto3.client("s3")
        # Key rules are the same everywhere: reuse the local store's checks.
        self._keys = LocalObjects(Path("/nonexistent"))

    def _name(self, bucket: str, key: str) -> str:
        self._keys.check_key(bucket, key)
        return "/".join(part for part in (self.prefix, bucket, key) if part)

    def check(self) -> None:
        self._client.head_bucket(Bucket=self.bucket)

    def check_key(self, bucket: str, key: str) -> None:
        self._keys.check_key(bucket, key)

    def open_temp(self, bucket: str, key: str) -> tuple[Path, int]:
        self.check_key(bucket, key)
        descriptor, name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=self.temp_dir)
        return Path(name), descriptor

    def publish(self, temp: Path, bucket: str, key: str) -> None:
        try:
            self._client.upload_file(str(temp), self.bucket, self._name(bucket, key))
        finally:
            temp.unlink(missing_ok=True)

    def write(self, bucket: str, key: str, data: bytes) -> None:
        self._client.put_object(Bucket=self.bucket, Key=self._name(bucket, key), Body=data)

    def read(self, bucket: str, key: str) -> bytes:
        reply = self._client.get_object(Bucket=self.bucket, Key=self._name(bucket, key))
        return reply["Body"].read()

    def delete(self, bucket: str, key: str) -> None:
        self._client.delete_object(Bucket=self.bucket, Key=self._name(bucket, key))

    def list(self, bucket: str) -> Iterator[tuple[str, datetime]]:
        self._keys.bucket_dir(bucket)  # the same bucket-name checks as every key
        start = "/".join(part for part in (self.prefix, bucket) if part) + "/"
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=start
        )
        for page in pages:
            for item in page.get("Contents", []):
                yield item["Key"][len(start) :], item["LastModified"].astimezone(UTC)

    def temp_files(self) -> Iterator[tuple[Path, datetime]]:
        """Temp files in temp_dir, which several processes may share: the sweep's grace
        period is what keeps it off another process's upload in flight."""
        for path in self.temp_dir.glob(TEMP_PREFIX + "*"):
            try:
                modified = os.stat(path).st_mtime
            except FileNotFoundError:
                continue
            yield path, datetime.fromtimestamp(modified, UTC)

    def open(self, bucket: str, key: str) -> tuple[int, Any]:
        """The size and boto3's streaming body (read(n), close())."""
        try:
            reply = self._client.get_object(Bucket=self.bucket, Key=self._name(bucket, key))
        except self._client.exceptions.NoSuchKey:
            raise FileNotFoundError(f"{bucket}/{key}") from None
        return reply["ContentLength"], reply["Body"]
