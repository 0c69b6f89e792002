"""A cluster: two `crmgate server` and two `crmgate gateway` processes on one PostgreSQL
database and one S3-compatible object store, none of them special. Requests of every
surface alternate between the gateways; background requests are cluster work, settled
even when the server running them is killed."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from server.database.connection import open_database
from server.database.models import BackgroundRequest
from tests.conftest import create_postgres_database, drop_postgres_database
from tests.support.processes import Launched, launched, run_admin, wait_until_answering
from tests.support.s3 import rclone_s3
from tests.support.voyzu import VoyzuClient

PASSWORD = "correct horse battery"
BUCKET = "crmgate-objects"
#: Short leases so a dead server's work settles in seconds, not 40.
LEASE_SECONDS = 3


@dataclass
class Cluster:
    servers: list[Launched]
    gateways: list[str]
    database_url: str
    env: dict[str, str]
    data_dir: Path


@pytest.fixture
def cluster(postgres_admin: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    name = create_postgres_database(postgres_admin)
    database_url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    data_dir = tmp_path_factory.mktemp("cluster")
    try:
        with ExitStack() as stack:
            s3 = stack.enter_context(rclone_s3(tmp_path_factory.mktemp("s3") / "data", BUCKET))
            env = {
                **s3.env,
                "CRMGATE_DATABASE_URL": database_url,
                "CRMGATE_STORAGE_URL": f"s3://{BUCKET}/objects",
                "CRMGATE_LEASE_SECONDS": str(LEASE_SECONDS),
                "CRMGATE_DRAIN_SECONDS": "1",
            }
            run_admin(data_dir, "tenant", "create", "acme", env=env)
            server_args = ("server", "--grpc-port", "0", "--data-dir", str(data_dir))
            servers = [
                stack.enter_context(launched(*server_args, expect=frozenset({"grpc"}), env=env))
                for _ in range(2)
            ]
            target = ",".join(server.addresses["grpc"] for server in servers)
            gateways = []
            for _ in range(2):
                gateway = stack.enter_context(
                    launched(
                        *("gateway", "--grpc-target", target, "--http-port", "0"),
                        expect=frozenset({"http"}),
                        env=env,
                    )
                )
                wait_until_answering(gateway.addresses["http"])
                gateways.append(gateway.addresses["http"])
            yield Cluster(servers, gateways, database_url, env, data_dir)
    finally:
        drop_postgres_database(postgres_admin, name)


def admin(cluster: Cluster, *args: str) -> str:
    return run_admin(cluster.data_dir, *args, env=cluster.env)


def big_import(rows: int) -> dict[str, str]:
    csv = "Email\n" + "".join(f"p{i}@import.example\n" for i in range(rows))
    return {"FileName": "many.csv", "Content": base64.b64encode(csv.encode()).decode()}


def request_row(cluster: Cluster, request_id: str) -> BackgroundRequest:
    db = open_database(cluster.database_url)
    try:
        with db.bind_ctx([BackgroundRequest]):
            return BackgroundRequest.get(BackgroundRequest.request_id == request_id)
    finally:
        db.close()


def wait_for_row(
    cluster: Cluster, request_id: str, done: object, deadline: float = 30.0
) -> BackgroundRequest:
    """The request's row once `done(row)`, read from the database: no REST poll."""
    limit = time.monotonic() + deadline
    while True:
        row = request_row(cluster, request_id)
        if done(row):  # type: ignore[operator]
            return row
        assert time.monotonic() < limit, (row.status, row.owner)
        time.sleep(0.05)


def owner_of(cluster: Cluster, row: BackgroundRequest) -> Launched:
    pid = int(row.owner.split(":")[1])
    (server,) = [s for s in cluster.servers if s.process.pid == pid]
    return server


