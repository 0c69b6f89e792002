"""Servicers under grpcio-testing, on SQLite and PostgreSQL, each call as a given caller."""

from __future__ import annotations

import uuid
from pathlib import Path
from types import SimpleNamespace

import grpc
import peewee
import pytest
from c2c.v1 import contact_assets_pb2 as c2c
from crm.v1 import crm_pb2 as crm
from files.v1 import files_pb2 as files
from grpc_status import rpc_status

from gateway.contract import error_info, field_violations
from server import admin
from server.c2c.servicer import ContactAssetsService
from server.crm.background import BackgroundRunner
from server.crm.servicer import CrmService
from server.database.models import Contact, Media, Tenant
from server.files.servicer import FilesService
from server.files.storage import upload_target
from server.links import PublicLinks
from server.objects.local import LocalObjects
from server.pipeline import CallPipeline
from server.principal import Principal
from tests.support import samples
from tests.support.servicers import grpc_testing_server


def invoke(server, service, name, request):  # type: ignore[no-untyped-def]
    rpc = server.invoke_unary_unary(service.methods_by_name[name], (), request, None)
    response, trailing, code, details = rpc.termination()
    call = SimpleNamespace(
        trailing_metadata=lambda: trailing, code=lambda: code, details=lambda: details
    )
    return response, code, details, rpc_status.from_call(call)


@pytest.fixture
def acme(store: peewee.Database) -> Principal:
    tenant = admin.create_tenant("acme", [], "en")
    admin.create_contact("acme", "ada@example.com", "Ada", "Lovelace")
    user = admin.create_user("acme", "ada@acme.example", "long enough", "paid")
    return Principal(tenant.id, "acme", "en", True, "c2c", "key_test", user_id=user.id)


C2C = c2c.DESCRIPTOR.services_by_name["ContactAssets"]
FILES = files.DESCRIPTOR.services_by_name["Files"]
CRM = crm.DESCRIPTOR.services_by_name["Crm"]


def test_attach_assets(acme: Principal, tmp_path: Path) -> None:
    server = grpc_testing_server(
        C2C, ContactAssetsService(LocalObjects(tmp_path), PublicLinks(None)), acme
    )
    upload = c2c.AssetUpload(filename="a.pdf", mime_type="application/pdf", content=samples.pdf())
    response, code, _, _ = invoke(
        server,
        C2C,
        "AttachAssets",
        c2c.AttachAssetsRequest(email=" ADA@example.com", files=[upload]),
    )
    assert code == grpc.StatusCode.OK
    (asset,) = response.data.assets
    assert Media.get(Media.uuid == asset.uuid).contact.email == "ada@example.com"

    mismatch = c2c.AssetUpload(
        filename="a.pdf", mime_type="application/pdf", content=samples.image("PNG")
    )
    _, code, details, status = invoke(
        server,
        C2C,
        "AttachAssets",
        c2c.AttachAssetsRequest(email="ada@example.com", files=[mismatch]),
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(status).reason == "validation_failed"
    assert [v.field for v in field_violations(status)] == ["files.0.content"]

    _, code, details, status = invoke(
        server,
        C2C,
        "AttachAssets",
        c2c.AttachAssetsRequest(email="nobody@example.com", files=[upload]),
    )
    assert (code, error_info(status).reason, details) == (
        grpc.StatusCode.NOT_FOUND,
        "contact_not_found",
        "No contact with that email exists.",
    )


def test_create_upload_validation(acme: Principal, tmp_path: Path) -> None:
    def refuse(*args: object) -> tuple[str, dict[str, str]]:
        raise AssertionError("no form is signed for an invalid request")

    buckets = LocalObjects(tmp_path)
    service = FilesService(PublicLinks(None), refuse, buckets, upload_target(buckets))
    server = grpc_testing_server(FILES, service, acme)
    _, code, _, status = invoke(
        server, FILES, "CreateUpload", files.CreateUploadRequest(content_type="nonsense")
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert [(v.field, v.description) for v in field_violations(status)] == [
        ("filename", "This field is required."),
        ("content_type", "Enter a valid MIME type, such as image/jpeg."),
    ]


def test_crm_contacts_and_classes(acme: Principal, tmp_path: Path) -> None:
    service = CrmService(LocalObjects(tmp_path), BackgroundRunner(CallPipeline(None)))  # type: ignore[arg-type]
    server = grpc_testing_server(CRM, service, acme)
    request = crm.CreateContactRequest(
        contact=crm.WebContact(email="bob@example.com", first_name="Bob")
    )
    _response, code, _, _ = invoke(server, CRM, "CreateContact", request)
    assert code == grpc.StatusCode.OK
    assert Contact.get(Contact.email == "bob@example.com").owner_id == acme.user_id
    _, code, _details, status = invoke(server, CRM, "CreateContact", request)
    assert (code, error_info(status).reason) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "duplicate_contact",
    )
    module, code, _, _ = invoke(
        server, CRM, "GetResourceClass", crm.GetResourceClassRequest(resource="contacts")
    )
    assert code == grpc.StatusCode.OK and b"export class WebContact" in module.module.data
    _, code, _, _ = invoke(
        server, CRM, "GetResourceClass", crm.GetResourceClassRequest(resource="nope")
    )
    assert code == grpc.StatusCode.NOT_FOUND


def test_crm_failures_have_canonical_codes(acme: Principal, tmp_path: Path) -> None:
    """gRPC callers get the code that describes the failure (AIP-193); the voyzu surface
    turns code and reason into its own statuses."""
    service = CrmService(LocalObjects(tmp_path), BackgroundRunner(CallPipeline(None)))  # type: ignore[arg-type]
    server = grpc_testing_server(CRM, service, acme)
    cases = [
        (
            "GetContact",
            crm.GetContactRequest(id=str(uuid.uuid4())),
            "NOT_FOUND",
            "contact_not_found",
        ),
        ("GetContact", crm.GetContactRequest(id="nope"), "INVALID_ARGUMENT", "bad_request"),
        (
            "GetSpreadsheet",
            crm.GetSpreadsheetRequest(id=str(uuid.uuid4())),
            "NOT_FOUND",
            "spreadsheet_not_found",
        ),
        (
            "GetRequestStatus",
            crm.GetRequestStatusRequest(request_id="req_x"),
            "NOT_FOUND",
            "request_not_found",
        ),
        (
            "GetResourceClass",
            crm.GetResourceClassRequest(resource="nope"),
            "NOT_FOUND",
            "unknown_resource",
        ),
        (
            "StartRequest",
            crm.StartRequestRequest(method="/crm.v1.Crm/Authenticate"),
            "INVALID_ARGUMENT",
            "bad_request",
        ),
    ]
    for name, request, code, reason in cases:
        _, got, _, status = invoke(server, CRM, name, request)
        assert (got.name, error_info(status).reason) == (code, reason), name
    Tenant.update(plan="free").where(Tenant.id == acme.tenant_id).execute()
    _, got, _, status = invoke(server, CRM, "CreateExport", crm.CreateExportRequest())
    assert (got, error_info(status).reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "payment_required",
    )
