"""Objects in an S3-compatible bucket (`CRMGATE_STORAGE_URL=s3://bucket/prefix`), for
running several crmgate processes on several machines. Credentials, region and endpoint
come from the standard AWS settings (AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, …).

Logical buckets become key prefixes: object `media/tenants/1/…` of crmgate is
`<prefix>/media/tenants/1/…` in the real bucket. Uploads stream to a local temp file
first, so a failed request never leaves a partial object behind.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from server.executors import run_storage
from server.objects.local import LocalObjects

CHUNK_BYTES = 256 * 1024


class S3Objects:
    def __init__(self, url: str) -> None:
        import boto3  # only deployments that use S3 pay for importing it

        parts = urlsplit(url)
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
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
        descriptor, name = tempfile.mkstemp(prefix="crmgate-upload-")
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

    async def respond(
        self, request: web.Request, bucket: str, key: str, headers: Mapping[str, str]
    ) -> web.StreamResponse:
        reply = await run_storage(
            functools.partial(
                self._client.get_object, Bucket=self.bucket, Key=self._name(bucket, key)
            )
        )
        response = web.StreamResponse(headers=dict(headers))
        response.content_length = reply["ContentLength"]
        await response.prepare(request)
        body = reply["Body"]
        try:
            while chunk := await run_storage(body.read, CHUNK_BYTES):
                await response.write(chunk)
        finally:
            body.close()
        await response.write_eof()
        return response
