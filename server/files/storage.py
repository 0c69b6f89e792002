"""Embedded object storage for Close uploads: the signing secrets, the form signer, and
the browser-POST target behind Files.UploadObject. The secrets never leave the server:
gateways stream forms and bytes to it and learn only the verdict.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import cache

from gateway.contract import STORAGE_PATH
from server.config import Settings
from server.executors import run_db
from server.files.direct import DirectUploads
from server.files.s3post.policy import Credentials, build_form
from server.files.s3post.target import PostTarget
from server.files.uploads import FORM_SECONDS, form_fields, is_pending, mark_uploaded
from server.metrics import MeasuredStorage
from server.objects import ObjectStorage, open_storage
from server.signing_keys import signing_key

ACCESS_KEY_ID = "crmgate"


def object_storage(settings: Settings) -> ObjectStorage:
    """Where objects live: CRMGATE_STORAGE_URL, else the data dir; counted when metrics
    are kept."""
    store = open_storage(settings.storage_url, settings.data_dir)
    return MeasuredStorage(store) if settings.metrics else store


@cache
def storage_credentials() -> Credentials:
    return Credentials(ACCESS_KEY_ID, signing_key("storage-access-key"))


def sign_upload_form(
    bucket: str, key: str, content_type: str, max_bytes: int, base: str
) -> tuple[str, dict[str, str]]:
    """The Files service's form signer: a V4 form for crmgate's own POST target."""
    form = build_form(
        storage_credentials(),
        bucket,
        key,
        form_fields(content_type),
        max_bytes,
        datetime.now(UTC),
        timedelta(seconds=FORM_SECONDS),
    )
    return f"{base}{STORAGE_PATH}{bucket}", form


def direct_uploads(settings: Settings, buckets: ObjectStorage) -> DirectUploads | None:
    """Direct uploads when CRMGATE_DIRECT_UPLOADS=1 (Settings allows it only on S3)."""
    if not settings.direct_uploads:
        return None
    from server.objects.s3 import S3Objects

    assert isinstance(getattr(buckets, "inner", buckets), S3Objects)
    return DirectUploads(buckets)  # type: ignore[arg-type]  # an S3Objects, perhaps measured


def upload_target(buckets: ObjectStorage) -> PostTarget:
    """The target for forms CreateUpload signed: only pending uploads' keys, each once."""
    return PostTarget(buckets, _credentials, _authorize, _claim)


def _credentials() -> Mapping[str, Credentials]:
    credentials = storage_credentials()
    return {credentials.access_key_id: credentials}


async def _authorize(bucket: str, key: str, host: str | None) -> tuple[str, str] | None:
    if await run_db(is_pending, bucket, key, host):
        return None
    return "AccessDenied", "No pending upload for this key (it may be complete already)."


async def _claim(bucket: str, key: str, size: int, etag: str) -> bool:
    return await run_db(mark_uploaded, bucket, key, size, etag)
