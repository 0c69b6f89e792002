"""Direct uploads (CRMGATE_DIRECT_UPLOADS=1): Close upload forms are presigned POSTs to
the S3 bucket itself, so file bytes never pass through crmgate and S3 enforces the form's
conditions (key, type, size range, 60 seconds).

crmgate does not see the post, so an upload stays pending until its download URL is
first used (a download or an email attachment): a HEAD then confirms the object and
completes the upload, its 24-hour window counted from when S3 stored it. Until then, or
when nothing was posted, the URL gets the same refusals as any pending upload.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC
from typing import TYPE_CHECKING

from server.executors import run_db, run_storage
from server.files import uploads

if TYPE_CHECKING:  # boto3 is imported only where S3 is used
    from server.objects.s3 import S3Objects

log = logging.getLogger("crmgate.uploads")


class DirectUploads:
    def __init__(self, store: S3Objects) -> None:
        self._store = store

    def sign_form(
        self, bucket: str, key: str, content_type: str, max_bytes: int, _base: str
    ) -> tuple[str, dict[str, str]]:
        """The Files service's form signer (uploads.FormSigner): botocore's presigned POST
        for the real bucket, with the same fields and conditions crmgate's own target
        would enforce."""
        return self._store.presigned_post(
            bucket,
            key,
            uploads.form_fields(content_type),
            max_bytes,
            uploads.FORM_SECONDS,
        )

    async def confirm_urls(self, urls: Iterable[str], base: str) -> None:
        """Confirm the uploads behind those of `urls` that are our download URLs."""
        for url in urls:
            token = uploads.token_from_url(url, base)
            if token:
                await self.confirm(token)

    async def confirm(self, token: str) -> None:
        """Complete the pending upload a token grants if its object is in the bucket. An
        object over the size limit (a store that ignored the form's range) is removed
        instead; a missing one leaves the upload pending."""
        upload = await run_db(uploads.pending_upload, token)
        if upload is None:
            return
        try:
            found = await run_storage(self._store.head, upload.bucket, upload.key)
        except FileNotFoundError:
            return
        if found.size > uploads.MAX_UPLOAD_BYTES:
            log.warning("upload %s is over the size limit; removing it", upload.file_id)
            await run_storage(self._store.delete, upload.bucket, upload.key)
            return
        stored_at = found.modified.astimezone(UTC).replace(tzinfo=None)  # naive, as rows hold
        await run_db(
            uploads.mark_uploaded, upload.bucket, upload.key, found.size, found.etag, stored_at
        )
