"""crm.v1.Crm: the voyzu CRM API. Each method reads the caller, runs one domain function
of this package off the event loop and wraps what it answers in the response."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import grpc
from crm.v1 import crm_pb2 as pb
from crm.v1 import crm_pb2_grpc
from google.api import httpbody_pb2

from gateway.contract import SESSION_KEY
from server.crm import (
    assets,
    contacts,
    custom_fields,
    exports,
    imports,
    jsclasses,
    requests,
    sheets,
    users,
)
from server.crm.background import (
    BackgroundRunner,
    background_allowed,
    progress_reporter,
    readable_request,
)
from server.crm.dates import iso
from server.crm.sessions import sign_in, sign_out
from server.errors import ApiError, invalid_argument, not_found
from server.executors import run_db, run_db_bulk, run_db_search
from server.links import PublicLinks, call_host, call_metadata
from server.objects import ObjectStorage, stream_object
from server.principal import require_principal
from server.rate_limits import RateLimits, current_client
from server.workers import BulkWorkers

T = TypeVar("T")


class CrmService(crm_pb2_grpc.CrmServicer):
    def __init__(
        self,
        buckets: ObjectStorage,
        runner: BackgroundRunner,
        bulk: BulkWorkers | None = None,
        limits: RateLimits | None = None,
        links: PublicLinks | None = None,
    ) -> None:
        self._buckets = buckets
        self._links = links or PublicLinks(None)
        self._runner = runner
        self._bulk = bulk
        self._limits = limits

    async def _run_bulk(self, job: Callable[..., T], *args: object) -> T:
        """A bulk job `job(buckets, *args, progress)`: in a worker process when the server
        has them (server/workers.py), else on one of this process's database threads."""
        progress = progress_reporter()
        if self._bulk is None:
            return await run_db_bulk(job, self._buckets, *args, progress)
        return await self._bulk.run(job, *args, progress=progress)

    async def Authenticate(
        self, request: pb.AuthenticateRequest, context: grpc.aio.ServicerContext
    ) -> pb.AuthenticateResponse:
        email, address = request.input.email, current_client.get()
        failed_before = self._limits and await self._limits.before_sign_in(email, address)
        session = await sign_in(email, request.input.password, call_host(context))
        if self._limits:
            await self._limits.after_sign_in(
                email, address, session is not None, bool(failed_before)
            )
        if session is None:
            raise ApiError(
                grpc.StatusCode.UNAUTHENTICATED, "invalid_credentials", "Invalid email or password."
            )
        return pb.AuthenticateResponse(
            auth=pb.Auth(
                session_id=session.session_id,
                user_id=str(session.user.uuid),
                expires_date=iso(session.expires_at),
            )
        )

    async def SignOut(
        self, request: pb.SignOutRequest, context: grpc.aio.ServicerContext
    ) -> pb.SignOutResponse:
        require_principal()  # the pipeline has checked the session this call ends
        metadata = dict(context.invocation_metadata() or ())
        await run_db(sign_out, metadata[SESSION_KEY])
        return pb.SignOutResponse()

    async def GetResourceClass(
        self, request: pb.GetResourceClassRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetResourceClassResponse:
        module = jsclasses.module_for(request.resource)
        if module is None:
            raise not_found("unknown_resource", f"No resource {request.resource!r}.")
        return pb.GetResourceClassResponse(
            module=httpbody_pb2.HttpBody(
                content_type="text/javascript; charset=utf-8", data=module.encode()
            )
        )

    async def SearchContacts(
        self, request: pb.SearchContactsRequest, context: grpc.aio.ServicerContext
    ) -> pb.SearchContactsResponse:
        principal = require_principal()
        datatable = await run_db_search(contacts.search, principal.user_id, request.input)
        return pb.SearchContactsResponse(datatable=datatable)

    async def CreateContact(
        self, request: pb.CreateContactRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateContactResponse:
        principal = require_principal()
        contact = await run_db(contacts.create, principal.user_id, request.contact)
        return pb.CreateContactResponse(contact=contact)

    async def GetContact(
        self, request: pb.GetContactRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetContactResponse:
        principal = require_principal()
        contact = await run_db(contacts.get, principal.user_id, request.id)
        return pb.GetContactResponse(contact=contact)

    async def UpdateContact(
        self, request: pb.UpdateContactRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateContactResponse:
        principal = require_principal()
        await run_db(contacts.update, principal.user_id, request.id, request.contact)
        return pb.UpdateContactResponse()

    async def DeleteContact(
        self, request: pb.DeleteContactRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteContactResponse:
        principal = require_principal()
        await run_db(contacts.delete, principal.user_id, request.id)
        return pb.DeleteContactResponse()

    async def UpdateCustomFields(
        self, request: pb.UpdateCustomFieldsRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateCustomFieldsResponse:
        principal = require_principal()
        fields = await run_db(custom_fields.define, principal.tenant_id, request.input.fields)
        return pb.UpdateCustomFieldsResponse(fields=fields)

    async def ListSpreadsheets(
        self, request: pb.ListSpreadsheetsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListSpreadsheetsResponse:
        principal = require_principal()
        found = await run_db(sheets.listing, principal.user_id)
        return pb.ListSpreadsheetsResponse(list=pb.SpreadsheetList(spreadsheets=found))

    async def GetSpreadsheet(
        self, request: pb.GetSpreadsheetRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetSpreadsheetResponse:
        principal = require_principal()
        file = await run_db(sheets.download, self._buckets, principal.user_id, request.id)
        return pb.GetSpreadsheetResponse(file=file)

    async def DownloadSpreadsheet(
        self, request: pb.DownloadSpreadsheetRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.DownloadSpreadsheetResponse]:
        principal = require_principal()
        row = await run_db(sheets.owned, principal.user_id, request.id)
        size, chunks = await stream_object(
            self._buckets, sheets.SPREADSHEET_BUCKET, row.storage_key
        )
        yield pb.DownloadSpreadsheetResponse(
            metadata=pb.SpreadsheetFile(
                content_type=sheets.CONTENT_TYPES[row.format], content_length=size
            )
        )
        async for chunk in chunks:
            yield pb.DownloadSpreadsheetResponse(chunk=chunk)

    async def ListContactAssets(
        self, request: pb.ListContactAssetsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListContactAssetsResponse:
        principal = require_principal()
        base = self._links.base(call_metadata(context))
        found = await run_db(assets.of_contact, principal.user_id, request.id, base)
        return pb.ListContactAssetsResponse(list=found)

    async def CreateImport(
        self, request: pb.CreateImportRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateImportResponse:
        principal = require_principal()
        result = await self._run_bulk(imports.import_contacts, principal.user_id, request.input)
        return pb.CreateImportResponse(result=result)

    async def CreateExport(
        self, request: pb.CreateExportRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateExportResponse:
        principal = require_principal()
        result = await self._run_bulk(exports.export_contacts, principal.user_id, request.input)
        return pb.CreateExportResponse(result=result)

    async def ListUsers(
        self, request: pb.ListUsersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListUsersResponse:
        principal = require_principal()
        found = await run_db(users.listing, principal.tenant_id)
        return pb.ListUsersResponse(list=pb.UserList(users=found))

    async def UpdateUserNotification(
        self, request: pb.UpdateUserNotificationRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateUserNotificationResponse:
        principal = require_principal()
        await run_db(users.set_notifications, principal.user_id, request.id, request.input)
        return pb.UpdateUserNotificationResponse(settings=request.input)

    async def UpdateUserSharing(
        self, request: pb.UpdateUserSharingRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateUserSharingResponse:
        principal = require_principal()
        chosen = await run_db(
            users.share_with, principal.user_id, list(request.input.shared_with_user_ids)
        )
        return pb.UpdateUserSharingResponse(
            sharing=pb.UserSharingInput(shared_with_user_ids=chosen)
        )

    async def CheckCredentials(
        self, request: pb.CheckCredentialsRequest, context: grpc.aio.ServicerContext
    ) -> pb.CheckCredentialsResponse:
        require_principal()  # the pipeline has checked the session; this is all there is to do
        return pb.CheckCredentialsResponse()

    async def StartRequest(
        self, request: pb.StartRequestRequest, context: grpc.aio.ServicerContext
    ) -> pb.StartRequestResponse:
        principal = require_principal()
        handler = self._runner.handlers.get(request.method)
        if handler is None or not background_allowed(request.method):
            raise invalid_argument(f"{request.method} cannot run in the background.")
        if not readable_request(handler, request.request):
            raise invalid_argument(f"The request is not a valid request of {request.method}.")
        request_id = await run_db(requests.enqueue, principal, request.method, request.request)
        self._runner.wake()
        return pb.StartRequestResponse(request_id=request_id)

    async def GetRequestStatus(
        self, request: pb.GetRequestStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetRequestStatusResponse:
        principal = require_principal()
        report = await run_db(requests.report, principal.user_id, request.request_id)
        if report.stale:
            await self._runner.sweep()  # its server died: settle it now, not at the next sweep
            report = await run_db(requests.report, principal.user_id, request.request_id)
        return pb.GetRequestStatusResponse(
            status=report.status, method=report.method, error=report.error
        )
