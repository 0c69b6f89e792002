"""C2C health end to end: a real `crmgate serve`, over REST and gRPC, on both call paths."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import grpc
import pytest
from c2c.v1 import contact_assets_pb2, contact_assets_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from gateway.contract import error_info
from tests.support.processes import CrmgateProcess


@pytest.fixture(scope="module")
def tenants(crmgate: CrmgateProcess) -> dict[str, str]:
    crmgate.admin("tenant", "create", "acme", "--host", "acme.example", "--host", "localhost")
    crmgate.admin("tenant", "create", "globex", "--host", "globex.example", "--locale", "es")
    return {
        "acme": crmgate.admin("apikey", "create", "--tenant", "acme", "--kind", "c2c"),
        "globex": crmgate.admin("apikey", "create", "--tenant", "globex", "--kind", "c2c"),
        "acme_close": crmgate.admin("apikey", "create", "--tenant", "acme", "--kind", "close"),
    }


def http(
    server: CrmgateProcess, path: str, headers: dict[str, str], method: str = "GET"
) -> tuple[int, str, dict[str, object]]:
    request = urllib.request.Request(server.http_url + path, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, content_type, raw = (
                response.status,
                response.headers["Content-Type"],
                response.read(),
            )
    except urllib.error.HTTPError as error:
        status, content_type, raw = error.code, error.headers["Content-Type"], error.read()
    assert content_type.startswith("application/json"), content_type
    return status, content_type, json.loads(raw)


def health(server: CrmgateProcess, headers: dict[str, str]) -> tuple[int, dict[str, object]]:
    status, _, body = http(server, "/api/c2c/health", headers)
    return status, body


INVALID_KEY = {"error": "invalid_api_key", "message": "Invalid or missing credentials."}


def test_health_with_bearer_and_x_api_key(crmgate: CrmgateProcess, tenants: dict[str, str]) -> None:
    ok = (200, {"data": {"status": "ok"}})
    assert (
        health(crmgate, {"X-Api-Version": "v1", "Authorization": f"Bearer {tenants['acme']}"}) == ok
    )
    assert health(crmgate, {"X-Api-Version": "V1", "X-Api-Key": tenants["acme"]}) == ok
    assert (
        health(
            crmgate,
            {
                "X-Api-Version": "v1",
                "Authorization": f"bearer {tenants['acme']}",
                "X-Api-Key": tenants["acme"],
            },
        )
        == ok
    )


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (
            {},
            (
                400,
                {
                    "error": "missing_api_version",
                    "message": "The X-Api-Version header is required.",
                },
            ),
        ),
        (
            {"X-Api-Version": ""},
            (
                400,
                {
                    "error": "missing_api_version",
                    "message": "The X-Api-Version header is required.",
                },
            ),
        ),
        (
            {"X-Api-Version": "  "},
            (
                400,
                {
                    "error": "missing_api_version",
                    "message": "The X-Api-Version header is required.",
                },
            ),
        ),
        (
            {"X-Api-Version": "v2"},
            (
                400,
                {
                    "error": "unsupported_api_version",
                    "message": "API version 'v2' is not supported; use v1.",
                },
            ),
        ),
        (
            {"X-Api-Version": "1"},
            (
                400,
                {
                    "error": "unsupported_api_version",
                    "message": "API version '1' is not supported; use v1.",
                },
            ),
        ),
    ],
)
def test_api_version_rules(
    crmgate: CrmgateProcess,
    tenants: dict[str, str],
    headers: dict[str, str],
    expected: tuple[int, dict[str, object]],
) -> None:
    assert health(crmgate, {**headers, "X-Api-Key": tenants["acme"]}) == expected


@pytest.mark.parametrize(
    "credentials",
    [
        {},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer c2c_not-a-real-key"},
        {"X-Api-Key": "not_c2c_prefixed"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ],
)
def test_missing_or_invalid_keys(
    crmgate: CrmgateProcess, tenants: dict[str, str], credentials: dict[str, str]
) -> None:
    assert health(crmgate, {"X-Api-Version": "v1", **credentials}) == (401, INVALID_KEY)


def test_wrong_kind_and_conflicting_keys(crmgate: CrmgateProcess, tenants: dict[str, str]) -> None:
    assert health(crmgate, {"X-Api-Version": "v1", "X-Api-Key": tenants["acme_close"]}) == (
        401,
        INVALID_KEY,
    )
    two = {"Authorization": f"Bearer {tenants['acme']}", "X-Api-Key": tenants["globex"]}
    assert health(crmgate, {"X-Api-Version": "v1", **two}) == (401, INVALID_KEY)


def test_keys_only_work_on_their_tenants_hosts(
    crmgate: CrmgateProcess, tenants: dict[str, str]
) -> None:
    acme, globex = tenants["acme"], tenants["globex"]

    def on(host: str, key: str) -> int:
        return health(crmgate, {"X-Api-Version": "v1", "X-Api-Key": key, "Host": host})[0]

    assert on("acme.example", acme) == 200
    assert on("ACME.example:8443", acme) == 200
    assert on("globex.example", acme) == 401
    assert on("globex.example", globex) == 200
    assert on("acme.example", globex) == 401
    assert on("unbound.example", globex) == 200


def test_revoked_key_stops_working(crmgate: CrmgateProcess) -> None:
    crmgate.admin("tenant", "create", "initech")
    key = crmgate.admin(
        "apikey", "create", "--tenant", "initech", "--kind", "c2c", "--label", "temp"
    )
    headers = {"X-Api-Version": "v1", "X-Api-Key": key}
    assert health(crmgate, headers)[0] == 200
    listing = crmgate.admin("apikey", "list", "--tenant", "initech")
    key_id, kind, state, label = listing.split("\t")
    assert (kind, state, label) == ("c2c", "active", "temp")
    assert key not in listing
    crmgate.admin("apikey", "revoke", key_id)
    # Verified keys are cached for up to two seconds per process: poll with a deadline.
    deadline = time.monotonic() + 10
    while health(crmgate, headers)[0] == 200:
        assert time.monotonic() < deadline, "revoked key still accepted"
        time.sleep(0.1)
    assert health(crmgate, headers) == (401, INVALID_KEY)
    assert "revoked" in crmgate.admin("apikey", "list", "--tenant", "initech")


def test_unknown_routes_and_verbs_get_json(
    crmgate: CrmgateProcess, tenants: dict[str, str]
) -> None:
    headers = {"X-Api-Version": "v1", "X-Api-Key": tenants["acme"]}
    assert http(crmgate, "/api/c2c/nothing", headers)[::2] == (
        404,
        {"error": "not_found", "message": "No route for /api/c2c/nothing"},
    )
    assert http(crmgate, "/api/c2c/health", headers, method="DELETE")[::2] == (
        405,
        {"error": "method_not_allowed", "message": "DELETE is not allowed on /api/c2c/health"},
    )
    assert http(crmgate, "/favicon.ico", {})[::2] == (
        404,
        {"error": "route_not_found", "message": "No route for /favicon.ico"},
    )


def test_one_log_line_per_call_without_secrets(
    crmgate: CrmgateProcess, tenants: dict[str, str]
) -> None:
    request_id = "req-" + tenants["acme"][-6:]
    health(
        crmgate, {"X-Api-Version": "v1", "X-Api-Key": tenants["acme"], "X-Request-Id": request_id}
    )
    record = crmgate.log_record(request_id)
    assert {k: record[k] for k in ("method", "status", "tenant")} == {
        "method": "/c2c.v1.ContactAssets/Health",
        "status": "OK",
        "tenant": "acme",
    }
    assert isinstance(record["duration_ms"], float)
    everything = "".join(crmgate.output)
    assert all(key not in everything for key in tenants.values())


def test_liveness_and_readiness(crmgate: CrmgateProcess) -> None:
    assert http(crmgate, "/healthz", {})[::2] == (200, {"status": "ok"})
    assert http(crmgate, "/readyz", {})[::2] == (
        200,
        {"status": "ready", "checks": {"database": "ok", "storage": "ok"}},
    )


@pytest.fixture
def channel(crmgate: CrmgateProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(crmgate.grpc_target) as channel:
        yield channel


def test_grpc_health_and_reflection(channel: grpc.Channel) -> None:
    health_stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", "c2c.v1.ContactAssets", "files.v1.Files", "crm.v1.Crm"):
        reply = health_stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    (reply,) = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
    )
    names = {s.name for s in reply.list_services_response.service}
    assert {"c2c.v1.ContactAssets", "files.v1.Files", "crm.v1.Crm"} <= names


@pytest.mark.parametrize("method", ["/c2c.v1.ContactAssets/NoSuchMethod", "/no.Such/Service"])
def test_grpc_unknown_methods_are_unimplemented(channel: grpc.Channel, method: str) -> None:
    """Methods are found in one table (server.grpc_server.MethodTable): one it does not
    hold is gRPC's UNIMPLEMENTED, for a known service or not."""
    with pytest.raises(grpc.RpcError) as caught:
        channel.unary_unary(method)(b"", timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_grpc_callers_use_the_same_keys(channel: grpc.Channel, tenants: dict[str, str]) -> None:
    stub = contact_assets_pb2_grpc.ContactAssetsStub(channel)
    reply = stub.Health(
        contact_assets_pb2.HealthRequest(),
        metadata=[("authorization", f"Bearer {tenants['acme']}")],
        timeout=5,
    )
    assert reply.data.status == "ok"
    with pytest.raises(grpc.RpcError) as caught:
        stub.Health(contact_assets_pb2.HealthRequest(), timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    status = rpc_status.from_call(caught.value)
    assert status is not None and error_info(status).reason == "invalid_api_key"