def test_every_surface_through_either_gateway(cluster: Cluster) -> None:
    admin(cluster, "contact", "create", "--tenant", "acme", "--email", "ada@example.com")
    c2c = admin(cluster, "apikey", "create", "--tenant", "acme", "--kind", "c2c")
    close = admin(cluster, "apikey", "create", "--tenant", "acme", "--kind", "close")
    admin(cluster, "user", "create", "--tenant", "acme", "--email", "u@acme.example",
          "--password", PASSWORD, "--plan", "paid")  # fmt: skip
    first, second = cluster.gateways
    headers = {"X-Api-Version": "v1", "Authorization": f"Bearer {c2c}"}
    for url in (first, second, first, second):
        assert requests.get(url + "/api/c2c/health", headers=headers, timeout=10).status_code == 200
        form = requests.post(
            url + "/api/v1/files/upload/",
            auth=(close, ""),
            json={"filename": "a.txt", "content_type": "text/plain"},
            timeout=10,
        )
        assert form.status_code == 200, form.text
    # The upload target and the download are served by any gateway, bytes through S3.
    upload = form.json()
    posted = requests.post(
        upload["upload"]["url"],
        data=upload["upload"]["fields"],
        files={"file": ("a.txt", b"shared by every replica", "text/plain")},
        timeout=30,
    )
    assert posted.status_code == 201, posted.text
    download = upload["download"]["url"].replace(second, first)
    assert download != upload["download"]["url"]
    assert requests.get(download, timeout=30).content == b"shared by every replica"
    attached = requests.post(
        second + "/api/c2c/contacts/assets",
        headers={**headers, "Content-Type": "application/json"},
        json={
            "email": "ada@example.com",
            "files": [
                {
                    "filename": "n.txt",
                    "mime_type": "text/plain",
                    "content": base64.b64encode(b"notes\n").decode(),
                }
            ],
        },
        timeout=30,
    )
    assert attached.status_code == 201, attached.text
    (asset,) = attached.json()["data"]["assets"]
    media = requests.get(f"{first}/media/{asset['uuid']}/{asset['name']}", timeout=30)
    assert (media.status_code, media.content) == (200, b"notes\n")
    # A session made through one gateway works through the other; so does polling.
    voyzu = VoyzuClient(first)
    session = voyzu.sign_in("u@acme.example", PASSWORD)["SessionId"]
    voyzu.close()
    other = VoyzuClient(second)
    status, body, _ = other.request(
        "POST",
        "/api/contacts/search?async=true",
        {},
        headers={"Cookie": f"voyzu_session_id={session}"},
    )
    assert status == 200, body
    row = wait_for_row(cluster, body["RequestId"], lambda r: r.status == "PROCESSED")
    assert row.owner is not None
    other.close()


@dataclass
class RunningImport:
    client: VoyzuClient
    request_id: str
    row: BackgroundRequest  # as it was once a server claimed it


@pytest.fixture
def running_import(cluster: Cluster) -> Iterator[RunningImport]:
    """A large background import (the most rows a file may hold: imports apply batches of
    1,000 rows fast), claimed by one of the servers."""
    admin(cluster, "user", "create", "--tenant", "acme", "--email", "u@acme.example",
          "--password", PASSWORD, "--plan", "paid")  # fmt: skip
    client = VoyzuClient(cluster.gateways[0])
    client.sign_in("u@acme.example", PASSWORD)
    status, body = client.post("/api/imports/create?async=true", big_import(100_000))
    assert status == 200, body
    request_id = body["RequestId"]
    row = wait_for_row(cluster, request_id, lambda r: r.status == "PROCESSING")
    yield RunningImport(client, request_id, row)
    client.close()


def test_a_killed_servers_work_settles_without_any_poll(
    cluster: Cluster, running_import: RunningImport
) -> None:
    client, request_id = running_import.client, running_import.request_id
    owner_of(cluster, running_import.row).kill()
    # Nobody polls: the survivor's sweep settles it once the lease runs out. An import is
    # not idempotent (it may be half applied), so it fails, saying so.
    settled = wait_for_row(
        cluster, request_id, lambda r: r.status == "FAILED", deadline=LEASE_SECONDS * 4 + 10
    )
    assert settled.owner == running_import.row.owner
    status, report = client.post(f"/api/request/get/{request_id}")
    assert (status, report["ProcessStatus"], report["StatusCode"]) == (200, "FAILED", 540)
    assert report["ErrorMessage"].startswith("The request was interrupted and may have been")
    # The cluster still works through the other server.
    status, _ = client.post("/api/contacts/search", {})
    assert status == 200


def test_a_stopping_server_drains_then_releases(
    cluster: Cluster, running_import: RunningImport
) -> None:
    client, request_id = running_import.client, running_import.request_id
    # SIGTERM: it exits 0 after a 1 s grace, the import released, never reported wrongly.
    owner_of(cluster, running_import.row).stop()
    row = request_row(cluster, request_id)
    assert row.status in ("FAILED", "PROCESSED"), row.status
    _, report = client.post(f"/api/request/get/{request_id}")
    assert report["ProcessStatus"] == row.status
    if row.status == "FAILED":
        assert report["ErrorMessage"].startswith("The request was interrupted")
