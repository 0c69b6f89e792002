"""files.v1.Files: the Close-compatible Files API and email activities. Each method reads
the caller, runs one domain function of this package off the event loop and wraps what it
answers in the response."""

from __future__ import annotations

import grpc
from files.v1 import files_pb2, files_pb2_grpc

from server.executors import run_db
from server.files import activities, uploads
from server.files.uploads import FormSigner
from server.links import PublicLinks, call_metadata
from server.principal import require_principal


class FilesService(files_pb2_grpc.FilesServicer):
    def __init__(self, links: PublicLinks, sign_form: FormSigner) -> None:
        self._links = links
        self._sign_form = sign_form

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
        activity = await run_db(activities.create, principal.tenant_id, request)
        return files_pb2.CreateEmailActivityResponse(activity=activity)

    async def GetEmailActivity(
        self, request: files_pb2.GetEmailActivityRequest, context: grpc.aio.ServicerContext
    ) -> files_pb2.GetEmailActivityResponse:
        principal = require_principal()
        activity = await run_db(activities.get, principal.tenant_id, request.id)
        return files_pb2.GetEmailActivityResponse(activity=activity)
