"""OpenTelemetry tracing: one connected trace per request, gateway → gRPC hop → server →
database and storage, for the split deployment (a real gRPC server on a port, called
through the gateway's channel) and for `serve` (in-process calls); log lines that lead to
their trace; and nothing set up while no OTEL_* variable asks for it."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
import requests
from aiohttp import web
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, format_span_id, format_trace_id

from gateway import tracing
from gateway.calls import Caller, ChannelCaller
from gateway.protocol import GatewayRunner
from gateway.request_ids import SANE_REQUEST_ID
from server import admin
from server.cli import gateway_app
from server.config import Settings
from server.database.connection import unit_of_work
from server.runtime import Runtime
from tests.support.otlp import Collector, otlp_collector
from tests.support.processes import CrmgateProcess
from tests.support.voyzu import VoyzuClient

#: A client's own trace: the gateway continues it.
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
CLIENT_PARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    """Tracing on for the test, every span kept in memory as it ends."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.uninstall()
        provider.shutdown()


@asynccontextmanager
async def deployment(runtime: Runtime, split: bool) -> AsyncIterator[str]:
    """A gateway on a free port, calling the runtime's servicers over real gRPC (split) or
    in process (`serve`); yields its URL."""
    grpc_server = await runtime.grpc_server()
    port = grpc_server.add_insecure_port("127.0.0.1:0")
    await grpc_server.start()
    caller: Caller = ChannelCaller(f"127.0.0.1:{port}") if split else runtime.in_process_caller()
    app = gateway_app(caller, dev=False, extra_routes=runtime.health_routes())
    runner = GatewayRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, http_port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{http_port}"
    finally:
        await runner.cleanup()
        await grpc_server.stop(grace=1)
        await runtime.drain()


def start_runtime(database_url: str, tmp_path: Path) -> tuple[Runtime, admin.DemoCredentials]:
    runtime = Runtime.start(Settings(data_dir=tmp_path, database_url=database_url))
    return runtime, unit_of_work(admin.bootstrap_demo)


def one_trace(spans: list[ReadableSpan], trace_id: str) -> list[ReadableSpan]:
    """The spans of one trace, each of whose parents (but the root's) is among them."""
    found = [span for span in spans if format_trace_id(span.context.trace_id) == trace_id]
    ids = {span.context.span_id for span in found}
    roots = [span for span in found if span.parent is None or span.parent.span_id not in ids]
    assert len(roots) == 1, [span.name for span in roots]
    return found


def parent_of(span: ReadableSpan, spans: list[ReadableSpan]) -> ReadableSpan:
    assert span.parent is not None
    return next(found for found in spans if found.context.span_id == span.parent.span_id)


def ancestors(span: ReadableSpan, spans: list[ReadableSpan]) -> list[str]:
    names = []
    while span.parent is not None and any(s.context.span_id == span.parent.span_id for s in spans):
        span = parent_of(span, spans)
        names.append(span.name)
    return names


