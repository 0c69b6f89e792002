"""The voyzu CRM API end to end over real HTTP with a cookie jar, on both call paths."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import openpyxl
import peewee
import pytest
import requests
from crm.v1 import crm_pb2, crm_pb2_grpc
from google.protobuf import any_pb2

from server.database.connection import open_database
from server.database.models import BackgroundRequest, Session, Tenant, User, utcnow
from tests.support import samples
from tests.support.processes import CrmgateProcess, launched
from tests.support.voyzu import VoyzuClient

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def voyzu(crmgate: CrmgateProcess) -> dict[str, str]:
    """Two customers: acme (paid; users ada and bob) and initech (free; user ivy)."""
    crmgate.admin("tenant", "create", "acme")
    crmgate.admin("tenant", "create", "initech")
    ids = {}
    for tenant, email, plan in (
        ("acme", "ada@acme.example", "paid"),
        ("acme", "bob@acme.example", None),
        ("initech", "ivy@initech.example", "free"),
    ):
        extra = ("--plan", plan) if plan else ()
        ids[email] = crmgate.admin(
            "user", "create", "--tenant", tenant, "--email", email, "--password", PASSWORD, *extra
        )
    return ids


@pytest.fixture
def client(crmgate: CrmgateProcess, voyzu: dict[str, str]) -> Iterator[VoyzuClient]:
    client = VoyzuClient(crmgate.http_url)
    yield client
    client.close()


def signed_in(crmgate: CrmgateProcess, email: str) -> VoyzuClient:
    client = VoyzuClient(crmgate.http_url)
    client.sign_in(email, PASSWORD)
    return client


@pytest.fixture
def ada(crmgate: CrmgateProcess, voyzu: dict[str, str]) -> Iterator[VoyzuClient]:
    client = signed_in(crmgate, "ada@acme.example")
    yield client
    client.close()


def test_sign_in_sets_the_session_cookie(
    crmgate: CrmgateProcess, voyzu: dict[str, str], client: VoyzuClient
) -> None:
    status, body, response = client.request(
        "POST", "/api/auth", {"Email": "ADA@acme.example ", "Password": PASSWORD}
    )
    assert status == 200 and set(body) == {"SessionId", "UserId", "ExpiresDate"}
    assert body["UserId"] == voyzu["ada@acme.example"]
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"voyzu_session_id={body['SessionId']};")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP on localhost
    assert client.cookie("voyzu_session_id") == body["SessionId"]
    remote = requests.post(
        crmgate.http_url + "/api/auth",
        json={"Email": "ada@acme.example", "Password": PASSWORD},
        headers={"Host": "crm.example.com"},
        timeout=10,
    )
    assert "Secure" in remote.headers["Set-Cookie"]


@pytest.mark.parametrize(
    "credentials",
    [
        {"Email": "ada@acme.example", "Password": "wrong"},
        {"Email": "nobody@acme.example", "Password": PASSWORD},
        {"Email": "ada@acme.example"},
    ],
)
def test_bad_credentials(client: VoyzuClient, credentials: dict[str, str]) -> None:
    assert client.post("/api/auth", credentials) == (
        401,
        {"ErrorMessage": "Invalid email or password."},
    )


ENDPOINTS = [
    "/api/contacts/search",
    "/api/contacts/create",
    "/api/contacts/get/x",
    "/api/contacts/update/x",
    "/api/contacts/delete/x",
    "/api/contacts/assets/x",
    "/api/custom-fields/update",
    "/api/spreadsheets/list",
    "/api/imports/create",
    "/api/exports/create",
    "/api/users/list",
    "/api/users/update-notification/x",
    "/api/users/update-sharing",
    "/api/request/get/x",
    "/api/request-status/get/x",
    "/api/spreadsheets/get/x",
    "/api/auth/sign-out",
]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_every_endpoint_needs_a_session(client: VoyzuClient, path: str) -> None:
    assert client.post(path, {}) == (401, {"ErrorMessage": "Invalid or missing credentials."})
    assert client.post(path, {}, headers={"Cookie": "voyzu_session_id=forged"})[0] == 401
    assert client.post(path + "?voyzu-session-id=forged", {})[0] == 401


def test_expired_and_deleted_users_sessions_die(
    crmgate: CrmgateProcess, voyzu: dict[str, str], server_db: peewee.Database
) -> None:
    crmgate.admin(
        "user", "create", "--tenant", "acme", "--email", "tmp@acme.example", "--password", PASSWORD
    )
    first, second = signed_in(crmgate, "tmp@acme.example"), signed_in(crmgate, "tmp@acme.example")
    assert first.post("/api/users/list")[0] == 200
    token = first.cookie("voyzu_session_id")
    from server.api_keys import hash_secret

    Session.update(expires_at=utcnow() - timedelta(seconds=1)).where(
        Session.token_hash == hash_secret(token)
    ).execute()
    assert first.post("/api/users/list")[0] == 401
    assert second.post("/api/users/list")[0] == 200
    signed_in(crmgate, "tmp@acme.example").close()  # a sign-in sweeps expired sessions
    assert not Session.select().where(Session.token_hash == hash_secret(token)).exists()
    crmgate.admin("user", "delete", "--email", "tmp@acme.example")
    assert second.post("/api/users/list")[0] == 401
    first.close()
    second.close()


def new_contact(client: VoyzuClient, email: str, **fields: object) -> dict:
    status, body = client.post("/api/contacts/create", {"Email": email, **fields})
    assert status == 200, body
    return body


def test_contact_lifecycle(ada: VoyzuClient) -> None:
    created = new_contact(
        ada,
        "carol@example.com",
        FirstName="Carol",
        LastName="Danvers",
        Phone="+1 555",
        Company="Marvel",
    )
    assert re.fullmatch(r"[0-9a-f-]{36}", created["Id"])
    assert {
        k: created[k]
        for k in ("FirstName", "LastName", "Email", "Phone", "Company", "CustomFields")
    } == {
        "FirstName": "Carol",
        "LastName": "Danvers",
        "Email": "carol@example.com",
        "Phone": "+1 555",
        "Company": "Marvel",
        "CustomFields": {},
    }
    assert ada.post(f"/api/contacts/get/{created['Id']}") == (200, created)
    assert ada.post(
        f"/api/contacts/update/{created['Id']}",
        {"Email": "carol@marvel.example", "FirstName": "Captain"},
    ) == (200, {})
    _status, body = ada.post(f"/api/contacts/get/{created['Id']}")
    assert (body["FirstName"], body["Email"], body["Company"]) == (
        "Captain",
        "carol@marvel.example",
        "",
    )
    assert body["UpdatedDate"] >= body["CreatedDate"]
    missing = "00000000-0000-0000-0000-000000000000"
    assert ada.post(f"/api/contacts/update/{missing}", {"Email": "x@example.com"}) == (
        400,
        {"ErrorMessage": f"No contact {missing}."},
    )
    assert ada.post("/api/contacts/update/not-a-uuid", {"Email": "x@example.com"})[0] == 400
    assert ada.post(f"/api/contacts/update/{created['Id']}", {"Email": "nope"}) == (
        400,
        {"ErrorMessage": "Email is not a valid email address."},
    )
    assert ada.post("/api/contacts/create", {"FirstName": "NoEmail"}) == (
        400,
        {"ErrorMessage": "Email is required."},
    )
    assert ada.post("/api/contacts/create", {"Email": 5})[0] == 400
    assert ada.post(f"/api/contacts/delete/{created['Id']}") == (200, {})
    assert ada.post(f"/api/contacts/delete/{created['Id']}") == (200, {})
    assert ada.post(f"/api/contacts/delete/{missing}") == (200, {})
    assert ada.post("/api/contacts/delete/garbage") == (200, {})
    assert ada.post(f"/api/contacts/get/{created['Id']}")[0] == 400


def test_duplicate_email_is_a_domain_error(ada: VoyzuClient) -> None:
    new_contact(ada, "dup@example.com")
    assert ada.post("/api/contacts/create", {"Email": "DUP@example.com"}) == (
        540,
        {"ErrorMessage": "A contact with this email already exists for this customer."},
    )


def test_search_paging_and_sorting(ada: VoyzuClient) -> None:
    for index in range(5):
        new_contact(
            ada, f"page{index}@paging.example", FirstName=f"Pager{index}", Company="Paging Corp"
        )
    status, body = ada.post(
        "/api/contacts/search",
        {
            "SearchText": "paging corp",
            "Page": 2,
            "PageSize": 2,
            "SortBy": "FirstName",
            "SortDescending": True,
        },
    )
    assert status == 200
    assert (body["TotalCount"], body["Page"], body["PageSize"]) == (5, 2, 2)
    assert [row["FirstName"] for row in body["Rows"]] == ["Pager2", "Pager1"]
    assert ada.post("/api/contacts/search", {"SearchText": "PAGE3@"})[1]["TotalCount"] == 1
    assert ada.post("/api/contacts/search", {"SortBy": "Password"}) == (
        400,
        {
            "ErrorMessage": "SortBy must be one of FirstName, LastName, Email, Company, Phone, CreatedDate, UpdatedDate."
        },
    )
    assert ada.post("/api/contacts/search", {"PageSize": 501})[0] == 400


def test_custom_fields(ada: VoyzuClient) -> None:
    status, body = ada.post(
        "/api/custom-fields/update",
        {
            "Fields": [
                {"Name": "Tier", "Type": "select", "Options": ["gold", "silver"]},
                {"Name": "Score", "Type": "number"},
                {"Name": "Renewal", "Type": "date"},
            ]
        },
    )
    assert status == 200
    assert {f["Name"]: f["Type"] for f in body["Fields"]} == {
        "Renewal": "date",
        "Score": "number",
        "Tier": "select",
    }
    contact = new_contact(ada, "tiered@example.com", CustomFields={"tier": "gold", "Score": "12.5"})
    assert contact["CustomFields"] == {"Tier": "gold", "Score": "12.5"}
    assert (
        ada.post("/api/contacts/search", {"SearchText": "gold"})[1]["Rows"][0]["Id"]
        == contact["Id"]
    )
    for bad, message in (
        ({"Tier": "bronze"}, "CustomFields.Tier must be one of gold, silver."),
        ({"Score": "lots"}, "CustomFields.Score must be a finite JSON number such as -12.5e3."),
        ({"Renewal": "31/12/2026"}, "CustomFields.Renewal must be a date as YYYY-MM-DD."),
        ({"Nope": "x"}, "CustomFields.Nope is not a custom field of this customer."),
    ):
        assert ada.post(
            "/api/contacts/create", {"Email": "bad@example.com", "CustomFields": bad}
        ) == (400, {"ErrorMessage": message})
    assert (
        ada.post("/api/custom-fields/update", {"Fields": [{"Name": "Tier", "Type": "select"}]})[0]
        == 400
    )
    assert (
        ada.post("/api/custom-fields/update", {"Fields": [{"Name": "X", "Type": "colour"}]})[0]
        == 400
    )


def test_customers_are_isolated(crmgate: CrmgateProcess, ada: VoyzuClient) -> None:
    secret = new_contact(ada, "secret@acme.example", Company="Acme Secret")
    ivy = signed_in(crmgate, "ivy@initech.example")
    assert ivy.post(f"/api/contacts/get/{secret['Id']}") == (
        400,
        {"ErrorMessage": f"No contact {secret['Id']}."},
    )
    assert ivy.post(f"/api/contacts/update/{secret['Id']}", {"Email": "x@y.example"})[0] == 400
    assert ivy.post("/api/contacts/search", {"SearchText": "secret"})[1]["TotalCount"] == 0
    assert ivy.post(f"/api/contacts/delete/{secret['Id']}")[0] == 200
    assert ada.post(f"/api/contacts/get/{secret['Id']}")[0] == 200  # untouched
    assert [u["Email"] for u in ivy.post("/api/users/list")[1]["Users"]] == ["ivy@initech.example"]
    ivy.close()


def test_sharing_between_users(
    crmgate: CrmgateProcess, voyzu: dict[str, str], ada: VoyzuClient
) -> None:
    bob = signed_in(crmgate, "bob@acme.example")
    mine = new_contact(ada, "shared@acme.example", Company="Sharing Inc")
    assert bob.post("/api/contacts/search", {"SearchText": "sharing inc"})[1]["TotalCount"] == 0
    assert bob.post(f"/api/contacts/get/{mine['Id']}")[0] == 400
    bob_id = voyzu["bob@acme.example"]
    assert ada.post("/api/users/update-sharing", {"SharedWithUserIds": [bob_id]}) == (
        200,
        {"SharedWithUserIds": [bob_id]},
    )
    assert bob.post("/api/contacts/search", {"SearchText": "sharing inc"})[1]["TotalCount"] == 1
    assert bob.post(f"/api/contacts/get/{mine['Id']}")[0] == 200
    assert ada.post("/api/users/update-sharing", {"SharedWithUserIds": []}) == (
        200,
        {"SharedWithUserIds": []},
    )
    assert bob.post("/api/contacts/search", {"SearchText": "sharing inc"})[1]["TotalCount"] == 0
    ivy_id = voyzu["ivy@initech.example"]
    assert ada.post("/api/users/update-sharing", {"SharedWithUserIds": [ivy_id]}) == (
        400,
        {"ErrorMessage": f"Not users of your customer: {ivy_id}."},
    )
    bob.close()


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8"/></svg>'


def test_contact_assets_through_a_session(
    crmgate: CrmgateProcess, voyzu: dict[str, str], ada: VoyzuClient
) -> None:
    """A contact's C2C assets, listed for a user who may see the contact (newest first),
    linked by media URLs that serve them sandboxed; nobody else gets them."""
    mine = new_contact(ada, "assets@acme.example", FirstName="Asset")
    assert ada.post(f"/api/contacts/assets/{mine['Id']}") == (200, {"Assets": []})
    key = crmgate.admin("apikey", "create", "--tenant", "acme", "--kind", "c2c")
    for name, kind, content in (
        ("photo.png", "image/png", samples.image("PNG")),
        ("logo.svg", "image/svg+xml", SVG),
    ):
        attached = requests.post(
            crmgate.http_url + "/api/c2c/contacts/assets",
            headers={"Authorization": f"Bearer {key}", "X-Api-Version": "v1"},
            json={"email": "assets@acme.example", "files": [{
                "filename": name, "mime_type": kind, "alt": f"alt of {name}",
                "content": base64.b64encode(content).decode(),
            }]},
            timeout=30,
        )  # fmt: skip
        assert attached.status_code == 201, attached.text
    status, listed = ada.post(f"/api/contacts/assets/{mine['Id'].upper()}")
    assert status == 200, listed
    svg, photo = listed["Assets"]
    assert (svg["Name"], svg["MimeType"], svg["Type"], svg["Size"], svg["Alt"]) == (
        "logo.svg", "image/svg+xml", "image", len(SVG), "alt of logo.svg",
    )  # fmt: skip
    assert (photo["Name"], photo["MimeType"]) == ("photo.webp", "image/webp")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", svg["CreatedDate"])
    served = requests.get(svg["Url"], timeout=30)
    assert svg["Url"].startswith(crmgate.http_url + "/media/") and served.content == SVG
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    assert served.headers["Content-Security-Policy"].endswith("; sandbox")
    assert served.headers["Content-Disposition"] == "attachment"
    bob = signed_in(crmgate, "bob@acme.example")  # not shared with: the contact is unseen
    assert bob.post(f"/api/contacts/assets/{mine['Id']}") == (
        400,
        {"ErrorMessage": f"No contact {mine['Id']}."},
    )
    bob.close()
    ivy = signed_in(crmgate, "ivy@initech.example")
    assert ivy.post(f"/api/contacts/assets/{mine['Id']}")[0] == 400
    ivy.close()
    assert ada.post("/api/contacts/assets/not-an-id")[0] == 400


def test_notification_settings(voyzu: dict[str, str], ada: VoyzuClient) -> None:
    settings = {"EmailOnImportComplete": True, "EmailOnExportComplete": False, "WeeklyDigest": True}
    assert ada.post(f"/api/users/update-notification/{voyzu['ada@acme.example']}", settings) == (
        200,
        settings,
    )
    assert ada.post(f"/api/users/update-notification/{voyzu['bob@acme.example']}", settings) == (
        400,
        {"ErrorMessage": "You can only change your own notification settings."},
    )


def csv_bytes() -> bytes:
    return (
        "First Name;E-mail;Company;Favourite colour\n"
        "Imp;imp1@import.example;Imports Ltd;red\n"
        "Bad;not-an-email;Imports Ltd;blue\n"
        "NoMail;;Imports Ltd;green\n"
    ).encode("utf-8-sig")


def xlsx_bytes() -> bytes:
    book = openpyxl.Workbook()
    for row in (["Name", "Mail"], ["Xl", "xl@import.example"], ["Xl2", "xl2@import.example"]):
        book.active.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_imports_exports_and_spreadsheets(ada: VoyzuClient) -> None:
    status, body = ada.post(
        "/api/imports/create",
        {"FileName": "people.csv", "Content": base64.b64encode(csv_bytes()).decode()},
    )
    assert status == 200, body
    assert (body["ImportedCount"], body["IgnoredColumns"]) == (1, ["Favourite colour"])
    assert body["Errors"] == [
        {"Row": 3, "Message": "Email is not a valid email address."},
        {"Row": 4, "Message": "Email is required."},
    ]
    status, body = ada.post(
        "/api/imports/create",
        {
            "FileName": "people.xlsx",
            "Content": base64.b64encode(xlsx_bytes()).decode(),
            "Mapping": {"Name": "FirstName", "Mail": "Email"},
        },
    )
    assert (status, body["ImportedCount"], body["Errors"]) == (200, 2, [])
    assert ada.post("/api/contacts/search", {"SearchText": "import.example"})[1]["TotalCount"] == 3
    assert ada.post("/api/imports/create", {"FileName": "x.txt", "Content": "aGk="}) == (
        400,
        {"ErrorMessage": "FileName must end in .csv or .xlsx."},
    )
    assert ada.post("/api/imports/create", {"FileName": "x.xlsx", "Content": "aGk="}) == (
        400,
        {"ErrorMessage": "The file is not a readable XLSX workbook."},
    )

    new_contact(ada, "formula@import.example", FirstName='=HYPERLINK("http://evil")')
    status, body = ada.post(
        "/api/exports/create", {"Search": {"SearchText": "import.example"}, "Format": "csv"}
    )
    assert status == 200
    exported = body["Spreadsheet"]
    assert (exported["Format"], exported["Kind"], exported["RowCount"]) == ("csv", "export", 4)
    status, content = ada.post(f"/api/spreadsheets/get/{exported['Id']}")
    lines = content.decode().splitlines()
    assert lines[0].startswith(
        '"FirstName","LastName","Email","Phone","Company","CreatedDate","UpdatedDate"'
    )
    assert any(line.startswith("\"'=HYPERLINK") for line in lines)
    status, body = ada.post("/api/exports/create", {"Format": "xlsx"})
    sheet = openpyxl.load_workbook(
        io.BytesIO(ada.post(f"/api/spreadsheets/get/{body['Spreadsheet']['Id']}")[1])
    ).active
    assert sheet["A1"].value == "FirstName" and sheet.max_row == body["Spreadsheet"]["RowCount"] + 1
    listed = ada.post("/api/spreadsheets/list")[1]["Spreadsheets"]
    assert [s["Name"] for s in listed[:4]] == [
        body["Spreadsheet"]["Name"],
        exported["Name"],
        "people.xlsx",
        "people.csv",
    ]
    assert ada.post("/api/exports/create", {"Format": "pdf"}) == (
        400,
        {"ErrorMessage": "Format must be csv or xlsx."},
    )


def test_free_plans_get_402(crmgate: CrmgateProcess) -> None:
    ivy = signed_in(crmgate, "ivy@initech.example")
    paid_only = (402, {"ErrorMessage": "Imports and exports need a paid voyzu subscription."})
    assert (
        ivy.post(
            "/api/imports/create",
            {"FileName": "a.csv", "Content": base64.b64encode(csv_bytes()).decode()},
        )
        == paid_only
    )
    assert ivy.post("/api/exports/create", {}) == paid_only
    assert ivy.post("/api/spreadsheets/list") == (200, {"Spreadsheets": []})
    ivy.close()


def test_async_requests(crmgate: CrmgateProcess, ada: VoyzuClient) -> None:
    content = base64.b64encode(csv_bytes().replace(b"imp1@", b"async1@")).decode()
    status, started = ada.post(
        "/api/imports/create?async=true", {"FileName": "async.csv", "Content": content}
    )
    assert status == 200 and set(started) == {"RequestId"}
    done = ada.wait_for(started["RequestId"])
    assert (done["ProcessStatus"], done["PercentComplete"], done["Commentary"]) == (
        "PROCESSED",
        100,
        "Done",
    )
    assert set(done) == {
        "RequestId",
        "Commentary",
        "PercentComplete",
        "ProcessStatus",
        "CreatedDate",
        "UpdatedDate",
        "Result",
    }
    assert (
        done["Result"]["ImportedCount"] == 1
        and done["Result"]["Spreadsheet"]["Name"] == "async.csv"
    )
    # Result is exactly what the synchronous call returns.
    search = {"SearchText": "async1@"}
    status, started = ada.post("/api/contacts/search?async=true", search)
    assert (
        ada.wait_for(started["RequestId"])["Result"] == ada.post("/api/contacts/search", search)[1]
    )
    assert (
        ada.post("/api/request-status/get/" + started["RequestId"])[1]["ProcessStatus"]
        == "PROCESSED"
    )
    # A failure reports what the synchronous call would have answered.
    status, started = ada.post(
        "/api/contacts/update/not-an-id?async=true", {"Email": "a@b.example"}
    )
    failed = ada.wait_for(started["RequestId"])
    assert (failed["ProcessStatus"], failed["StatusCode"], failed["ErrorMessage"]) == (
        "FAILED",
        400,
        "'not-an-id' is not a contact id.",
    )
    ivy = signed_in(crmgate, "ivy@initech.example")
    status, started = ivy.post("/api/exports/create?async=true", {})
    assert ivy.wait_for(started["RequestId"])["StatusCode"] == 402
    # Only the user who made a request can read it.
    bob = signed_in(crmgate, "bob@acme.example")
    assert bob.post(f"/api/request/get/{started['RequestId']}") == (
        400,
        {"ErrorMessage": f"No request {started['RequestId']}."},
    )
    assert ada.post("/api/request/get/req_unknown") == (
        400,
        {"ErrorMessage": "No request req_unknown."},
    )
    for other in (ivy, bob):
        other.close()


def test_interrupted_requests_are_retried_or_failed(
    ada: VoyzuClient, voyzu: dict[str, str], server_db: peewee.Database
) -> None:
    request = any_pb2.Any()
    request.Pack(crm_pb2.SearchContactsRequest(input=crm_pb2.ContactsSearchInput(search_text="")))
    user = User.get(User.email == "ada@acme.example")
    expired = utcnow() - timedelta(minutes=5)
    half_done = any_pb2.Any()
    half_done.Pack(crm_pb2.CreateImportRequest(input=crm_pb2.ImportInput(file_name="a.csv")))
    BackgroundRequest.create(
        request_id="req_half_imported",
        tenant=user.tenant_id,
        user=user,
        method="/crm.v1.Crm/CreateImport",
        request=half_done.SerializeToString(),
        status="PROCESSING",
        attempts=1,
        lease_until=expired,
    )
    for request_id, attempts in (("req_crashed_once", 1), ("req_crashed_thrice", 3)):
        BackgroundRequest.create(
            request_id=request_id,
            tenant=user.tenant_id,
            user=user,
            method="/crm.v1.Crm/SearchContacts",
            request=request.SerializeToString(),
            status="PROCESSING",
            attempts=attempts,
            lease_until=expired,
        )
    retried = ada.wait_for("req_crashed_once")
    assert retried["ProcessStatus"] == "PROCESSED" and "Rows" in retried["Result"]
    assert BackgroundRequest.get(BackgroundRequest.request_id == "req_crashed_once").attempts == 2
    failed = ada.wait_for("req_crashed_thrice")
    assert (failed["ProcessStatus"], failed["StatusCode"]) == ("FAILED", 540)
    assert failed["ErrorMessage"] == "The request was interrupted 3 times and was given up."

    not_rerun = ada.wait_for("req_half_imported")
    assert (not_rerun["ProcessStatus"], not_rerun["StatusCode"]) == ("FAILED", 540)
    assert not_rerun["ErrorMessage"].startswith(
        "The request was interrupted and may have been partly applied"
    )


def test_unknown_paths_and_verbs_are_404(crmgate: CrmgateProcess, ada: VoyzuClient) -> None:
    for method, path in (
        ("GET", "/api/contacts/search"),
        ("PUT", "/api/contacts/create"),
        ("POST", "/api/contacts/nope"),
        ("POST", "/api/nothing"),
        ("POST", "/api/contacts/class"),
        ("GET", "/api/nothing/class"),
        ("DELETE", "/api/auth"),
    ):
        status, body, _ = ada.request(method, path)
        assert status == 404 and set(body) == {"ErrorMessage"}, (method, path, body)


RESOURCES = [
    "auth",
    "contacts",
    "custom-fields",
    "spreadsheets",
    "imports",
    "exports",
    "users",
    "request",
    "request-status",
]


@pytest.mark.parametrize("resource", RESOURCES)
def test_class_modules_import_in_node(
    crmgate: CrmgateProcess, resource: str, tmp_path: Path
) -> None:
    answer = requests.get(f"{crmgate.http_url}/api/{resource}/class", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "text/javascript; charset=utf-8"
    module = tmp_path / "module.mjs"
    module.write_bytes(answer.content)
    script = (
        "const m = await import(process.argv[1]);"
        "const out = {};"
        "for (const [name, cls] of Object.entries(m)) {"
        "  if (name === 'RequestPoller') { out[name] = typeof cls; continue; }"
        "  out[name] = new cls().toJSON(); }"
        "console.log(JSON.stringify(out));"
    )
    result = subprocess.run(
        ["node", "--input-type=module", "-e", script, str(module)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    classes = json.loads(result.stdout)
    expected = {
        "auth": {"AuthInput", "Auth"},
        "contacts": {
            "ContactsSearchInput",
            "ContactsDatatable",
            "WebContact",
            "ContactAsset",
            "ContactAssetList",
        },
        "request": {"RequestStatus", "RequestPoller"},
    }.get(resource)
    if expected:
        assert set(classes) == expected
    if resource == "contacts":
        assert classes["WebContact"] == {
            "Id": "",
            "FirstName": "",
            "LastName": "",
            "Email": "",
            "Phone": "",
            "Company": "",
            "CustomFields": {},
            "CreatedDate": "",
            "UpdatedDate": "",
        }
        assert classes["ContactsDatatable"] == {
            "Rows": [],
            "TotalCount": 0,
            "Page": 0,
            "PageSize": 0,
        }


def test_class_instances_round_trip_through_the_api(
    crmgate: CrmgateProcess, ada: VoyzuClient, tmp_path: Path
) -> None:
    module = tmp_path / "contacts.mjs"
    module.write_bytes(requests.get(f"{crmgate.http_url}/api/contacts/class", timeout=10).content)
    made = subprocess.run(
        [
            "node",
            "--input-type=module",
            "-e",
            "const {WebContact} = await import(process.argv[1]);"
            "const c = new WebContact({FirstName: 'Node', Email: 'node@js.example', CustomFields: {}});"
            "console.log(JSON.stringify(c));",
            str(module),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    status, created = ada.post("/api/contacts/create", json.loads(made))
    assert status == 200 and created["FirstName"] == "Node"
    status, page = ada.post("/api/contacts/search", {"SearchText": "node@js"})
    back = subprocess.run(
        [
            "node",
            "--input-type=module",
            "-e",
            "const {ContactsDatatable} = await import(process.argv[1]);"
            "const t = ContactsDatatable.fromJSON(JSON.parse(process.argv[2]));"
            "if (t.Rows[0].constructor.name !== 'WebContact') throw new Error('not a WebContact');"
            "console.log(JSON.stringify(t));",
            str(module),
            json.dumps(page),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    assert json.loads(back) == page


def test_request_poller_in_node(crmgate: CrmgateProcess, tmp_path: Path) -> None:
    module = tmp_path / "request.mjs"
    module.write_bytes(requests.get(f"{crmgate.http_url}/api/request/class", timeout=10).content)
    script = Path(__file__).parent / "js" / "request_poller_test.mjs"
    result = subprocess.run(
        ["node", str(script), str(module)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "processed": {
            "events": ["tick:PENDING", "tick:PROCESSING:50", "tick:PROCESSED", "processed:42"],
            "delays": [100, 150],
            "urls": ["/api/request/get/req_1"] * 3,
        },
        "failed": ["tick:FAILED", "fail:Boom:400"],
        "http_error": ["tick:FAILED", "fail:Invalid or missing credentials.:401"],
    }


def test_dev_server_accepts_the_session_in_the_query(tmp_path: Path) -> None:
    with CrmgateProcess.start(tmp_path, extra=("--dev",)) as server:
        server.admin("tenant", "create", "dev")
        server.admin(
            "user",
            "create",
            "--tenant",
            "dev",
            "--email",
            "dev@dev.example",
            "--password",
            PASSWORD,
        )
        session = requests.post(
            server.http_url + "/api/auth",
            json={"Email": "dev@dev.example", "Password": PASSWORD},
            timeout=10,
        ).json()["SessionId"]
        answer = requests.post(
            f"{server.http_url}/api/users/list?voyzu-session-id={session}", timeout=10
        )
        assert answer.status_code == 200
        assert answer.json() == {
            "Users": [{"Id": answer.json()["Users"][0]["Id"], "Email": "dev@dev.example"}]
        }


def test_unreachable_backend_is_541(tmp_path: Path) -> None:
    with launched(
        "gateway", "--grpc-target", "127.0.0.1:9", "--http-port", "0", expect=frozenset({"http"})
    ) as gateway:
        url = gateway.addresses["http"]
        answer = requests.post(
            url + "/api/contacts/search", json={}, cookies={"voyzu_session_id": "x"}, timeout=30
        )
        assert (answer.status_code, answer.json()) == (
            541,
            {"ErrorMessage": "The service is unavailable; please try again."},
        )
        answer = requests.post(
            url + "/api/auth", json={"Email": "a@b.c", "Password": "x"}, timeout=30
        )
        assert answer.status_code == 541


def test_internal_errors_reveal_nothing(tmp_path: Path) -> None:
    with CrmgateProcess.start(tmp_path) as server:
        server.admin("tenant", "create", "acme", "--locale", "en")
        server.admin(
            "user",
            "create",
            "--tenant",
            "acme",
            "--email",
            "a@acme.example",
            "--password",
            PASSWORD,
        )
        client = signed_in(server, "a@acme.example")
        connection = open_database(f"sqlite:///{tmp_path}/crmgate.sqlite3")
        connection.execute_sql('ALTER TABLE "custom_field" RENAME TO "custom_field_gone"')
        connection.close()
        status, body = client.post(
            "/api/custom-fields/update", {"Fields": [{"Name": "A", "Type": "text"}]}
        )
        assert (status, body) == (500, {"ErrorMessage": "Something went wrong; please try again."})
        status, body = client.post("/api/contacts/create", {"Email": "x@acme.example"})
        assert (status, body) == (500, {"ErrorMessage": "Something went wrong; please try again."})
        # The cause is in the server log only (written by a thread, a moment later).
        server.wait_for_logs(lambda record: "no such table: custom_field" in str(record))
        client.close()


def test_plans_are_per_customer(crmgate: CrmgateProcess, server_db: peewee.Database) -> None:
    assert Tenant.get(Tenant.name == "acme").plan == "paid"
    assert Tenant.get(Tenant.name == "initech").plan == "free"
    stored = User.get(User.email == "ada@acme.example").password_hash
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


def test_google_longrunning_operations(crmgate: CrmgateProcess, ada: VoyzuClient) -> None:
    import grpc
    from google.longrunning import operations_pb2, operations_pb2_grpc

    for _ in range(2):  # two, so a listing of one has a next page
        _status, started = ada.post(
            "/api/contacts/search?async=true", {"SearchText": "nobody-matches-this"}
        )
        ada.wait_for(started["RequestId"])
    metadata = [("x-voyzu-session", ada.cookie("voyzu_session_id"))]
    with grpc.insecure_channel(crmgate.grpc_target) as channel:
        stub = operations_pb2_grpc.OperationsStub(channel)
        name = "requests/" + started["RequestId"]
        operation = stub.GetOperation(
            operations_pb2.GetOperationRequest(name=name), metadata=metadata
        )
        assert operation.done and operation.name == name
        upper = operations_pb2.GetOperationRequest(name="requests/" + started["RequestId"].upper())
        assert stub.GetOperation(upper, metadata=metadata) == operation  # ids in any case
        response = crm_pb2.SearchContactsResponse()
        assert operation.response.Unpack(response) and response.datatable.total_count == 0
        status_meta = crm_pb2.RequestStatus()
        assert operation.metadata.Unpack(status_meta) and status_meta.process_status == "PROCESSED"
        listed = stub.ListOperations(
            operations_pb2.ListOperationsRequest(page_size=1), metadata=metadata
        )
        assert len(listed.operations) == 1 and listed.next_page_token == "1"
        waited = stub.WaitOperation(
            operations_pb2.WaitOperationRequest(name=name), metadata=metadata
        )
        assert waited == operation
        with pytest.raises(grpc.RpcError) as caught:  # done already: nothing to cancel
            stub.CancelOperation(
                operations_pb2.CancelOperationRequest(name=name), metadata=metadata
            )
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        stub.DeleteOperation(operations_pb2.DeleteOperationRequest(name=name), metadata=metadata)
        with pytest.raises(grpc.RpcError) as caught:
            stub.GetOperation(operations_pb2.GetOperationRequest(name=name), metadata=metadata)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as caught:
            stub.GetOperation(operations_pb2.GetOperationRequest(name=name))
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_pending_requests_can_be_cancelled(
    crmgate: CrmgateProcess, ada: VoyzuClient, server_db: peewee.Database
) -> None:
    import grpc
    from google.longrunning import operations_pb2, operations_pb2_grpc

    request = any_pb2.Any()
    request.Pack(crm_pb2.ListUsersRequest())
    user = User.get(User.email == "ada@acme.example")
    BackgroundRequest.create(
        request_id="req_never_started",
        tenant=user.tenant_id,
        user=user,
        method="/crm.v1.Crm/ListUsers",
        request=request.SerializeToString(),
    )
    metadata = [("x-voyzu-session", ada.cookie("voyzu_session_id"))]
    with grpc.insecure_channel(crmgate.grpc_target) as channel:
        stub = operations_pb2_grpc.OperationsStub(channel)
        stub.CancelOperation(
            operations_pb2.CancelOperationRequest(name="requests/req_never_started"),
            metadata=metadata,
        )
    status = ada.wait_for("req_never_started")
    assert (status["ProcessStatus"], status["StatusCode"], status["ErrorMessage"]) == (
        "FAILED",
        540,
        "Cancelled by the caller.",
    )


def test_readme_documents_every_class() -> None:
    from server.crm.jsclasses import resource_messages, with_dependencies

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    service = crm_pb2.DESCRIPTOR.services_by_name["Crm"]
    for messages in resource_messages(service).values():
        for message in with_dependencies(messages):
            assert f"#### {message.name}\n" in readme, message.name
            for field in message.fields:
                assert f"| `{field.json_name}` |" in readme, (message.name, field.json_name)


def test_import_mapping_targets_are_checked(ada: VoyzuClient) -> None:
    content = base64.b64encode(b"Mail\nm@x.example\n").decode()
    status, body = ada.post(
        "/api/imports/create",
        {"FileName": "m.csv", "Content": content, "Mapping": {"Mail": "Emial"}},
    )
    assert status == 400
    assert body["ErrorMessage"].startswith(
        "Mapping targets must be one of Company, Email, FirstName, LastName, Phone"
    )
    assert body["ErrorMessage"].endswith("; not Emial.")


def test_logs_hold_no_passwords_or_sessions(crmgate: CrmgateProcess, ada: VoyzuClient) -> None:
    status, _ = ada.post(
        "/api/contacts/search",
        {"SearchText": "private-search"},
        headers={"X-Request-Id": "voyzu-log-check"},
    )
    assert status == 200
    assert crmgate.log_record("voyzu-log-check")["method"] == "/crm.v1.Crm/SearchContacts"
    logged = "".join(crmgate.output)
    for secret in (PASSWORD, ada.cookie("voyzu_session_id"), "private-search"):
        assert secret not in logged


def test_two_columns_for_one_field_are_refused(ada: VoyzuClient) -> None:
    content = base64.b64encode(b"Email,E-mail\na@x.example,b@x.example\n").decode()
    assert ada.post("/api/imports/create", {"FileName": "d.csv", "Content": content}) == (
        400,
        {"ErrorMessage": "Columns 'Email' and 'E-mail' both map to Email."},
    )


def test_search_matches_every_word_in_any_case(ada: VoyzuClient) -> None:
    """Each word of SearchText must match some field; case is ignored for all of Unicode
    on both backends; an overlong SearchText is bad input, not a 500."""
    new_contact(ada, "emile@search.example", FirstName="Émile", LastName="Zola")
    new_contact(ada, "ada@search.example", FirstName="Ada", LastName="Lovelace", Company="Ça Va")

    def found(text: str) -> list[str]:
        status, body = ada.post("/api/contacts/search", {"SearchText": text})
        assert status == 200, body
        return sorted(row["Email"] for row in body["Rows"])

    assert found("émile") == found("ÉMILE") == ["emile@search.example"]
    assert found("ça") == ["ada@search.example"]
    assert found("Ada Lovelace") == ["ada@search.example"]
    assert found("lovelace   search.example") == ["ada@search.example"]
    assert found("Ada Zola") == []
    assert ada.post("/api/contacts/search", {"SearchText": "x" * 60_000}) == (
        400,
        {"ErrorMessage": "SearchText must be at most 200 characters."},
    )


def test_grpc_refuses_what_it_cannot_read(crmgate: CrmgateProcess, ada: VoyzuClient) -> None:
    """Malformed requests and paging parameters are INVALID_ARGUMENT with a plain message,
    and a background request that cannot be read is refused when started, not left
    PROCESSING."""
    import grpc
    from google.longrunning import operations_pb2, operations_pb2_grpc
    from grpc_status import rpc_status

    from gateway.contract import error_reason

    metadata = [("x-voyzu-session", ada.cookie("voyzu_session_id"))]
    with grpc.insecure_channel(crmgate.grpc_target) as channel:

        def refusal(call: object) -> tuple[grpc.StatusCode, str, str]:
            with pytest.raises(grpc.RpcError) as caught:
                call()  # type: ignore[operator]
            status = rpc_status.from_call(caught.value)
            return caught.value.code(), error_reason(status), status.message

        raw = channel.unary_unary("/crm.v1.Crm/SearchContacts")
        assert refusal(lambda: raw(b"\xff\xff\xff", metadata=metadata)) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "malformed_request",
            "The request message could not be parsed.",
        )
        operations = operations_pb2_grpc.OperationsStub(channel)
        for listing, message in (
            (
                operations_pb2.ListOperationsRequest(page_token="1" * 30),
                "page_token is not one this service gave out.",
            ),
            (operations_pb2.ListOperationsRequest(page_size=-5), "page_size must not be negative."),
        ):
            assert refusal(
                lambda listing=listing: operations.ListOperations(listing, metadata=metadata)
            ) == (
                grpc.StatusCode.INVALID_ARGUMENT,
                "bad_request",
                message,
            )
        garbage = any_pb2.Any(
            type_url="type.googleapis.com/crm.v1.SearchContactsRequest", value=b"\xff\xff"
        )
        wrong_type = any_pb2.Any()
        wrong_type.Pack(crm_pb2.ListUsersRequest())
        start = crm_pb2_grpc.CrmStub(channel).StartRequest
        for packed in (garbage, wrong_type):
            request = crm_pb2.StartRequestRequest(
                method="/crm.v1.Crm/SearchContacts", request=packed
            )
            code, reason, message = refusal(
                lambda request=request: start(request, metadata=metadata)
            )
            assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "bad_request")
            assert message == "The request is not a valid request of /crm.v1.Crm/SearchContacts."


NOT_A_NUMBER = "CustomFields.Score must be a finite JSON number such as -12.5e3."
NOT_A_DATE = "CustomFields.Renewal must be a date as YYYY-MM-DD."


def test_custom_values_are_json_numbers_and_calendar_dates(ada: VoyzuClient) -> None:
    """Dates are YYYY-MM-DD calendar dates only; numbers are finite numbers as JSON and
    JavaScript's Number() read them — not whatever Python's float() and
    date.fromisoformat() take."""
    fields = [{"Name": "Score", "Type": "number"}, {"Name": "Renewal", "Type": "date"}]
    assert ada.post("/api/custom-fields/update", {"Fields": fields})[0] == 200
    refused = [
        *({"Renewal": text} for text in ("20240101", "2024-W01-1", "2024-001", "2023-02-29")),
        *(
            {"Renewal": text}
            for text in (
                "\uff12\uff10\uff12\uff14-01-01",
                "\u0662\u0660\u0662\u0664-01-01",
                "2024-1-01",
                " 2024-01-01",
            )
        ),
        *(
            {"Score": text}
            for text in ("1_000", "\u0661\u0662\u0663", "\uff11\uff12", "1e999", "-1e999", "NaN")
        ),
        *({"Score": text} for text in ("Infinity", "inf", "0x10", " 12", "12 ", "+1", ".5", "1.")),
    ]
    for bad in refused:
        message = NOT_A_DATE if "Renewal" in bad else NOT_A_NUMBER
        assert ada.post(
            "/api/contacts/create", {"Email": "typed@example.com", "CustomFields": bad}
        ) == (400, {"ErrorMessage": message}), bad
    accepted = {"Renewal": "2024-02-29", "Score": "-0.5e-3"}
    contact = new_contact(ada, "typed@example.com", CustomFields=accepted)
    assert contact["CustomFields"] == accepted
    for score in ("0", "-0", "1E+3", "1e-999", "1000", "12.25"):
        update = {"Email": "typed@example.com", "CustomFields": {"Score": score}}
        assert ada.post(f"/api/contacts/update/{contact['Id']}", update) == (200, {}), score
    # Imports check values with the same rules.
    rows = (
        "Email,Score,Renewal\nrow2@typed.example,1_000,2024-01-01\nrow3@typed.example,1,20240101\n"
    )
    status, body = ada.post(
        "/api/imports/create",
        {
            "FileName": "typed.csv",
            "Content": base64.b64encode(rows.encode()).decode(),
            "Mapping": {"Score": "custom:Score", "Renewal": "custom:Renewal"},
        },
    )
    assert (status, body["ImportedCount"], body["Errors"]) == (
        200,
        0,
        [{"Row": 2, "Message": NOT_A_NUMBER}, {"Row": 3, "Message": NOT_A_DATE}],
    )


def _masked(document: object) -> object:
    """A result with what differs between two runs of a creating call (ids, times,
    generated names) blanked."""
    if isinstance(document, dict):
        return {
            key: "…"
            if key in ("Id", "Email", "CreatedDate", "UpdatedDate", "Name")
            else _masked(value)
            for key, value in document.items()
        }
    if isinstance(document, list):
        return [_masked(item) for item in document]
    return document


def _run_of(body: object, run: str) -> object:
    """The body for one run of a call: RUN in it names the run (a new email each time)."""
    return json.loads(json.dumps(body).replace("RUN", run))


def test_every_async_result_is_the_synchronous_answer(
    crmgate: CrmgateProcess, voyzu: dict[str, str], ada: VoyzuClient
) -> None:
    """For each method the contract lets run in the background: the Result of
    `?async=true` polled to PROCESSED equals the body of the same call made directly."""
    contact = new_contact(ada, "async-equal@example.com", Company="Equal Ltd")
    csv_export = ada.post("/api/exports/create", {"Format": "csv"})[1]["Spreadsheet"]["Id"]
    xlsx_export = ada.post("/api/exports/create", {"Format": "xlsx"})[1]["Spreadsheet"]["Id"]
    ada_id, bob_id = voyzu["ada@acme.example"], voyzu["bob@acme.example"]
    bad_rows = base64.b64encode(b"Email\nnot-an-email\n").decode()
    # method → (path, body, whether a second run answers differently in ids and times)
    calls: dict[str, tuple[str, object, bool]] = {
        "SearchContacts": ("/api/contacts/search", {"SearchText": "equal ltd"}, False),
        "CreateContact": ("/api/contacts/create", {"Email": "RUN@created.example"}, True),
        "GetContact": (f"/api/contacts/get/{contact['Id']}", None, False),
        "ListContactAssets": (f"/api/contacts/assets/{contact['Id']}", None, False),
        "UpdateContact": (
            f"/api/contacts/update/{contact['Id']}",
            {"Email": "async-equal@example.com", "Company": "Equal Ltd"},
            False,
        ),
        "DeleteContact": ("/api/contacts/delete/00000000-0000-0000-0000-000000000000", None, False),
        "UpdateCustomFields": (
            "/api/custom-fields/update",
            {"Fields": [{"Name": "Score", "Type": "number"}]},
            False,
        ),
        "ListSpreadsheets": ("/api/spreadsheets/list", None, False),
        "GetSpreadsheet": (f"/api/spreadsheets/get/{csv_export}", None, False),
        "CreateImport": ("/api/imports/create", {"FileName": "e.csv", "Content": bad_rows}, True),
        "CreateExport": ("/api/exports/create", {"Search": {"SearchText": "equal"}}, True),
        "ListUsers": ("/api/users/list", None, False),
        "UpdateUserNotification": (
            f"/api/users/update-notification/{ada_id}",
            {"EmailOnImportComplete": True},
            False,
        ),
        "UpdateUserSharing": ("/api/users/update-sharing", {"SharedWithUserIds": [bob_id]}, False),
    }
    service = crm_pb2.DESCRIPTOR.services_by_name["Crm"]
    background = {
        m.name for m in service.methods if m.GetOptions().Extensions[crm_pb2.background_allowed]
    }
    assert set(calls) == background  # a new background method needs a line here
    for method, (path, body, creates) in calls.items():
        status, direct = ada.post(path, _run_of(body, "direct"))
        assert status == 200, (method, direct)
        status, started = ada.post(path + "?async=true", _run_of(body, "async"))
        assert status == 200 and set(started) == {"RequestId"}, (method, started)
        done = ada.wait_for(started["RequestId"])
        assert done["ProcessStatus"] == "PROCESSED", (method, done)
        result = done["Result"]
        if method == "GetSpreadsheet":
            assert result == direct.decode("utf-8")  # the CSV's text, not {contentType, data}
        elif creates:
            assert _masked(result) == _masked(direct), method
            assert set(result) == set(direct)
        else:
            assert result == direct, method
    created = ada.wait_for(
        ada.post("/api/contacts/create?async=true", {"Email": "a-x@e.example"})[1]["RequestId"]
    )
    assert created["Result"] == ada.post(f"/api/contacts/get/{created['Result']['Id']}")[1]
    # Binary files, which JSON cannot hold as they are, are their bytes in base64.
    status, workbook = ada.post(f"/api/spreadsheets/get/{xlsx_export}")
    started = ada.post(f"/api/spreadsheets/get/{xlsx_export}?async=true")[1]
    assert base64.b64decode(ada.wait_for(started["RequestId"])["Result"]) == workbook
    ada.post("/api/users/update-sharing", {"SharedWithUserIds": []})


def test_error_messages_name_fields_as_the_client_sent_them(ada: VoyzuClient) -> None:
    invalid = "The given data was invalid."
    assert ada.post("/api/contacts/search", {"Page": "two"}) == (
        400,
        {"ErrorMessage": f"{invalid} Page: must be an integer"},
    )
    assert ada.post("/api/custom-fields/update", {"Fields": [{"Name": 5}]}) == (
        400,
        {"ErrorMessage": f"{invalid} Fields.0.Name: must be a string"},
    )
    assert ada.post("/api/contacts/create", {"Email": "x@y.example", "CustomFields": []}) == (
        400,
        {"ErrorMessage": f"{invalid} CustomFields: must be an object"},
    )
    assert ada.post("/api/contacts/search", [1]) == (
        400,
        {"ErrorMessage": f"{invalid} body: must be an object"},
    )


def test_sharing_with_yourself_has_its_own_message(voyzu: dict[str, str], ada: VoyzuClient) -> None:
    ada_id, bob_id = voyzu["ada@acme.example"], voyzu["bob@acme.example"]
    for ids in ([ada_id], [bob_id, ada_id.upper()]):
        assert ada.post("/api/users/update-sharing", {"SharedWithUserIds": ids}) == (
            400,
            {
                "ErrorMessage": "You cannot share your contacts with yourself: you always see your own."
            },
        )


def test_ids_are_accepted_in_any_letter_case(
    crmgate: CrmgateProcess, voyzu: dict[str, str], ada: VoyzuClient
) -> None:
    contact = new_contact(ada, "casing@example.com")
    upper = contact["Id"].upper()
    assert ada.post(f"/api/contacts/get/{upper}") == (200, contact)
    assert (
        ada.post(
            f"/api/contacts/update/{upper}", {"Email": "casing@example.com", "Company": "Caps"}
        )[0]
        == 200
    )
    exported = ada.post("/api/exports/create", {"Format": "csv"})[1]["Spreadsheet"]["Id"]
    assert ada.post(f"/api/spreadsheets/get/{exported.upper()}") == ada.post(
        f"/api/spreadsheets/get/{exported}"
    )
    ada_id, bob_id = voyzu["ada@acme.example"], voyzu["bob@acme.example"]
    settings = {"EmailOnImportComplete": True, "EmailOnExportComplete": False, "WeeklyDigest": True}
    assert ada.post(f"/api/users/update-notification/{ada_id.upper()}", settings) == (200, settings)
    assert ada.post(
        "/api/users/update-sharing", {"SharedWithUserIds": [bob_id.upper(), bob_id]}
    ) == (
        200,
        {"SharedWithUserIds": [bob_id]},
    )
    ada.post("/api/users/update-sharing", {"SharedWithUserIds": []})
    request_id = ada.post("/api/contacts/search?async=true", {})[1]["RequestId"]
    ada.wait_for(request_id)
    for path in ("/api/request/get/", "/api/request-status/get/"):
        status, body = ada.post(path + request_id.upper())
        assert (status, body["RequestId"], body["ProcessStatus"]) == (200, request_id, "PROCESSED")
    assert ada.post(f"/api/contacts/delete/{upper}") == (200, {})
    assert ada.post(f"/api/contacts/get/{contact['Id']}")[0] == 400


def test_sign_out_revokes_the_session_and_clears_the_cookie(
    crmgate: CrmgateProcess, voyzu: dict[str, str]
) -> None:
    leaving, staying = (
        signed_in(crmgate, "bob@acme.example"),
        signed_in(crmgate, "bob@acme.example"),
    )
    old = leaving.cookie("voyzu_session_id")
    assert old
    status, body, response = leaving.request("POST", "/api/auth/sign-out")
    assert (status, body) == (200, {})
    assert response.headers.getall("Set-Cookie") == [
        'voyzu_session_id=""; expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; Max-Age=0; Path=/; SameSite=Lax'
    ]
    assert leaving.cookie("voyzu_session_id") is None
    stale = {"Cookie": f"voyzu_session_id={old}"}
    unauthorised = (401, {"ErrorMessage": "Invalid or missing credentials."})
    assert leaving.post("/api/users/list", headers=stale) == unauthorised
    assert leaving.post("/api/auth/sign-out", headers=stale) == unauthorised
    assert staying.post("/api/users/list")[0] == 200  # only the session signed out ends
    remote = requests.post(
        crmgate.http_url + "/api/auth/sign-out",
        cookies={"voyzu_session_id": staying.cookie("voyzu_session_id")},
        headers={"Host": "crm.example.com"},
        timeout=10,
    )
    assert remote.status_code == 200 and "Secure" in remote.headers["Set-Cookie"]
    assert staying.post("/api/users/list") == unauthorised
    # Sign-out takes and gives nothing, so the auth module gains no class.
    status, module, _ = leaving.request("GET", "/api/auth/class")
    assert re.findall(rb"export class (\w+)", module) == [b"AuthInput", b"Auth"]
    for client in (leaving, staying):
        client.close()
