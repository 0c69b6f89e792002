"""crm.v1.Crm: the voyzu CRM API."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator

import grpc
from crm.v1 import crm_pb2 as pb
from crm.v1 import crm_pb2_grpc
from google.api import httpbody_pb2

from server.crm import contacts, custom_fields, jsclasses, spreadsheets
from server.crm.background import (
    NOT_ASYNC,
    BackgroundRunner,
    Progress,
    current_progress,
    enqueue,
    request_status,
)
from server.crm.contacts import bad_input, iso
from server.crm.sessions import sign_in
from server.database.connection import lock_rows
from server.database.models import (
    BackgroundRequest,
    Contact,
    Spreadsheet,
    Tenant,
    User,
    UserShare,
    utcnow,
)
from server.errors import ApiError
from server.executors import run_cpu, run_db, run_db_bulk, run_storage
from server.files.uploads import safe_name
from server.objects import ObjectStorage
from server.principal import Principal, require_principal

SPREADSHEET_BUCKET = "spreadsheets"
#: Import rows written per database unit: small enough that other calls get a thread
#: between units, large enough that an import is not mostly queueing.
IMPORT_CHUNK = 50
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def _user(principal: Principal) -> User:
    return User.select(User, Tenant).join(Tenant).where(User.id == principal.user_id).get()


def _paid(user: User) -> None:
    if user.tenant.plan != "paid":
        raise ApiError(
            grpc.StatusCode.PERMISSION_DENIED,
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


def _import_rows(
    user: User,
    targets: dict[str, str],
    rows: list[list[str]],
    start: int,
    total: int,
    progress: Progress,
) -> list[pb.RowError]:
    """Create one contact per row (each in its own transaction); the rows refused."""
    errors = []
    for index, row in enumerate(rows, start):
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
        except ApiError as error:
            errors.append(pb.RowError(row=index + 2, message=error.message))
        progress(int((index + 1) * 100 / total), f"Imported {index + 1} of {total} rows")
    return errors


def _rows(matches: list[Contact], names: list[str]) -> Iterator[list[str]]:
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


class CrmService(crm_pb2_grpc.CrmServicer):
    def __init__(self, buckets: ObjectStorage, runner: BackgroundRunner) -> None:
        self._buckets = buckets
        self._runner = runner

    async def Authenticate(
        self, request: pb.AuthenticateRequest, context: grpc.aio.ServicerContext
    ) -> pb.AuthenticateResponse:
        session = await sign_in(request.input.email, request.input.password)
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
            raise ApiError(
                grpc.StatusCode.NOT_FOUND, "route_not_found", f"No resource {request.resource!r}."
            )
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

        return await run_db(search)

    async def CreateContact(
        self, request: pb.CreateContactRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateContactResponse:
        principal = require_principal()

        def create() -> pb.CreateContactResponse:
            contact = contacts.create(_user(principal), request.contact)
            return pb.CreateContactResponse(contact=contacts.to_web(contact))

        return await run_db(create)

    async def GetContact(
        self, request: pb.GetContactRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetContactResponse:
        principal = require_principal()

        def get() -> pb.GetContactResponse:
            return pb.GetContactResponse(
                contact=contacts.to_web(contacts.find(_user(principal), request.id))
            )

        return await run_db(get)

    async def UpdateContact(
        self, request: pb.UpdateContactRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateContactResponse:
        principal = require_principal()
        await run_db(contacts.update, await run_db(_user, principal), request.id, request.contact)
        return pb.UpdateContactResponse()

    async def DeleteContact(
        self, request: pb.DeleteContactRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteContactResponse:
        principal = require_principal()
        await run_db(contacts.delete, await run_db(_user, principal), request.id)
        return pb.DeleteContactResponse()

    async def UpdateCustomFields(
        self, request: pb.UpdateCustomFieldsRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateCustomFieldsResponse:
        principal = require_principal()
        problems = custom_fields.check_definitions(request.input.fields)
        if problems:
            raise bad_input(" ".join(problems))

        def update() -> pb.UpdateCustomFieldsResponse:
            with Tenant._meta.database.atomic():
                custom_fields.define(principal.tenant_id, request.input.fields)
            fields = custom_fields.definitions(principal.tenant_id)
            return pb.UpdateCustomFieldsResponse(
                fields=pb.CustomFieldList(fields=[custom_fields.to_message(f) for f in fields])
            )

        return await run_db(update)

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

        return await run_db(listing)

    async def GetSpreadsheet(
        self, request: pb.GetSpreadsheetRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetSpreadsheetResponse:
        principal = require_principal()

        def find() -> Spreadsheet:
            try:
                parsed = uuid.UUID(request.id)
            except ValueError:
                raise bad_input(f"{request.id!r} is not a spreadsheet id.") from None
            row = Spreadsheet.get_or_none(
                Spreadsheet.uuid == parsed, Spreadsheet.owner == principal.user_id
            )
            if row is None:
                raise bad_input(f"No spreadsheet {request.id}.")
            return row

        row = await run_db(find)
        data = await run_storage(self._buckets.read, SPREADSHEET_BUCKET, row.storage_key)
        return pb.GetSpreadsheetResponse(
            file=httpbody_pb2.HttpBody(content_type=CONTENT_TYPES[row.format], data=data)
        )

    async def CreateImport(
        self, request: pb.CreateImportRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateImportResponse:
        """Parsing runs on the CPU pool and rows are written IMPORT_CHUNK at a time, so an
        import takes turns with other calls for database threads instead of holding one."""
        principal = require_principal()
        given, progress = request.input, _progress()
        user = await run_db(_user, principal)
        _paid(user)
        try:
            sheet = await run_cpu(spreadsheets.read, given.file_name, given.content)
        except spreadsheets.SpreadsheetError as error:
            raise bad_input(str(error)) from None
        names = [field.name for field in await run_db(custom_fields.definitions, user.tenant_id)]
        allowed = {*spreadsheets.STANDARD_FIELDS, *(f"custom:{name}" for name in names)}
        wrong = sorted(target for target in given.mapping.values() if target not in allowed)
        if wrong:
            raise bad_input(
                f"Mapping targets must be one of {', '.join(sorted(allowed))}; not {', '.join(wrong)}."
            )
        try:
            targets, ignored = spreadsheets.column_targets(sheet.headers, given.mapping, names)
        except spreadsheets.SpreadsheetError as error:
            raise bad_input(str(error)) from None
        if "Email" not in targets:
            raise bad_input("No column maps to Email; add it to Mapping.")
        errors: list[pb.RowError] = []
        total = len(sheet.rows)
        for start in range(0, total, IMPORT_CHUNK):
            chunk = sheet.rows[start : start + IMPORT_CHUNK]
            errors += await run_db_bulk(_import_rows, user, targets, chunk, start, total, progress)
        stored = await self._store_sheet(user, given.file_name, "import", given.content, total)
        return pb.CreateImportResponse(
            result=pb.ImportResult(
                imported_count=total - len(errors),
                errors=errors,
                ignored_columns=ignored,
                spreadsheet=_spreadsheet(stored),
            )
        )

    async def CreateExport(
        self, request: pb.CreateExportRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateExportResponse:
        principal = require_principal()
        given, progress = request.input, _progress()
        format_ = given.format or "csv"

        def load() -> tuple[User, list[str], list[Contact]]:
            user = _user(principal)
            _paid(user)
            if format_ not in CONTENT_TYPES:
                raise bad_input("Format must be csv or xlsx.")
            names = [field.name for field in custom_fields.definitions(user.tenant_id)]
            matches = list(contacts.every_match(user, given.search))
            progress(10, f"Writing {len(matches)} contacts")
            return user, names, matches

        user, names, matches = await run_db_bulk(load)
        headers = [*spreadsheets.STANDARD_FIELDS, "CreatedDate", "UpdatedDate", *names]
        data, count = await run_cpu(spreadsheets.write, format_, headers, _rows(matches, names))
        name = f"contacts-{utcnow():%Y%m%d-%H%M%S}.{format_}"
        stored = await self._store_sheet(user, name, "export", data, count)
        return pb.CreateExportResponse(result=pb.ExportResult(spreadsheet=_spreadsheet(stored)))

    async def _store_sheet(
        self, user: User, name: str, kind: str, data: bytes, rows: int
    ) -> Spreadsheet:
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
        await run_storage(self._buckets.write, SPREADSHEET_BUCKET, row.storage_key, data)
        try:
            await run_db(functools.partial(row.save, force_insert=True))
        except BaseException:
            await run_storage(self._buckets.delete, SPREADSHEET_BUCKET, row.storage_key)
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

        return await run_db(listing)

    async def UpdateUserNotification(
        self, request: pb.UpdateUserNotificationRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateUserNotificationResponse:
        principal = require_principal()

        def update() -> pb.UpdateUserNotificationResponse:
            user = _user(principal)
            if request.id != str(user.uuid):
                raise bad_input("You can only change your own notification settings.")
            user.notify_import_complete = request.input.email_on_import_complete
            user.notify_export_complete = request.input.email_on_export_complete
            user.weekly_digest = request.input.weekly_digest
            user.save()
            return pb.UpdateUserNotificationResponse(settings=request.input)

        return await run_db(update)

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
                raise bad_input(f"Not users of your customer: {', '.join(unknown)}.")
            chosen = dict.fromkeys(request.input.shared_with_user_ids)
            with User._meta.database.atomic():
                # Two changes of one user's sharing run one after the other, so the last
                # one wins whole instead of the two merging (or clashing on the index).
                lock_rows(User.select(User.id).where(User.id == user.id))
                UserShare.delete().where(UserShare.owner == user).execute()
                for user_id in chosen:
                    UserShare.create(owner=user, viewer=colleagues[user_id])
            return pb.UpdateUserSharingResponse(
                sharing=pb.UserSharingInput(shared_with_user_ids=list(chosen))
            )

        return await run_db(update)

    async def StartRequest(
        self, request: pb.StartRequestRequest, context: grpc.aio.ServicerContext
    ) -> pb.StartRequestResponse:
        principal = require_principal()
        handler = self._runner.handlers.get(request.method)
        if (
            handler is None
            or request.method in NOT_ASYNC
            or not request.method.startswith("/crm.v1.Crm/")
        ):
            raise bad_input(f"{request.method} cannot run in the background.")
        request_id = await run_db(enqueue, principal, request.method, request.request)
        self._runner.start(request_id)
        return pb.StartRequestResponse(request_id=request_id)

    async def GetRequestStatus(
        self, request: pb.GetRequestStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetRequestStatusResponse:
        principal = require_principal()
        row = await run_db(
            BackgroundRequest.get_or_none,
            (BackgroundRequest.request_id == request.request_id)
            & (BackgroundRequest.user == principal.user_id),
        )
        if row is None:
            raise bad_input(f"No request {request.request_id}.")
        if row.status == "PROCESSING" and row.lease_until and row.lease_until < utcnow():
            await self._runner.recover()  # its worker died: retry it or give up on it
            row = await run_db(BackgroundRequest.get_by_id, row.id)
        status, error = request_status(row)
        return pb.GetRequestStatusResponse(status=status, method=row.method, error=error)
