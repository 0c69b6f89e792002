"""The OpenAPI descriptions: generated from the contract, valid, served as generated, and
describing exactly the routes the gateway serves."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from openapi_spec_validator import validate

from gateway.calls import ChannelCaller
from gateway.openapi import describe_all, dump
from gateway.surfaces import default_surfaces
from server.cli import gateway_app
from tests.support.processes import CrmgateProcess

GENERATED = Path(__file__).parents[1] / "generated" / "openapi"
SURFACES = ("c2c", "close", "voyzu")
#: The process's own routes, not any surface's: liveness and the reference itself.
PROCESS_PATHS = frozenset(
    {
        "/healthz",
        "/readyz",
        "/openapi.json",
        "/openapi/{}.json",
        "/docs",
        "/docs/assets",
        "/",  # the browser console (gateway/console)
        "/console/{}/{}",
    }
)


@pytest.fixture(scope="module")
def documents() -> dict[str, dict[str, object]]:
    return describe_all(default_surfaces())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CrmgateProcess]:
    with CrmgateProcess.start(tmp_path_factory.mktemp("crmgate")) as process:
        yield process


@pytest.mark.parametrize("name", [*SURFACES, "all"])
def test_generated_files_are_current_and_valid(
    documents: dict[str, dict[str, object]], name: str
) -> None:
    text = (GENERATED / f"{name}.json").read_text()
    assert text == dump(documents[name])
    validate(json.loads(text))


def test_surface_rules_are_in_the_descriptions(documents: dict[str, dict]) -> None:
    c2c, close, voyzu = (documents[name] for name in SURFACES)
    upload = c2c["paths"]["/api/c2c/contacts/assets"]["post"]
    assert upload["parameters"][0]["name"] == "X-Api-Version"
    assert upload["parameters"][0]["required"] is True
    assert set(upload["responses"]) >= {"201", "400", "401", "422", "500"}
    assert "200" not in upload["responses"]
    assert c2c["security"] == [{"c2cBearer": []}, {"c2cApiKey": []}]
    attach = upload["requestBody"]["content"]["application/json"]["schema"]
    assert set(attach["properties"]) == {"email", "files"}
    file_fields = c2c["components"]["schemas"]["c2c.v1.AssetUpload"]["properties"]
    assert "mime_type" in file_fields and "mimeType" not in file_fields
    assert c2c["components"]["schemas"]["c2c.Error"]["required"] == ["error", "message"]
    assert "/media/{uuid}/{name}" in c2c["paths"]

    assert close["components"]["securitySchemes"]["closeBasic"]["scheme"] == "basic"
    assert close["components"]["schemas"]["close.Error400"]["required"] == [
        "errors",
        "field-errors",
    ]
    assert {"/storage/{bucket}", "/files/download/{token}/{name}"} <= set(close["paths"])

    contact = voyzu["components"]["schemas"]["crm.v1.WebContact"]["properties"]
    assert "FirstName" in contact and "first_name" not in contact
    statuses = set(voyzu["paths"]["/api/contacts/create"]["post"]["responses"])
    # voyzu's documented statuses, plus HTTP's own 429 (throttled) and 503 (this gateway
    # is busy reading large uploads), which voyzu's list has no status for.
    assert statuses == {"200", "400", "401", "402", "404", "429", "500", "503", "540", "541"}
    assert voyzu["paths"]["/api/auth"]["post"]["security"] == []
    scheme = voyzu["components"]["securitySchemes"]["voyzuSession"]
    assert (scheme["in"], scheme["name"]) == ("cookie", "voyzu_session_id")
    # Texts come from the proto comments.
    assert voyzu["paths"]["/api/contacts/create"]["post"]["description"] == (
        "CreateContact adds a contact owned by the session user."
    )


def test_every_served_route_is_described_and_every_description_served(
    documents: dict[str, dict],
) -> None:
    served = asyncio.run(_served_routes())
    described = {
        (method.upper(), _shape(path))
        for path, item in documents["all"]["paths"].items()
        for method in item
    }
    # Close answers each of its routes with and without the trailing slash as well.
    twins = {
        (method, path.removesuffix("/") if path.endswith("/") else path + "/")
        for method, path in described
        if path.startswith("/api/v1/")
    }
    assert described <= served
    assert served - described == twins


async def _served_routes() -> set[tuple[str, str]]:
    """(method, path shape) of every route a crmgate process's app serves for a surface."""
    caller = ChannelCaller("127.0.0.1:9")  # never called: only the routes are read
    try:
        app = gateway_app(caller, dev=False)
    finally:
        await caller.close()
    served: set[tuple[str, str]] = set()
    for resource in app.router.resources():
        path = _shape(resource.canonical)
        for route in resource:
            if route.method != "HEAD" and path not in PROCESS_PATHS and path != "/{}":
                served.add((route.method, path))
    return served


def _shape(path: str) -> str:
    """A path with every variable as `{}`, in either syntax."""
    return re.sub(r"\{[^{}]*(\{[^}]*\}[^{}]*)*\}", "{}", path)


def fetch(server: CrmgateProcess, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(server.http_url + path, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_served_descriptions_are_the_generated_ones(server: CrmgateProcess) -> None:
    assert fetch(server, "/openapi.json") == (200, (GENERATED / "all.json").read_text())
    for name in SURFACES:
        assert fetch(server, f"/openapi/{name}.json") == (
            200,
            (GENERATED / f"{name}.json").read_text(),
        )
    assert fetch(server, "/openapi/nope.json")[0] == 404
    assert fetch(server, "/openapi/all.json")[0] == 404


def test_docs_page_and_its_assets_are_served_locally(server: CrmgateProcess) -> None:
    status, page = fetch(server, "/docs")
    assert status == 200
    for name in SURFACES:
        assert f'<div id="surface-{name}"></div>' in page
    assert "://" not in page  # no CDN: every link is local
    status, script = fetch(server, "/docs/assets/swagger-ui-bundle.js")
    assert status == 200 and "SwaggerUIBundle" in script
