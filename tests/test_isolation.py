"""Tenant isolation: every route and every gRPC method, with every credential kind of
another tenant, on either tenant's host, aimed at one tenant's resources, must find only
denials — and never a byte of that tenant's data.

Two tenants, each bound to its own host. "alpha" owns a contact with a media asset, a
completed Close upload attached to an email activity, a voyzu contact, an export and an
async request; "beta" holds one credential of every kind. The walk is generated from the
contract's `google.api.http` rules, so a new route joins it without a line here.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import grpc
import pytest
import requests
from c2c.v1 import contact_assets_pb2 as c2c_pb
from c2c.v1 import contact_assets_pb2_grpc
from crm.v1 import crm_pb2 as crm_pb
from crm.v1 import crm_pb2_grpc
from files.v1 import files_pb2, files_pb2_grpc

from gateway.contract import FILE_DESCRIPTORS, SESSION_KEY
from gateway.routes import Route, discover_routes
from tests.support import samples
from tests.support.processes import CrmgateProcess

PASSWORD = "isolation is the point"
ALPHA, BETA = "alpha.test", "beta.test"
#: Statuses that give nothing away. 400 is voyzu's "no such record".
DENIALS = {400, 401, 402, 403, 404, 405, 410, 415, 422}


def http(
    crmgate: CrmgateProcess,
    method: str,
    path: str,
    host: str,
    headers: dict[str, str] | None = None,
    **options: Any,
) -> requests.Response:
    return requests.request(
        method,
        crmgate.http_url + path,
        headers={"Host": host, **(headers or {})},
        timeout=30,
        **options,
    )


def sign_in(crmgate: CrmgateProcess, email: str, host: str) -> requests.Response:
    return http(crmgate, "POST", "/api/auth", host, json={"Email": email, "Password": PASSWORD})


def session_of(crmgate: CrmgateProcess, email: str, host: str) -> str:
    answer = sign_in(crmgate, email, host)
    assert answer.status_code == 200, answer.text
    return answer.cookies["voyzu_session_id"]


def credentials(crmgate: CrmgateProcess, tenant: str, host: str) -> dict[str, str]:
    """One credential of every kind, as HTTP headers."""
    close_key = crmgate.admin("apikey", "create", "--tenant", tenant, "--kind", "close")
    basic = base64.b64encode(f"{close_key}:".encode()).decode()
    return {
        "c2c": crmgate.admin("apikey", "create", "--tenant", tenant, "--kind", "c2c"),
        "close": basic,
        "session": session_of(crmgate, f"user@{host}", host),
    }


def headers_for(kind: str, secret: str) -> dict[str, str]:
    return {
        "c2c": {"Authorization": f"Bearer {secret}", "X-Api-Version": "v1"},
        "close": {"Authorization": f"Basic {secret}"},
        "session": {"Cookie": f"voyzu_session_id={secret}"},
    }[kind]


@pytest.fixture(scope="module")
def world(crmgate: CrmgateProcess) -> dict[str, Any]:
    for tenant, host in (("alpha", ALPHA), ("beta", BETA)):
        crmgate.admin("tenant", "create", tenant, "--host", host)
        crmgate.admin(
            "user", "create", "--tenant", tenant, "--email", f"user@{host}",
            "--password", PASSWORD, "--plan", "paid",
        )  # fmt: skip
    contact = crmgate.admin(
        "contact", "create", "--tenant", "alpha", "--email", "secret@alpha.test"
    )
    alpha = credentials(crmgate, "alpha", ALPHA)
    beta = credentials(crmgate, "beta", BETA)
    pdf = samples.pdf()

    attached = http(
        crmgate, "POST", "/api/c2c/contacts/assets", ALPHA, headers_for("c2c", alpha["c2c"]),
        json={"email": "secret@alpha.test", "files": [{
            "filename": "alpha.pdf", "mime_type": "application/pdf",
            "content": base64.b64encode(pdf).decode(),
        }]},
    )  # fmt: skip
    assert attached.status_code == 201, attached.text
    (asset,) = attached.json()["data"]["assets"]

    close = headers_for("close", alpha["close"])
    form = http(
        crmgate, "POST", "/api/v1/files/upload/", ALPHA, close,
        json={"filename": "alpha.txt", "content_type": "text/plain"},
    ).json()  # fmt: skip
    upload_path = urlsplit(form["upload"]["url"]).path
    stored = http(
        crmgate, "POST", upload_path, ALPHA, data=form["upload"]["fields"],
        files={"file": ("alpha.txt", b"alpha's file", "text/plain")},
    )  # fmt: skip
    assert stored.status_code == 201, stored.text
    download = urlsplit(form["download"]["url"]).path
    activity = http(
        crmgate, "POST", "/api/v1/activity/email/", ALPHA, close,
        json={"contact_id": "cont_" + contact.replace("-", ""), "subject": "alpha",
              "attachments": [{"url": form["download"]["url"], "filename": "alpha.txt",
                               "size": 12, "content_type": "text/plain"}]},
    )  # fmt: skip
    assert activity.status_code == 200, activity.text

    voyzu = headers_for("session", alpha["session"])
    created = http(
        crmgate, "POST", "/api/contacts/create", ALPHA, voyzu,
        json={"Email": "hidden@alpha.test", "FirstName": "Alphonse"},
    )  # fmt: skip
    assert created.status_code == 200, created.text
    export = http(crmgate, "POST", "/api/exports/create", ALPHA, voyzu, json={"Format": "csv"})
    assert export.status_code == 200, export.text
    started = http(crmgate, "POST", "/api/contacts/search?async=true", ALPHA, voyzu, json={})
    assert started.status_code == 200, started.text
    users = http(crmgate, "POST", "/api/users/list", ALPHA, voyzu).json()["Users"]

    ids = {
        "files.v1.Files.GetEmailActivity": activity.json()["id"],
        "crm.v1.Crm.DeleteContact": created.json()["Id"],
        "crm.v1.Crm.GetContact": created.json()["Id"],
        "crm.v1.Crm.ListContactAssets": contact,
        "crm.v1.Crm.UpdateContact": created.json()["Id"],
        "crm.v1.Crm.GetSpreadsheet": export.json()["Spreadsheet"]["Id"],
        "crm.v1.Crm.UpdateUserNotification": users[0]["Id"],
        "crm.v1.Crm.GetRequestStatus": started.json()["RequestId"],
        "crm.v1.Crm.GetResourceClass": "contacts",
    }
    return {
        "alpha": alpha,
        "beta": beta,
        "ids": ids,
        "asset": asset["uuid"],
        "contact": contact,
        "pdf": pdf,
        "media": f"/media/{asset['uuid']}/{asset['name']}",
        "download": download,
        "upload": (upload_path, form["upload"]["fields"]),
        #: What must never show up in an answer to beta.
        "markers": [
            "secret@alpha.test", "hidden@alpha.test", "Alphonse", "alpha.pdf", "alpha.txt",
            "alpha's file", asset["uuid"], created.json()["Id"], contact, f"user@{ALPHA}",
        ],
    }  # fmt: skip


def route_path(route: Route, ids: dict[str, str]) -> str:
    path = route.path.template
    for variable in route.path.variables.values():
        path = path.replace("{" + variable + "}", ids[route.method.full_name])
    return path


def leaks(answer: requests.Response, markers: list[str]) -> list[str]:
    """Alpha's data in an answer, beyond what the request itself said (an error may
    quote the id it was asked for)."""
    text = answer.content.decode("utf-8", "replace")
    asked = answer.request.path_url
    return [marker for marker in markers if marker in text and marker not in asked]


def test_another_tenants_credentials_find_only_denials(
    crmgate: CrmgateProcess, world: dict[str, Any]
) -> None:
    """Beta's credentials of every kind, on alpha's host and on its own, at every route
    with alpha's ids in the path."""
    found = []
    for route in discover_routes(FILE_DESCRIPTORS):
        path = route_path(route, world["ids"])
        for kind, secret in [*world["beta"].items(), ("none", "")]:
            for host in (ALPHA, BETA):
                if kind == "session" and route.method.full_name == "crm.v1.Crm.SignOut":
                    # A session of its own: signing out must not end the one the walk uses.
                    secret = session_of(crmgate, f"user@{BETA}", BETA)
                headers = headers_for(kind, secret) if secret else {}
                body = {} if route.http_method != "GET" else None
                answer = http(crmgate, route.http_method, path, host, headers, json=body)
                public = route.method.full_name == "crm.v1.Crm.GetResourceClass"
                own_data = host == BETA and answer.status_code < 300
                if answer.status_code not in DENIALS and not public and not own_data:
                    found.append((route.http_method, path, kind, host, answer.status_code))
                leaked = leaks(answer, world["markers"])
                if leaked:
                    found.append((route.http_method, path, kind, host, leaked))
    assert found == []


