"""files.v1.Files: the Close-compatible Files API, email activities, and the uploads and
downloads they refer to. Each method reads the caller, runs one domain function of this
package off the event loop and wraps what it answers in the response; uploads and
downloads stream, chunk by chunk."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from files.v1 import files_pb2, files_pb2_grpc

from gateway.contract import HTTP_STATUS_KEY
from server.database.models import utcnow
from server.errors import ApiError, not_found
from server.executors import run_db
from server.files import activities, uploads
from server.files.direct import DirectUploads
from server.files.s3post.policy import PolicyError
from server.files.s3post.target import PostTarget
from server.files.uploads import FormSigner
from server.links import PublicLinks, call_host, call_metadata
from server.objects import ObjectStorage, stream_object
from server.principal import require_principal

#: The gRPC code of each HTTP status S3 refuses a POST with.
_S3_CODES = {403: grpc.StatusCode.PERMISSION_DENIED, 412: grpc.StatusCode.FAILED_PRECONDITION}


class FilesService(files_pb2_grpc.FilesServicer):
    def __init__(
        self,
        links: PublicLinks,
        sign_form: FormSigner,
        buckets: ObjectStorage,
        target: PostTarget,
        direct: DirectUploads | None = None,
    ) -> None:
        self._links = links
        self._buckets = buckets
        self._target = target
        #: With direct uploads, forms post to the bucket and first use confirms them.
        self._direct = direct
        self._sign_form = direct.sign_form if direct else sign_form

    async def CreateUpload(
        self, request: files_pb2.CreateUploadRequest, context: grpc.aio.ServicerContext
    ) -> files_pb2.CreateUploadResponse:
        principal = require_principal()
        base = self._links.base(call_metadata(context))
        upload, download = await run_db(
            uploads.begin,
            principal.tenant_id,
            request.filename,
            request.content_type,
            base,
            self._sign_form,
        )
        return files_pb2.CreateUploadResponse(upload=upload, download=download)

    async def CreateEmailActivity(
        self, request: files_pb2.CreateEmailActivityRequest, context: grpc.aio.ServicerContext
    ) -> files_pb2.CreateEmailActivityResponse:
        principal = require_principal()
        base = self._links.base(call_metadata(context))
        if self._direct:
            await self._direct.confirm_urls((a.url for a in request.attachments), base)
        activity = await run_db(activities.create, principal.tenant_id, request, base)
        return files_pb2.CreateEmailActivityResponse(activity=activity)

    async def GetEmailActivity(
        self, request: files_pb2.GetEmailActivityRequest, context: grpc.aio.ServicerContext
    ) -> files_pb2.GetEmailActivityResponse:
        principal = require_principal()
        activity = await run_db(activities.get, principal.tenant_id, request.id)
        return files_pb2.GetEmailActivityResponse(activity=activity)

    async def CheckCredentials(
        self, request: files_pb2.CheckCredentialsRequest, context: grpc.aio.ServicerContext
    ) -> files_pb2.CheckCredentialsResponse:
        require_principal()  # the pipeline has checked the key; this is all there is to do
        return files_pb2.CheckCredentialsResponse()

    async def UploadObject(
        self,
        request_iterator: AsyncIterator[files_pb2.UploadObjectRequest],
        context: grpc.aio.ServicerContext,
    ) -> files_pb2.UploadObjectResponse:
        first = await anext(aiter(request_iterator), None)
        try:
            if first is None or first.WhichOneof("part") != "form":
                raise PolicyError("InvalidArgument", "The first message must carry the form.", 400)
            form = first.form
            stored = await self._target.store(
                form.bucket,
                [(field.name, field.value) for field in form.fields],
                form.filename,
                _chunks(request_iterator),
                call_host(context),
            )
        except PolicyError as error:
            raise ApiError(
                _S3_CODES.get(error.status, grpc.StatusCode.INVALID_ARGUMENT),
                error.code,
                error.message,
                metadata={HTTP_STATUS_KEY: str(error.status)},
            ) from None
        return files_pb2.UploadObjectResponse(
            bucket=form.bucket, key=stored.key, etag=stored.etag, size=stored.size
        )

    async def DownloadFile(
        self, request: files_pb2.DownloadFileRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[files_pb2.DownloadFileResponse]:
        if self._direct:
            await self._direct.confirm(request.token)
        found = await run_db(uploads.resolve, request.token, utcnow(), call_host(context))
        if found is None:
            raise not_found("not_found", "No such file.")
        if found.expired:
            raise ApiError(
                grpc.StatusCode.FAILED_PRECONDITION, "expired", "This download link has expired."
            )
        upload = found.upload
        size, chunks = await stream_object(self._buckets, upload.bucket, upload.key)
        yield files_pb2.DownloadFileResponse(
            metadata=files_pb2.FileMetadata(
                content_type=upload.content_type,
                content_disposition=uploads.content_disposition(upload.filename),
                content_length=size,
            )
        )
        async for chunk in chunks:
            yield files_pb2.DownloadFileResponse(chunk=chunk)


async def _chunks(
    messages: AsyncIterator[files_pb2.UploadObjectRequest],
) -> AsyncIterator[bytes]:
    """The file's bytes from the messages after the form."""
    async for message in messages:
        if message.WhichOneof("part") != "chunk":
            raise PolicyError("InvalidArgument", "Only the first message carries the form.", 400)
        yield message.chunk