@pytest.mark.parametrize("split", [True, False], ids=["split", "serve"])
def test_one_request_is_one_trace_from_the_gateway_to_the_database(
    exported: InMemorySpanExporter, database_url: str, tmp_path: Path, split: bool
) -> None:
    runtime, demo = start_runtime(database_url, tmp_path)
    headers = {
        "Authorization": f"Bearer {demo.c2c_key}",
        "X-Api-Version": "v1",
        "traceparent": CLIENT_PARENT,
    }

    async def scenario() -> tuple[int, str]:
        async with (
            deployment(runtime, split) as url,
            aiohttp.ClientSession() as session,
            session.get(f"{url}/api/c2c/health", headers=headers) as response,
        ):
            assert await response.json() == {"data": {"status": "ok"}}
            async with session.get(f"{url}/healthz") as probe:
                assert probe.status == 200  # a probe: no trace of it
            return response.status, response.headers["X-Request-Id"]

    status, request_id = asyncio.run(scenario())
    runtime.db.close()
    assert status == 200
    assert not [span for span in exported.get_finished_spans() if "healthz" in span.name]
    spans = one_trace(list(exported.get_finished_spans()), CLIENT_TRACE)

    # The client's span is the root's parent: the gateway continued the client's trace.
    http = next(span for span in spans if format_span_id(span.parent.span_id) == CLIENT_SPAN)
    assert (http.name, http.kind) == ("GET /api/c2c/health", SpanKind.SERVER)
    assert http.attributes["crmgate.request_id"] == request_id
    assert http.attributes["http.response.status_code"] == 200

    method = "c2c.v1.ContactAssets/Health"
    served = next(span for span in spans if span.name == method and span.kind == SpanKind.SERVER)
    assert served.attributes["crmgate.request_id"] == request_id
    assert served.attributes["rpc.grpc.status_code"] == 0
    if split:
        # The hop: the gateway's CLIENT span (never current) is the server span's parent,
        # so the server learned it from the call's metadata alone.
        hop = parent_of(served, spans)
        assert (hop.name, hop.kind) == (method, SpanKind.CLIENT)
        assert parent_of(hop, spans) is http
        assert served.parent.is_remote
    else:
        assert parent_of(served, spans) is http
    statements = [span for span in spans if "db.system.name" in span.attributes]
    assert statements, [span.name for span in spans]
    expected = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    for statement in statements:
        assert statement.kind == SpanKind.CLIENT
        assert statement.attributes["db.system.name"] == expected
        assert method in ancestors(statement, spans)
    # Statements are recorded with placeholders, never their values (the key's digest).
    digest = hashlib.sha256(demo.c2c_key.encode()).hexdigest()
    assert not [span for span in spans if digest in json.dumps(dict(span.attributes))]


def test_an_upload_traces_its_storage_and_its_statements(
    exported: InMemorySpanExporter, tmp_path: Path
) -> None:
    runtime, demo = start_runtime(f"sqlite:///{tmp_path}/crmgate.sqlite3", tmp_path)
    body = {
        "email": admin.DEMO_EMAIL,
        "files": [
            {
                "filename": "notes.txt",
                "mime_type": "text/plain",
                "content": base64.b64encode(b"Hello, crmgate!\n").decode(),
            }
        ],
    }
    headers = {"Authorization": f"Bearer {demo.c2c_key}", "X-Api-Version": "v1"}

    async def scenario() -> int:
        async with (
            deployment(runtime, split=True) as url,
            aiohttp.ClientSession() as session,
            session.post(f"{url}/api/c2c/contacts/assets", json=body, headers=headers) as response,
        ):
            return response.status

    assert asyncio.run(scenario()) == 201
    runtime.db.close()
    finished = list(exported.get_finished_spans())
    http = next(span for span in finished if span.name == "POST /api/c2c/contacts/assets")
    spans = one_trace(finished, format_trace_id(http.context.trace_id))
    stored = [span for span in spans if span.name.startswith("storage ")]
    assert stored, [span.name for span in spans]
    for span in stored:
        assert span.attributes["crmgate.storage.bucket"] == "media"
        assert "c2c.v1.ContactAssets/UploadAssets" in ancestors(span, spans)
    inserts = [span for span in spans if span.name == "INSERT"]
    assert inserts and all("Hello" not in str(span.attributes["db.query.text"]) for span in inserts)


