"""crm.v1.Crm: the voyzu CRM API."""

from __future__ import annotations

import uuid

import grpc
from crm.v1 import crm_pb2 as pb
from crm.v1 import crm_pb2_grpc
from google.api import httpbody_pb2

from server.crm import contacts, custom_fields, jsclasses, spreadsheets
from server.crm.background import (
    BackgroundRunner,
    Progress,
    background_allowed,
    current_progress,
    enqueue,
    request_status,
)
from server.crm.dates import iso
from server.crm.sessions import sign_in
from server.database.connection import run_sync
from server.database.models import BackgroundRequest, Spreadsheet, Tenant, User, UserShare, utcnow
from server.errors import ApiError, invalid_argument, not_found
from server.files.uploads import safe_name
from server.objects import ObjectStorage
from server.principal import Principal, require_principal

SPREADSHEET_BUCKET = "spreadsheets"
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def _user(principal: Principal) -> User:
    return User.select(User, Tenant).join(Tenant).where(User.id == principal.user_id).get()


def _paid(user: User) -> None:
    if user.tenant.plan != "paid":
        raise ApiError(
            grpc.StatusCode.FAILED_PRECONDITION,
            "payment_required",
            "Imports and exports need a paid voyzu subscription.",
        )


def _progress() -> Progress:
    """The background request's progress reporter, or one that ignores reports (a direct
    call). Read on the event loop: worker threads do not see the context variable."""
    return current_progress.get() or (lambda percent, commentary: None)


def _spreadsheet(row: Spreadsheet) -> pb.Spreadsheet:
    return pb.Spreadsheet(
        id=str(row.uuid),
        name=row.name,
        format=row.format,
        kind=row.kind,
        size=row.size,
        row_count=row.row_count,
        created_date=iso(row.created_at),
    )


