"""The gateway's own log lines in a split deployment: one JSON line for each request it
refuses itself, and one for each call that failed on the way to a server (unreachable,
past its deadline, a stream broken midway) — none holding a credential or a raw path."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import requests
from c2c.v1 import contact_assets_pb2

from gateway.calls import ChannelCaller
from gateway.contract import REQUEST_ID_KEY, CallFailed, error_reason, status_code
from tests.support.close import client, two_tenants, upload_form
from tests.support.multipart import CONTENT_TYPE, streamed_form
from tests.support.processes import CrmgateProcess, Launched

HEALTH_METHOD = "/c2c.v1.ContactAssets/Health"


@pytest.fixture
def split(tmp_path: Path) -> Iterator[CrmgateProcess]:
    with CrmgateProcess.start_split(tmp_path) as process:
        yield process


def gateway_of(split: CrmgateProcess) -> Launched:
    return split.processes[1]


def gateway_lines(split: CrmgateProcess, request_id: str) -> list[dict[str, object]]:
    """The gateway process's log lines of one request, once there is one (lines are
    written by a thread, a moment after the response)."""
    deadline = time.monotonic() + 10
    while True:
        records = [
            json.loads(line) for line in list(gateway_of(split).output) if line.startswith("{")
        ]
        found = [record for record in records if record.get("request_id") == request_id]
        if found:
            return found
        assert time.monotonic() < deadline, "no matching log line"
        time.sleep(0.02)


def test_the_gateway_logs_its_own_refusals(split: CrmgateProcess) -> None:
    split.admin("tenant", "create", "acme")
    key = split.admin("apikey", "create", "--tenant", "acme", "--kind", "c2c")
    secret = uuid.uuid4().hex
    answer = requests.get(
        f"{split.http_url}/api/c2c/{secret}",
        headers={"Authorization": f"Bearer {key}", "X-Api-Version": "v1", "X-Request-Id": "r-404"},
        timeout=10,
    )
    assert answer.status_code == 404
    (line,) = gateway_lines(split, "r-404")
    assert {k: line[k] for k in ("level", "logger", "msg", "surface", "status", "reason")} == {
        "level": "info",
        "logger": "crmgate.gateway",
        "msg": "refused",
        "surface": "c2c",
        "status": "NOT_FOUND",
        "reason": "route_not_found",
    }
    assert secret not in json.dumps(line) and key not in json.dumps(line)


def test_an_unreachable_server_is_logged_by_the_gateway(split: CrmgateProcess) -> None:
    split.admin("tenant", "create", "acme")
    key = split.admin("apikey", "create", "--tenant", "acme", "--kind", "c2c")
    split.processes[0].kill()
    answer = requests.get(
        split.http_url + "/api/c2c/health",
        headers={"Authorization": f"Bearer {key}", "X-Api-Version": "v1", "X-Request-Id": "r-gone"},
        timeout=30,
    )
    assert answer.status_code == 503
    (line,) = gateway_lines(split, "r-gone")
    assert {k: line[k] for k in ("level", "logger", "msg", "method", "status", "reason")} == {
        "level": "warning",
        "logger": "crmgate.gateway",
        "msg": "upstream failed",
        "method": HEALTH_METHOD,
        "status": "UNAVAILABLE",
        "reason": "backend_unavailable",
    }
    assert key not in "".join(gateway_of(split).output)


def test_a_stream_broken_midway_is_logged_by_the_gateway(split: CrmgateProcess) -> None:
    """A download whose server dies while the bytes flow: the client's body ends short,
    and the gateway says which call broke."""
    tenants = two_tenants(split)
    api = client(split, tenants["key"])
    form = upload_form(api, "big.bin", "application/octet-stream")
    posted = requests.post(
        form["upload"]["url"],
        data=streamed_form(form["upload"]["fields"], 48, os.urandom(1024 * 1024)),
        headers={"Content-Type": CONTENT_TYPE},
        timeout=120,
    )
    assert posted.status_code == 201, posted.text
    with requests.get(
        form["download"]["url"], headers={"X-Request-Id": "r-broken"}, stream=True, timeout=60
    ) as download:
        assert download.status_code == 200
        received = len(next(download.iter_content(256 * 1024)))
        split.processes[0].kill()
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            for chunk in download.iter_content(256 * 1024):
                received += len(chunk)
    assert received < 48 * 1024 * 1024
    (line,) = gateway_lines(split, "r-broken")
    assert (line["msg"], line["method"], line["status"]) == (
        "upstream failed",
        "/files.v1.Files/DownloadFile",
        "UNAVAILABLE",
    )
    token = form["download"]["url"].split("/files/download/")[1].split("/")[0]
    assert token not in "".join(gateway_of(split).output)


def test_a_call_past_its_deadline_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    """A server that never answers (a bare gRPC peer standing in for a hung one): the
    call fails at its deadline with the gateway's own status, logged once, without the
    call's metadata."""

    async def scenario() -> CallFailed:
        never = asyncio.Event()

        async def hang(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            await never.wait()
            return b""

        server = grpc.aio.server()
        server.add_generic_rpc_handlers(
            [
                grpc.method_handlers_generic_handler(
                    "c2c.v1.ContactAssets", {"Health": grpc.unary_unary_rpc_method_handler(hang)}
                )
            ]
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        caller = ChannelCaller(f"127.0.0.1:{port}", timeout=0.5)
        try:
            await caller.call(
                HEALTH_METHOD,
                contact_assets_pb2.HealthRequest(),
                [("authorization", "Bearer c2c_secret"), (REQUEST_ID_KEY, "r-late")],
                contact_assets_pb2.HealthResponse,
            )
        except CallFailed as failure:
            return failure
        finally:
            await caller.close()
            await server.stop(None)
        raise AssertionError("the call did not fail")

    with caplog.at_level(logging.INFO, logger="crmgate.gateway"):
        failure = asyncio.run(scenario())
    assert (status_code(failure.status), error_reason(failure.status)) == (
        grpc.StatusCode.DEADLINE_EXCEEDED,
        "backend_timeout",
    )
    (record,) = [r for r in caplog.records if r.name == "crmgate.gateway"]
    assert (record.levelname, record.getMessage()) == ("WARNING", "upstream failed")
    assert record.rpc == {  # type: ignore[attr-defined]
        "method": HEALTH_METHOD,
        "status": "DEADLINE_EXCEEDED",
        "reason": "backend_timeout",
        "request_id": "r-late",
    }
