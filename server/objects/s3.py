"""Objects in an S3-compatible bucket (`CRMGATE_STORAGE_URL=s3://bucket/prefix`), for
running several crmgate processes on several machines. Credentials, region and endpoint
come from the standard AWS settings (AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, …).

Logical buckets become key prefixes: object `media/tenants/1/…` of crmgate is
`<prefix>/media/tenants/1/…` in the real bucket. Uploads stream to a local temp file
first, so a failed request never leaves a partial object behind; from there objects over
PART_BYTES go up as multipart uploads, a few parts at a time, so memory stays bounded
whatever the size. Reads stream the GET's body.

With direct uploads (CRMGATE_DIRECT_UPLOADS=1) clients post Close files to the bucket
itself, with forms presigned here, and crmgate learns of them with a HEAD.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from server.objects.local import LocalObjects

log = logging.getLogger("crmgate.storage")

TEMP_PREFIX = "crmgate-upload-"
#: Objects over this go up in parts of this size, PARALLEL_PARTS at a time: what one
#: upload holds in memory is bounded by their product, not by the object's size.
PART_BYTES = 8 * 1024 * 1024
PARALLEL_PARTS = 4
_TRANSFER = TransferConfig(
    multipart_threshold=PART_BYTES,
    multipart_chunksize=PART_BYTES,
    max_concurrency=PARALLEL_PARTS,
)


@dataclass(frozen=True)
class ObjectInfo:
    """What a HEAD tells about an object."""

    size: int
    etag: str
    modified: datetime


class S3Objects:
    def __init__(self, url: str, temp_dir: Path | None = None) -> None:
        import boto3  # only deployments that use S3 pay for importing it

        parts = urlsplit(url)
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self.temp_dir = temp_dir or Path(tempfile.gettempdir())
        # Signature V4 everywhere, presigned forms included (botocore presigns V2 by
        # default for some endpoints).
        self._client = boto3.client("s3", config=Config(signature_version="s3v4"))
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
            self._client.upload_file(
                str(temp), self.bucket, self._name(bucket, key), Config=_TRANSFER
            )
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

    def head(self, bucket: str, key: str) -> ObjectInfo:
        """Size, ETag and last modification of an object; FileNotFoundError when missing.
        S3 answers a missing object's HEAD with 403 when the credentials may not list the
        bucket: that is taken as missing too, with a warning, rather than as a failure."""
        try:
            reply = self._client.head_object(Bucket=self.bucket, Key=self._name(bucket, key))
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code == "403":
                log.warning("HEAD of %s/%s forbidden: grant s3:ListBucket", bucket, key)
            if code in ("403", "404", "NoSuchKey", "NotFound"):
                raise FileNotFoundError(f"{bucket}/{key}") from None
            raise
        return ObjectInfo(
            reply["ContentLength"], reply.get("ETag", ""), reply["LastModified"].astimezone(UTC)
        )

    def presigned_post(
        self, bucket: str, key: str, fields: Mapping[str, str], max_bytes: int, seconds: int
    ) -> tuple[str, dict[str, str]]:
        """A browser-POST form (URL, fields) the bucket itself accepts for `seconds`: this
        key, exactly these fields, at most `max_bytes`. S3 enforces it, not crmgate."""
        conditions: list[Any] = [{name: value} for name, value in fields.items()]
        conditions.append(["content-length-range", 0, max_bytes])
        form = self._client.generate_presigned_post(
            Bucket=self.bucket,
            Key=self._name(bucket, key),
            Fields=dict(fields),
            Conditions=conditions,
            ExpiresIn=seconds,
        )
        return form["url"], form["fields"]