def test_log_lines_carry_the_trace_and_request_ids(
    exported: InMemorySpanExporter, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A call's line (the server's pipeline) and a refusal's line (the gateway) each name
    their request's trace and request id."""
    runtime, demo = start_runtime(f"sqlite:///{tmp_path}/crmgate.sqlite3", tmp_path)
    headers = {"Authorization": f"Bearer {demo.c2c_key}", "X-Api-Version": "v1"}

    async def scenario() -> dict[str, str]:
        ids = {}
        async with deployment(runtime, split=True) as url, aiohttp.ClientSession() as session:
            async with session.get(
                f"{url}/api/c2c/health", headers={**headers, "X-Request-Id": "client-id-1"}
            ) as response:
                assert response.status == 200
                ids["call"] = response.headers["X-Request-Id"]
            async with session.post(
                f"{url}/api/c2c/contacts/assets",
                data=b"{not json",
                headers={**headers, "Content-Type": "application/json"},
            ) as response:
                assert response.status == 422
                ids["refusal"] = response.headers["X-Request-Id"]
        return ids

    with caplog.at_level(logging.INFO):
        ids = asyncio.run(scenario())
    runtime.db.close()
    assert ids["call"] == "client-id-1"  # a sane id of the client's is kept
    spans = list(exported.get_finished_spans())
    traces = {
        span.attributes["crmgate.request_id"]: format_trace_id(span.context.trace_id)
        for span in spans
        if "crmgate.request_id" in span.attributes
    }
    lines = [record.rpc for record in caplog.records if getattr(record, "rpc", None)]
    call = next(line for line in lines if line.get("method") == "/c2c.v1.ContactAssets/Health")
    assert call["request_id"] == "client-id-1"
    assert call["trace_id"] == traces["client-id-1"]
    refusal = next(line for line in lines if line.get("surface") == "c2c")
    assert refusal["request_id"] == ids["refusal"]
    http = next(span for span in spans if span.name == "POST /api/c2c/contacts/assets")
    assert refusal["trace_id"] == format_trace_id(http.context.trace_id)


def test_every_response_carries_a_request_id_with_tracing_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A sane `X-Request-Id` of the client's is kept, any other replaced; refusals and
    answers alike carry it, and so does the call's log line (without a trace id)."""
    runtime, demo = start_runtime(f"sqlite:///{tmp_path}/crmgate.sqlite3", tmp_path)
    headers = {"Authorization": f"Bearer {demo.c2c_key}", "X-Api-Version": "v1"}
    given = ["kept-1", "has space", "x" * 129, ""]

    async def scenario() -> list[tuple[int, str]]:
        answers = []
        async with deployment(runtime, split=False) as url, aiohttp.ClientSession() as session:
            for path, request_id in zip(
                ["health", "health", "health", "nowhere"], given, strict=True
            ):
                sent = {**headers, "X-Request-Id": request_id} if request_id else headers
                async with session.get(f"{url}/api/c2c/{path}", headers=sent) as response:
                    answers.append((response.status, response.headers["X-Request-Id"]))
        return answers

    with caplog.at_level(logging.INFO):
        answers = asyncio.run(scenario())
    runtime.db.close()
    assert [status for status, _ in answers] == [200, 200, 200, 404]
    ids = [request_id for _, request_id in answers]
    assert ids[0] == "kept-1"
    assert len(set(ids)) == 4 and not set(ids) & set(given[1:])
    assert all(SANE_REQUEST_ID.fullmatch(request_id) for request_id in ids)
    lines = [record.rpc for record in caplog.records if getattr(record, "rpc", None)]
    assert [line["request_id"] for line in lines] == ids
    assert not [line for line in lines if "trace_id" in line]


LINES_SCRIPT = """
import asyncio, logging
from opentelemetry.sdk.trace import TracerProvider
from gateway import tracing
from server import executors, logs
from server.tracing import CallScope

logs.configure("INFO")
tracing.install(TracerProvider())
log = logging.getLogger("crmgate.test")
log.warning("outside any call")
with CallScope("/a.B/C", {}, "r-9") as span:
    log.warning("within the call")
    asyncio.run(executors.run_cpu(log.warning, "on a pool thread"))
    print(tracing.trace_id(span))
"""