def test_beta_on_alphas_host_is_refused_even_for_its_own_data(
    crmgate: CrmgateProcess, world: dict[str, Any]
) -> None:
    beta = world["beta"]
    for kind, path, method in (
        ("c2c", "/api/c2c/health", "GET"),
        ("close", "/api/v1/files/upload/", "POST"),
        ("session", "/api/users/list", "POST"),
    ):
        answer = http(crmgate, method, path, ALPHA, headers_for(kind, beta[kind]), json={})
        assert answer.status_code == 401, (kind, answer.text)
        answer = http(crmgate, method, path, BETA, headers_for(kind, beta[kind]), json={})
        assert answer.status_code != 401, (kind, answer.text)


def test_sign_in_works_only_on_the_users_tenants_hosts(
    crmgate: CrmgateProcess, world: dict[str, Any]
) -> None:
    assert sign_in(crmgate, f"user@{BETA}", ALPHA).status_code == 401
    assert sign_in(crmgate, f"user@{BETA}", BETA).status_code == 200
    assert sign_in(crmgate, f"user@{BETA}", "unbound.test").status_code == 200


def test_capability_urls_answer_only_on_the_issuing_tenants_hosts(
    crmgate: CrmgateProcess, world: dict[str, Any]
) -> None:
    for path in (world["media"], world["download"]):
        assert http(crmgate, "GET", path, ALPHA).status_code == 200
        refused = http(crmgate, "GET", path, BETA)
        assert refused.status_code == 404, refused.text
        assert leaks(refused, world["markers"]) == []