class CrmService(crm_pb2_grpc.CrmServicer):
    def __init__(self, buckets: ObjectStorage, runner: BackgroundRunner) -> None:
        self._buckets = buckets
        self._runner = runner

    async def Authenticate(
        self, request: pb.AuthenticateRequest, context: grpc.aio.ServicerContext
    ) -> pb.AuthenticateResponse:
        session = await run_sync(sign_in, request.input.email, request.input.password)
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

        def search() -> pb.SearchContactsResponse:
            return pb.SearchContactsResponse(
                datatable=contacts.page_of(_user(principal), request.input)
            )

        return await run_sync(search)

    async def CreateContact(
        self, request: pb.CreateContactRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateContactResponse:
        principal = require_principal()

        def create() -> pb.CreateContactResponse:
            contact = contacts.create(_user(principal), request.contact)
            return pb.CreateContactResponse(contact=contacts.to_web(contact))

        return await run_sync(create)

    async def GetContact(
        self, request: pb.GetContactRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetContactResponse:
        principal = require_principal()

        def get() -> pb.GetContactResponse:
            return pb.GetContactResponse(
                contact=contacts.to_web(contacts.find(_user(principal), request.id))
            )

        return await run_sync(get)

    async def UpdateContact(
        self, request: pb.UpdateContactRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateContactResponse:
        principal = require_principal()
        await run_sync(
            contacts.update, await run_sync(_user, principal), request.id, request.contact
        )
        return pb.UpdateContactResponse()

    async def DeleteContact(
        self, request: pb.DeleteContactRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteContactResponse:
        principal = require_principal()
        await run_sync(contacts.delete, await run_sync(_user, principal), request.id)
        return pb.DeleteContactResponse()

    async def UpdateCustomFields(
        self, request: pb.UpdateCustomFieldsRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateCustomFieldsResponse:
        principal = require_principal()
        problems = custom_fields.check_definitions(request.input.fields)
        if problems:
            raise invalid_argument(" ".join(problems))

        def update() -> pb.UpdateCustomFieldsResponse:
            with Tenant._meta.database.atomic():
                custom_fields.define(principal.tenant_id, request.input.fields)
            fields = custom_fields.definitions(principal.tenant_id)
            return pb.UpdateCustomFieldsResponse(
                fields=pb.CustomFieldList(fields=[custom_fields.to_message(f) for f in fields])
            )

        return await run_sync(update)

    async def ListSpreadsheets(
        self, request: pb.ListSpreadsheetsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListSpreadsheetsResponse:
        principal = require_principal()

        def listing() -> pb.ListSpreadsheetsResponse:
            rows = (
                Spreadsheet.select()
                .where(Spreadsheet.owner == principal.user_id)
                .order_by(Spreadsheet.created_at.desc(), Spreadsheet.id.desc())
            )
            return pb.ListSpreadsheetsResponse(
                list=pb.SpreadsheetList(spreadsheets=[_spreadsheet(row) for row in rows])
            )

        return await run_sync(listing)

    async def GetSpreadsheet(
        self, request: pb.GetSpreadsheetRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetSpreadsheetResponse:
        principal = require_principal()

        def get() -> pb.GetSpreadsheetResponse:
            try:
                parsed = uuid.UUID(request.id)
            except ValueError:
                raise invalid_argument(f"{request.id!r} is not a spreadsheet id.") from None
            row = Spreadsheet.get_or_none(
                Spreadsheet.uuid == parsed, Spreadsheet.owner == principal.user_id
            )
            if row is None:
                raise not_found("spreadsheet_not_found", f"No spreadsheet {request.id}.")
            data = self._buckets.read(SPREADSHEET_BUCKET, row.storage_key)
            return pb.GetSpreadsheetResponse(
                file=httpbody_pb2.HttpBody(content_type=CONTENT_TYPES[row.format], data=data)
            )

        return await run_sync(get)

    async def CreateImport(
        self, request: pb.CreateImportRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateImportResponse:
        principal = require_principal()
        result = await run_sync(self._import, principal, request.input, _progress())
        return pb.CreateImportResponse(result=result)

    def _import(
        self, principal: Principal, given: pb.ImportInput, progress: Progress
    ) -> pb.ImportResult:
        user = _user(principal)
        _paid(user)
        try:
            sheet = spreadsheets.read(given.file_name, given.content)
        except spreadsheets.SpreadsheetError as error:
            raise invalid_argument(str(error)) from None
        names = [field.name for field in custom_fields.definitions(user.tenant_id)]
        allowed = {*spreadsheets.STANDARD_FIELDS, *(f"custom:{name}" for name in names)}
        wrong = sorted(target for target in given.mapping.values() if target not in allowed)
        if wrong:
            raise invalid_argument(
                f"Mapping targets must be one of {', '.join(sorted(allowed))}; not {', '.join(wrong)}."
            )
        try:
            targets, ignored = spreadsheets.column_targets(sheet.headers, given.mapping, names)
        except spreadsheets.SpreadsheetError as error:
            raise invalid_argument(str(error)) from None
        if "Email" not in targets:
            raise invalid_argument("No column maps to Email; add it to Mapping.")
        errors: list[pb.RowError] = []
        imported = 0
        total = len(sheet.rows)
        for index, row in enumerate(sheet.rows):
            fields, values = spreadsheets.row_values(targets, row)
            web = pb.WebContact(
                first_name=fields.get("FirstName", ""),
                last_name=fields.get("LastName", ""),
                email=fields.get("Email", ""),
                phone=fields.get("Phone", ""),
                company=fields.get("Company", ""),
                custom_fields=values,
            )
            try:
                contacts.create(user, web)
                imported += 1
            except ApiError as error:
                errors.append(pb.RowError(row=index + 2, message=error.message))
            progress(int((index + 1) * 100 / total), f"Imported {index + 1} of {total} rows")
        stored = self._store_sheet(user, given.file_name, "import", given.content, total)
        return pb.ImportResult(
            imported_count=imported,
            errors=errors,
            ignored_columns=ignored,
            spreadsheet=_spreadsheet(stored),
        )

    async def CreateExport(
        self, request: pb.CreateExportRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateExportResponse:
        principal = require_principal()
        result = await run_sync(self._export, principal, request.input, _progress())
        return pb.CreateExportResponse(result=result)

    def _export(
        self, principal: Principal, given: pb.ExportInput, progress: Progress
    ) -> pb.ExportResult:
        user = _user(principal)
        _paid(user)
        format_ = given.format or "csv"
        if format_ not in CONTENT_TYPES:
            raise invalid_argument("Format must be csv or xlsx.")
        names = [field.name for field in custom_fields.definitions(user.tenant_id)]
        headers = [*spreadsheets.STANDARD_FIELDS, "CreatedDate", "UpdatedDate", *names]
        matches = list(contacts.every_match(user, given.search))
        progress(10, f"Writing {len(matches)} contacts")

        def rows():  # type: ignore[no-untyped-def]
            for contact in matches:
                values = {value.name: value.value for value in contact.custom_values}
                yield [
                    contact.first_name,
                    contact.last_name,
                    contact.email,
                    contact.phone,
                    contact.company,
                    iso(contact.created_at),
                    iso(contact.updated_at),
                    *(values.get(name, "") for name in names),
                ]

        data, count = spreadsheets.write(format_, headers, rows())
        name = f"contacts-{utcnow():%Y%m%d-%H%M%S}.{format_}"
        stored = self._store_sheet(user, name, "export", data, count)
        return pb.ExportResult(spreadsheet=_spreadsheet(stored))

    def _store_sheet(self, user: User, name: str, kind: str, data: bytes, rows: int) -> Spreadsheet:
        row = Spreadsheet(
            tenant=user.tenant_id,
            owner=user,
            name=name,
            kind=kind,
            format=spreadsheets.spreadsheet_format(name),
            size=len(data),
            row_count=rows,
        )
        row.storage_key = f"tenants/{user.tenant_id}/spreadsheets/{row.uuid}/{safe_name(name)}"
        self._buckets.write(SPREADSHEET_BUCKET, row.storage_key, data)
        try:
            row.save(force_insert=True)
        except BaseException:
            self._buckets.delete(SPREADSHEET_BUCKET, row.storage_key)
            raise
        return row

    async def ListUsers(
        self, request: pb.ListUsersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListUsersResponse:
        principal = require_principal()

        def listing() -> pb.ListUsersResponse:
            users = User.select().where(User.tenant == principal.tenant_id).order_by(User.email)
            return pb.ListUsersResponse(
                list=pb.UserList(users=[pb.WebUser(id=str(u.uuid), email=u.email) for u in users])
            )

        return await run_sync(listing)

    async def UpdateUserNotification(
        self, request: pb.UpdateUserNotificationRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateUserNotificationResponse:
        principal = require_principal()

        def update() -> pb.UpdateUserNotificationResponse:
            user = _user(principal)
            if request.id != str(user.uuid):
                raise invalid_argument("You can only change your own notification settings.")
            user.notify_import_complete = request.input.email_on_import_complete
            user.notify_export_complete = request.input.email_on_export_complete
            user.weekly_digest = request.input.weekly_digest
            user.save()
            return pb.UpdateUserNotificationResponse(settings=request.input)

        return await run_sync(update)

    async def UpdateUserSharing(
        self, request: pb.UpdateUserSharingRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateUserSharingResponse:
        principal = require_principal()

        def update() -> pb.UpdateUserSharingResponse:
            user = _user(principal)
            colleagues = {
                str(u.uuid): u
                for u in User.select().where(User.tenant == user.tenant_id, User.id != user.id)
            }
            unknown = [i for i in request.input.shared_with_user_ids if i not in colleagues]
            if unknown:
                raise invalid_argument(f"Not users of your customer: {', '.join(unknown)}.")
            chosen = dict.fromkeys(request.input.shared_with_user_ids)
            with User._meta.database.atomic():
                UserShare.delete().where(UserShare.owner == user).execute()
                for user_id in chosen:
                    UserShare.create(owner=user, viewer=colleagues[user_id])
            return pb.UpdateUserSharingResponse(
                sharing=pb.UserSharingInput(shared_with_user_ids=list(chosen))
            )

        return await run_sync(update)

    async def StartRequest(
        self, request: pb.StartRequestRequest, context: grpc.aio.ServicerContext
    ) -> pb.StartRequestResponse:
        principal = require_principal()
        if request.method not in self._runner.handlers or not background_allowed(request.method):
            raise invalid_argument(f"{request.method} cannot run in the background.")
        request_id = await run_sync(enqueue, principal, request.method, request.request)
        self._runner.start(request_id)
        return pb.StartRequestResponse(request_id=request_id)

    async def GetRequestStatus(
        self, request: pb.GetRequestStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetRequestStatusResponse:
        principal = require_principal()
        row = await run_sync(
            BackgroundRequest.get_or_none,
            (BackgroundRequest.request_id == request.request_id)
            & (BackgroundRequest.user == principal.user_id),
        )
        if row is None:
            raise not_found("request_not_found", f"No request {request.request_id}.")
        if row.status == "PROCESSING" and row.lease_until and row.lease_until < utcnow():
            await self._runner.recover()  # its worker died: retry it or give up on it
            row = await run_sync(BackgroundRequest.get_by_id, row.id)
        status, error = request_status(row)
        return pb.GetRequestStatusResponse(status=status, method=row.method, error=error)