def test_every_line_logged_within_a_call_names_its_request_and_trace() -> None:
    """Not only the call's own line: warnings and errors logged while it runs, on the
    event loop or on a pool's thread, carry its request id and trace id."""
    result = subprocess.run(
        [sys.executable, "-c", LINES_SCRIPT], capture_output=True, text=True, timeout=60, check=True
    )
    trace_id = result.stdout.strip()
    assert len(trace_id) == 32
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert [(line["msg"], line.get("request_id"), line.get("trace_id")) for line in lines] == [
        ("outside any call", None, None),
        ("within the call", "r-9", trace_id),
        ("on a pool thread", "r-9", trace_id),
    ]


OFF_SCRIPT = """
import json, sys
from opentelemetry import trace
from gateway import tracing
from server import pipeline, tracing as server_tracing
from server.cli import gateway_app
from gateway.calls import ChannelCaller
import asyncio

on = tracing.configure("crmgate-serve")

async def middlewares():
    app = gateway_app(ChannelCaller("127.0.0.1:9"), dev=False)
    return len(app.middlewares)

print(json.dumps({
    "configured": on,
    "tracer": tracing.tracer is not None,
    "sdk_imported": any(name.startswith("opentelemetry.sdk") for name in sys.modules),
    "provider": type(trace.get_tracer_provider()).__name__,
    "middlewares": asyncio.run(middlewares()),
    "call_span": type(server_tracing.call_span("/a.B/C", {})).__name__,
}))
"""


def test_without_otel_variables_nothing_is_set_up() -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    result = subprocess.run(
        [sys.executable, "-c", OFF_SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env=environment,
    )
    assert json.loads(result.stdout) == {
        "configured": False,
        "tracer": False,
        "sdk_imported": False,
        "provider": "ProxyTracerProvider",
        "middlewares": 0,
        "call_span": "nullcontext",
    }


@pytest.mark.parametrize(
    ("environment", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "crm"}, False),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_which_otel_variables_switch_tracing_on(environment: dict[str, str], on: bool) -> None:
    assert tracing.requested(environment) is on


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("OTEL_TRACES_EXPORTER", "zipkin", "unsupported zipkin"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "'grpc' is not supported"),
    ],
)
def test_settings_that_cannot_be_honoured_stop_the_start(
    tmp_path: Path, variable: str, value: str, said: str
) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    environment.update({"OTEL_TRACES_EXPORTER": "otlp", variable: value})
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", "serve", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
    )
    assert result.returncode == 2
    assert said in result.stderr


def test_real_processes_export_one_connected_trace_over_otlp(tmp_path: Path) -> None:
    """`crmgate server` and `crmgate gateway`, switched on by OTEL_* alone, export to a
    collector: the gateway's spans and the server's join in one trace, and the server's
    log line of the call names it."""
    with otlp_collector() as collector:
        environment = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
            "OTEL_BSP_SCHEDULE_DELAY": "50",  # milliseconds: export promptly
        }
        with CrmgateProcess.start_split(tmp_path, env=environment) as deployment:
            deployment.admin("tenant", "create", "acme", "--host", "127.0.0.1")
            key = deployment.admin("apikey", "create", "--tenant", "acme", "--kind", "c2c")
            answer = requests.get(
                f"{deployment.http_url}/api/c2c/health",
                headers={
                    "Authorization": f"Bearer {key}",
                    "X-Api-Version": "v1",
                    "X-Request-Id": "otlp-1",
                },
                timeout=30,
            )
            assert answer.status_code == 200
            assert answer.headers["X-Request-Id"] == "otlp-1"
            line = deployment.log_record("otlp-1")
            trace_id = bytes.fromhex(str(line["trace_id"]))
            expected = {
                ("crmgate-gateway", "GET /api/c2c/health"),
                ("crmgate-gateway", "c2c.v1.ContactAssets/Health"),
                ("crmgate-server", "c2c.v1.ContactAssets/Health"),
                ("crmgate-server", "SELECT"),
            }
            spans = wait_for_spans(
                collector,
                trace_id,
                lambda spans: expected <= {(service, span.name) for service, span in spans},
            )
    by_id = {span.span_id: (service, span) for service, span in spans}
    (http,) = [span for _, span in spans if not span.parent_span_id]
    assert http.name == "GET /api/c2c/health"
    statement = next(span for _, span in spans if span.name == "SELECT")
    chain = []
    span_id = statement.span_id
    while span_id in by_id:
        service, span = by_id[span_id]
        chain.append((service, span.name, span.kind))
        span_id = span.parent_span_id
    Kind = OtlpSpan.SpanKind
    method = "c2c.v1.ContactAssets/Health"
    assert chain[-3:] == [
        ("crmgate-server", method, Kind.SPAN_KIND_SERVER),
        ("crmgate-gateway", method, Kind.SPAN_KIND_CLIENT),
        ("crmgate-gateway", "GET /api/c2c/health", Kind.SPAN_KIND_SERVER),
    ]