def test_an_upload_target_answers_only_on_the_issuing_tenants_hosts(
    crmgate: CrmgateProcess, world: dict[str, Any]
) -> None:
    close = headers_for("close", world["alpha"]["close"])
    form = http(
        crmgate, "POST", "/api/v1/files/upload/", ALPHA, close,
        json={"filename": "late.txt", "content_type": "text/plain"},
    ).json()  # fmt: skip
    path, fields = urlsplit(form["upload"]["url"]).path, form["upload"]["fields"]
    part = {"file": ("late.txt", b"late", "text/plain")}
    refused = http(crmgate, "POST", path, BETA, data=fields, files=part)
    assert refused.status_code == 403 and "<Code>AccessDenied</Code>" in refused.text
    assert http(crmgate, "POST", path, ALPHA, data=fields, files=part).status_code == 201


@pytest.fixture(scope="module")
def channel(crmgate: CrmgateProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(crmgate.grpc_target) as channel:
        yield channel


def test_grpc_methods_with_another_tenants_credentials_find_only_denials(
    crmgate: CrmgateProcess, world: dict[str, Any], channel: grpc.Channel
) -> None:
    """Direct gRPC callers send no host: the tenant of the credential alone decides."""
    beta = world["beta"]
    ids = world["ids"]
    c2c = contact_assets_pb2_grpc.ContactAssetsStub(channel)
    files = files_pb2_grpc.FilesStub(channel)
    crm = crm_pb2_grpc.CrmStub(channel)
    c2c_key = [("authorization", f"Bearer {beta['c2c']}")]
    close_key = [("authorization", f"Bearer {base64.b64decode(beta['close']).decode()[:-1]}")]
    session = [(SESSION_KEY, beta["session"])]
    calls = [
        (c2c.ListContactAssets, c2c_pb.ListContactAssetsRequest(contact_uuid=world["contact"]), c2c_key),
        (c2c.GetAsset, c2c_pb.GetAssetRequest(uuid=world["asset"], include_content=True), c2c_key),
        (c2c.DeleteAsset, c2c_pb.DeleteAssetRequest(uuid=world["asset"]), c2c_key),
        (files.GetEmailActivity, files_pb2.GetEmailActivityRequest(id=ids["files.v1.Files.GetEmailActivity"]), close_key),
        (crm.GetContact, crm_pb.GetContactRequest(id=ids["crm.v1.Crm.GetContact"]), session),
        (crm.ListContactAssets, crm_pb.ListContactAssetsRequest(id=world["contact"]), session),
        (crm.GetSpreadsheet, crm_pb.GetSpreadsheetRequest(id=ids["crm.v1.Crm.GetSpreadsheet"]), session),
        (crm.GetRequestStatus, crm_pb.GetRequestStatusRequest(request_id=ids["crm.v1.Crm.GetRequestStatus"]), session),
    ]  # fmt: skip
    for method, request, metadata in calls:
        with pytest.raises(grpc.RpcError) as raised:
            method(request, metadata=metadata, timeout=10)
        assert raised.value.code() in {
            grpc.StatusCode.NOT_FOUND,
            grpc.StatusCode.INVALID_ARGUMENT,
        }, (method, raised.value.code(), raised.value.details())
        details = raised.value.details() or ""
        assert not [m for m in world["markers"] if m in details and m not in str(request)]
    # voyzu deletes always succeed, whether the record exists or not (its reference says
    # so); alpha's contact must still be there afterwards (the last test checks).
    delete = crm_pb.DeleteContactRequest(id=ids["crm.v1.Crm.DeleteContact"])
    assert crm.DeleteContact(delete, metadata=session, timeout=10) == crm_pb.DeleteContactResponse()


def test_alphas_data_survived_the_walk(crmgate: CrmgateProcess, world: dict[str, Any]) -> None:
    voyzu = headers_for("session", world["alpha"]["session"])
    contact_id = world["ids"]["crm.v1.Crm.GetContact"]
    got = http(crmgate, "POST", f"/api/contacts/get/{contact_id}", ALPHA, voyzu)
    assert got.status_code == 200 and got.json()["Email"] == "hidden@alpha.test"
    listed = http(crmgate, "POST", f"/api/contacts/assets/{world['contact']}", ALPHA, voyzu)
    assert listed.status_code == 200, listed.text
    (asset,) = listed.json()["Assets"]
    assert asset["Id"] == world["asset"] and asset["Url"].endswith(world["media"])
    media = http(crmgate, "GET", world["media"], ALPHA)
    assert media.status_code == 200 and media.content == world["pdf"]
    download = http(crmgate, "GET", world["download"], ALPHA)
    assert download.status_code == 200 and download.content == b"alpha's file"
