"""Prometheus metrics end to end: a scripted mix of traffic against real processes
(`serve`, and `gateway` + `server --metrics-port`, on SQLite and PostgreSQL), then the
exact series each process's GET /metrics shows; bounded labels; /metrics under load; and
CRMGATE_METRICS=0."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import psutil
import pytest
import requests
from c2c.v1 import contact_assets_pb2, contact_assets_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from server.database.connection import database, open_database
from server.database.models import BackgroundRequest, Tenant, User
from tests.conftest import database_env
from tests.support.processes import CrmgateProcess

HEALTH = "/api/c2c/health"
UPLOAD = "/api/c2c/contacts/assets"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
#: Every label name a crmgate series may carry (prometheus_client's own process and GC
#: collectors add theirs): none of them can hold a raw path or a tenant.
LABEL_NAMES = {
    "surface", "method", "route", "status", "code", "statement", "pool", "limit",
    "operation", "outcome", "direction", "state", "le",
}  # fmt: skip


def scrape(url: str) -> Samples:
    answer = requests.get(url + "/metrics", timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/plain; version=")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


@dataclass
class Deployment:
    """A running deployment and where each of its processes is scraped."""

    kind: str  # serve | split
    crmgate: CrmgateProcess
    #: process kind → base URL of its /metrics
    scraped: dict[str, str]

    @property
    def http(self) -> str:
        """The process that serves HTTP (and counts its requests)."""
        return self.scraped["serve" if self.kind == "serve" else "gateway"]

    @property
    def grpc(self) -> str:
        """The process that runs the services (and counts gRPC calls and the database)."""
        return self.scraped["serve" if self.kind == "serve" else "server"]


@contextmanager
def deployment(
    kind: str, data_dir: Path, env: dict[str, str] | None = None
) -> Iterator[Deployment]:
    if kind == "serve":
        with CrmgateProcess.start(data_dir, env=env) as process:
            yield Deployment(kind, process, {"serve": process.http_url})
        return
    with CrmgateProcess.start_split(
        data_dir,
        env=env,
        server_extra=("--metrics-port", "0"),
        expect_server=frozenset({"grpc", "metrics"}),
    ) as process:
        server = process.processes[0]
        scraped = {"gateway": process.http_url, "server": server.addresses["metrics"]}
        yield Deployment(kind, process, scraped)


@pytest.fixture(
    scope="module",
    params=[("serve", "sqlite"), ("split", "sqlite"), ("serve", "postgresql"), ("split", "postgresql")],
    ids=["serve-sqlite", "split-sqlite", "serve-postgresql", "split-postgresql"],
)  # fmt: skip
def running(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    kind, backend = request.param
    with (
        database_env(request, backend) as env,
        deployment(kind, tmp_path_factory.mktemp("metrics"), env) as running,
    ):
        yield running


def new_tenant(crmgate: CrmgateProcess, *extra: str) -> tuple[str, str]:
    """A tenant of a name never seen (so labels can be searched for it) and its C2C key."""
    name = f"tenant-{uuid.uuid4().hex[:10]}"
    crmgate.admin("tenant", "create", name, *extra)
    crmgate.admin("contact", "create", "--tenant", name, "--email", "user@example.com")
    return name, crmgate.admin("apikey", "create", "--tenant", name, "--kind", "c2c")


def c2c_headers(key: str) -> dict[str, str]:
    return {"X-Api-Version": "v1", "Authorization": f"Bearer {key}"}


def get(url: str, headers: dict[str, str]) -> requests.Response:
    return requests.get(url, headers=headers, timeout=10)


def test_a_mix_of_traffic_moves_each_process_s_metrics(running: Deployment) -> None:
    crmgate = running.crmgate
    _, key = new_tenant(crmgate)
    _, tight_key = new_tenant(crmgate, "--request-limit", "1")
    before = {url: scrape(url) for url in running.scraped.values()}

    healthy = [get(crmgate.http_url + HEALTH, c2c_headers(key)) for _ in range(3)]
    bad_key = get(crmgate.http_url + HEALTH, c2c_headers("c2c_nope"))
    nowhere = get(crmgate.http_url + "/api/c2c/nowhere", c2c_headers(key))
    content = b"Hello, metrics!\n" * 64
    body = json.dumps(
        {
            "email": "user@example.com",
            "files": [
                {
                    "filename": "notes.txt",
                    "mime_type": "text/plain",
                    "content": base64.b64encode(content).decode(),
                }
            ],
        }
    ).encode()
    upload = requests.post(
        crmgate.http_url + UPLOAD,
        data=body,
        headers={**c2c_headers(key), "Content-Type": "application/json"},
        timeout=30,
    )
    throttled = [get(crmgate.http_url + HEALTH, c2c_headers(tight_key)) for _ in range(4)]
    with grpc.insecure_channel(crmgate.grpc_target) as channel:
        contact_assets_pb2_grpc.ContactAssetsStub(channel).Health(
            contact_assets_pb2.HealthRequest(), metadata=[("authorization", f"Bearer {key}")]
        )

    assert [answer.status_code for answer in healthy] == [200, 200, 200]
    assert (bad_key.status_code, nowhere.status_code, upload.status_code) == (401, 404, 201)
    statuses = [answer.status_code for answer in throttled]
    refusals = statuses.count(429)
    assert statuses[0] == 200 and refusals >= 2, statuses
    after = {url: scrape(url) for url in running.scraped.values()}

    def moved(url: str, name: str, **labels: str) -> float:
        return value(after[url], name, **labels) - value(before[url], name, **labels)

    # The HTTP side: per surface, method, route template and status.
    http = running.http
    health = {"surface": "c2c", "method": "GET", "route": HEALTH}
    assert moved(http, "crmgate_http_requests_total", **health, status="200") == 3 + 1
    assert moved(http, "crmgate_http_requests_total", **health, status="401") == 1
    assert moved(http, "crmgate_http_requests_total", **health, status="429") == refusals
    unmatched = {"surface": "c2c", "method": "GET", "route": "(unmatched)"}
    assert moved(http, "crmgate_http_requests_total", **unmatched, status="404") == 1
    posted = {"surface": "c2c", "method": "POST", "route": UPLOAD}
    assert moved(http, "crmgate_http_requests_total", **posted, status="201") == 1
    assert moved(http, "crmgate_http_request_bytes_total", **posted) == len(body)
    assert moved(http, "crmgate_http_response_bytes_total", **posted) == len(upload.content)
    assert moved(http, "crmgate_http_response_bytes_total", **health) == sum(
        len(answer.content) for answer in [*healthy, bad_key, *throttled]
    )
    calls = 3 + 1 + 4
    assert moved(http, "crmgate_http_request_duration_seconds_count", **health) == calls
    assert moved(http, "crmgate_http_request_duration_seconds_bucket", **health, le="+Inf") == calls
    assert moved(http, "crmgate_http_request_duration_seconds_sum", **health) > 0
    assert value(after[http], "crmgate_http_requests_in_flight", **health) == 0

    # The services: gRPC calls (those that came over a channel), the database, the pools,
    # storage and rate limits.
    served = running.grpc
    method = "/c2c.v1.ContactAssets/Health"
    # serve: the direct call only (HTTP calls reach the servicers in process); split: the
    # three healthy calls, the tight key's first and the direct one.
    over_grpc = 1 if running.kind == "serve" else 3 + 1 + 1
    assert moved(served, "crmgate_grpc_requests_total", method=method, code="OK") == over_grpc
    assert moved(served, "crmgate_grpc_request_duration_seconds_count", method=method) == (
        over_grpc + (0 if running.kind == "serve" else 1 + refusals)
    )
    if running.kind == "split":
        assert (
            moved(served, "crmgate_grpc_requests_total", method=method, code="UNAUTHENTICATED") == 1
        )
        assert (
            moved(served, "crmgate_grpc_requests_total", method=method, code="RESOURCE_EXHAUSTED")
            == refusals
        )
        create = "/c2c.v1.ContactAssets/UploadAssets"  # streamed by the gateway
        assert moved(served, "crmgate_grpc_requests_total", method=create, code="OK") == 1
        assert moved(served, "crmgate_grpc_request_bytes_total", method=create) > len(content)
    assert moved(served, "crmgate_grpc_response_bytes_total", method=method) > 0
    assert moved(served, "crmgate_db_statement_duration_seconds_count", statement="select") > 0
    assert moved(served, "crmgate_db_statement_duration_seconds_count", statement="insert") >= 1
    assert moved(served, "crmgate_rate_limit_refusals_total", limit="budget") == refusals
    assert value(after[served], "crmgate_rate_limit_refusals_total", limit="lockout") == 0
    assert moved(served, "crmgate_storage_operations_total", operation="write", outcome="ok") == 1
    assert moved(served, "crmgate_storage_bytes_total", direction="written") == len(content)
    for pool in ("database", "search", "cpu", "storage"):
        assert value(after[served], "crmgate_pool_busy", pool=pool) >= 0
        assert value(after[served], "crmgate_pool_queued", pool=pool) == 0
    assert value(after[served], "crmgate_pool_size", pool="database") == 8
    for state in ("pending", "running"):
        assert ("crmgate_background_requests", frozenset({("state", state)})) in after[served]
    if running.crmgate.database_url:
        assert ("crmgate_db_connections", frozenset({("state", "in_use")})) in after[served]

    if running.kind == "split":  # each process keeps only its own
        assert not {n for n in names(after[http]) if n.startswith(("crmgate_db", "crmgate_grpc"))}
        assert not {n for n in names(after[served]) if n.startswith("crmgate_http")}


def test_background_requests_show_their_state_and_age(running: Deployment) -> None:
    """A request some server claimed ten minutes ago and still holds (its lease runs for
    an hour): what the 'stuck' alert watches."""
    tenant, _ = new_tenant(running.crmgate)
    running.crmgate.admin(
        "user", "create", "--tenant", tenant, "--email", f"{tenant}@example.com", "--password", "pw-12345678"
    )  # fmt: skip
    connection = open_database(running.crmgate.resolved_database_url)
    database.initialize(connection)
    request_id = f"req_{uuid.uuid4().hex}"
    now = datetime.now(UTC).replace(tzinfo=None)
    try:
        BackgroundRequest.create(
            request_id=request_id,
            tenant=Tenant.get(Tenant.name == tenant),
            user=User.get(User.email == f"{tenant}@example.com"),
            method="/crm.v1.Crm/SearchContacts",
            request=b"",
            status="RUNNING",
            owner="elsewhere:1:dead",
            lease_until=now + timedelta(hours=1),
            created_at=now - timedelta(minutes=10),
        )
        samples = scrape(running.grpc)
        assert value(samples, "crmgate_background_requests", state="running") == 1
        assert value(samples, "crmgate_background_oldest_age_seconds", state="running") >= 600
    finally:
        BackgroundRequest.delete().where(BackgroundRequest.request_id == request_id).execute()
        connection.close()
    assert value(scrape(running.grpc), "crmgate_background_requests", state="running") == 0


def test_labels_hold_no_raw_path_and_no_tenant(running: Deployment) -> None:
    crmgate = running.crmgate
    tenant, key = new_tenant(crmgate)
    marker = uuid.uuid4().hex
    for path in (
        f"/api/c2c/{marker}",
        f"/api/v1/{marker}/x",
        f"/api/contacts/{marker}",
        f"/files/download/{marker}/a.txt",
        f"/media/{marker}/a.png",
        f"/{marker}",
    ):
        get(crmgate.http_url + path, c2c_headers(key))
    requests.request("BREW", crmgate.http_url + f"/{marker}", timeout=10)
    routes = set()
    for url in running.scraped.values():
        text = requests.get(url + "/metrics", timeout=10).text
        assert marker not in text and tenant not in text and key not in text
        samples = scrape(url)
        crmgate_labels = {
            label for name, labels in samples if name.startswith("crmgate_") for label, _ in labels
        }
        assert crmgate_labels <= LABEL_NAMES
        routes |= {
            dict(labels)["route"]
            for name, labels in samples
            if name == "crmgate_http_requests_total"
        }
        assert {
            dict(labels)["method"]
            for name, labels in samples
            if name == "crmgate_http_requests_total"
        } <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER"}
    assert "(unmatched)" in routes
    assert "/files/download/{token}/{name}" in routes
    assert "/media/{uuid}/{name}" in routes
    assert all(route == "(unmatched)" or route.startswith("/") for route in routes)


def test_metrics_answer_while_the_server_is_under_load(running: Deployment) -> None:
    """Sixteen clients keep the process busy (uploads and health checks) while /metrics
    is scraped again and again; every scrape answers, and the counters grow between
    scrapes."""
    crmgate = running.crmgate
    _, key = new_tenant(crmgate)
    stop = threading.Event()
    body = json.dumps(
        {
            "email": "user@example.com",
            "files": [{"filename": "a.txt", "mime_type": "text/plain", "content": base64.b64encode(b"x" * 200_000).decode()}],
        }
    )  # fmt: skip
    answered: list[int] = []

    def load(upload: bool) -> None:
        with requests.Session() as session:
            while not stop.is_set():
                if upload:
                    answer = session.post(
                        crmgate.http_url + UPLOAD,
                        data=body,
                        headers={**c2c_headers(key), "Content-Type": "application/json"},
                        timeout=60,
                    )
                else:
                    answer = session.get(
                        crmgate.http_url + HEALTH, headers=c2c_headers(key), timeout=60
                    )
                answered.append(answer.status_code)

    threads = [threading.Thread(target=load, args=(i % 2 == 0,)) for i in range(16)]
    for thread in threads:
        thread.start()
    try:
        counts: list[float] = []
        health = {"surface": "c2c", "method": "GET", "route": HEALTH, "status": "200"}
        deadline = time.monotonic() + 60
        while len(counts) < 2 or counts[-1] <= counts[0]:
            assert time.monotonic() < deadline, f"the counter never moved: {counts}"
            samples = {url: scrape(url) for url in running.scraped.values()}
            counts.append(value(samples[running.http], "crmgate_http_requests_total", **health))
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert set(answered) == {200, 201}


def test_metrics_off(tmp_path: Path) -> None:
    """CRMGATE_METRICS=0: no /metrics (the fallback's 404) and no metrics listener."""
    off = {"CRMGATE_METRICS": "0"}
    with CrmgateProcess.start(tmp_path / "serve", env=off) as serve:
        answer = requests.get(serve.http_url + "/metrics", timeout=10)
        assert answer.status_code == 404
        assert answer.json()["error"] == "route_not_found"
    with CrmgateProcess.start_split(
        tmp_path / "split", env=off, server_extra=("--metrics-port", "0")
    ) as split:
        assert requests.get(split.http_url + "/metrics", timeout=10).status_code == 404
        server = psutil.Process(split.processes[0].process.pid)
        listening = [c for c in server.net_connections("tcp") if c.status == psutil.CONN_LISTEN]
        assert [c.laddr.port for c in listening] == [int(split.grpc_target.rsplit(":", 1)[1])]