def wait_for_spans(
    collector: Collector,
    trace_id: bytes,
    complete: Callable[[list[tuple[str, OtlpSpan]]], bool],
    deadline: float = 30.0,
) -> list[tuple[str, OtlpSpan]]:
    """The spans of one trace the collector has, once `complete` says they are all in."""
    limit = time.monotonic() + deadline
    while True:
        spans = [(s, span) for s, span in collector.snapshot() if span.trace_id == trace_id]
        if complete(spans):
            return spans
        assert time.monotonic() < limit, [(s, span.name) for s, span in spans]
        time.sleep(0.05)


def test_a_background_import_runs_in_its_callers_trace_down_to_its_bulk_worker(
    tmp_path: Path,
) -> None:
    """`?async=true`: the request is stored with its caller's trace; the background run
    (logged under the RequestId its caller got) and the bulk worker process's job and
    statements join that trace."""
    with otlp_collector() as collector:
        environment = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
            "OTEL_BSP_SCHEDULE_DELAY": "50",
        }
        with CrmgateProcess.start(tmp_path, env=environment) as deployment:
            deployment.admin("tenant", "create", "acme", "--host", "127.0.0.1")
            email, password = "ada@acme.example", "correct horse battery"
            deployment.admin(
                "user", "create", "--tenant", "acme", "--email", email, "--password", password,
                "--plan", "paid",
            )  # fmt: skip
            client = VoyzuClient(deployment.http_url)
            try:
                client.sign_in(email, password)
                content = base64.b64encode(b"First Name;E-mail\nImp;imp@import.example\n")
                status, started = client.post(
                    "/api/imports/create?async=true",
                    {"FileName": "a.csv", "Content": content.decode()},
                    headers={"X-Request-Id": "async-1"},
                )
                assert status == 200, started
                assert client.wait_for(started["RequestId"])["ProcessStatus"] == "PROCESSED"
            finally:
                client.close()
            caller_line = deployment.log_record("async-1")
            run_line = deployment.log_record(started["RequestId"])
            assert run_line["trace_id"] == caller_line["trace_id"]
            run_method = str(run_line["method"]).lstrip("/")
            expected = {
                ("crmgate-serve", "POST /api/imports/create"),
                ("crmgate-serve", "crm.v1.Crm/StartRequest"),
                ("crmgate-serve", run_method),
                ("crmgate-bulk-worker", "bulk import_contacts"),
                ("crmgate-bulk-worker", "INSERT"),
            }
            spans = wait_for_spans(
                collector,
                bytes.fromhex(str(caller_line["trace_id"])),
                lambda spans: expected <= {(service, span.name) for service, span in spans},
            )
    by_name = {span.name: span for _, span in spans}
    # The job's parent is the background run, whose parent is the call that started it.
    assert by_name["bulk import_contacts"].parent_span_id == by_name[run_method].span_id
    assert by_name[run_method].parent_span_id == by_name["crm.v1.Crm/StartRequest"].span_id
