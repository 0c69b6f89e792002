"""The store under concurrency, with real processes: several `crmgate serve` on one SQLite
data dir or one PostgreSQL database, lost connections, an unreachable database, and what
health and readiness say meanwhile."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import create_postgres_database, drop_postgres_database
from tests.support.load import Answer, post_all, session_id, wait_for_requests
from tests.support.processes import CrmgateProcess, run_admin

PASSWORD = "correct horse battery"
DUPLICATE = {"ErrorMessage": "A contact with this email already exists for this customer."}
UNAVAILABLE = {"ErrorMessage": "The database did not answer; try again shortly."}
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
DEADLINE = 30.0


def postgres_url(name: str) -> str:
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


@pytest.fixture
def postgres_database(postgres_admin: object) -> Iterator[str]:
    name = create_postgres_database(postgres_admin)
    try:
        yield name
    finally:
        execute(postgres_admin, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        drop_postgres_database(postgres_admin, name)


@pytest.fixture(params=["sqlite", "postgresql"])
def environment(request: pytest.FixtureRequest) -> dict[str, str]:
    """What makes every process use the same store: the data dir alone (SQLite), or
    CRMGATE_DATABASE_URL too (PostgreSQL)."""
    env = {"CRMGATE_LOG_LEVEL": "WARNING"}
    if request.param == "postgresql":
        env["CRMGATE_DATABASE_URL"] = postgres_url(request.getfixturevalue("postgres_database"))
    return env


def customer(data_dir: Path, env: dict[str, str]) -> None:
    run_admin(data_dir, "tenant", "create", "acme", env=env)
    run_admin(
        data_dir,
        "user",
        "create",
        "--tenant",
        "acme",
        "--email",
        "ada@acme.example",
        "--password",
        PASSWORD,
        env=env,
    )


def creates(emails: list[str], suffix: str = "") -> list[tuple[str, object]]:
    return [(f"/api/contacts/create{suffix}", {"Email": email}) for email in emails]


def statuses(answers: list[Answer]) -> Counter[int]:
    return Counter(answer.status for answer in answers)


def test_parallel_creates_from_two_processes_on_one_store(
    tmp_path: Path, environment: dict[str, str]
) -> None:
    customer(tmp_path, environment)
    with ExitStack() as stack:
        urls = [
            stack.enter_context(CrmgateProcess.start(tmp_path, env=environment)).http_url
            for _ in range(2)
        ]
        session = session_id(urls[0], "ada@acme.example", PASSWORD)

        distinct = post_all(urls, creates([f"person{i}@acme.example" for i in range(100)]), session)
        assert statuses(distinct) == {200: 100}

        # One email, in several spellings, from both processes at once: one contact.
        spellings = ["shared@acme.example", " Shared@ACME.example", "SHARED@acme.example "]
        shared = post_all(urls, creates([spellings[i % 3] for i in range(20)]), session)
        assert statuses(shared) == {200: 1, 540: 19}
        assert all(answer.body == DUPLICATE for answer in shared if answer.status == 540)

        started = post_all(
            urls, creates([f"later{i}@acme.example" for i in range(20)], "?async=true"), session
        )
        assert statuses(started) == {200: 20}
        finished = wait_for_requests(urls[1], [a.body["RequestId"] for a in started], session)
        assert Counter(status["ProcessStatus"] for status in finished) == {"PROCESSED": 20}

        (search,) = post_all(urls, [("/api/contacts/search", {"PageSize": 500})], session)
        emails = {row["Email"].strip().lower() for row in search.body["Rows"]}
        assert search.body["TotalCount"] == len(emails) == 100 + 1 + 20


def execute(admin_connection: object, statement: str, *params: object) -> list[tuple]:
    with admin_connection.cursor() as cursor:  # type: ignore[attr-defined]
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def backends(admin_connection: object, name: str) -> list[int]:
    """The server processes of crmgate's connections to the database."""
    rows = execute(admin_connection, "SELECT pid FROM pg_stat_activity WHERE datname = %s", name)
    return [pid for (pid,) in rows]


def terminate_crmgate(admin_connection: object, name: str) -> None:
    """pg_terminate_backend on every connection crmgate holds to the database."""
    execute(
        admin_connection,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
        name,
    )


def grpc_health(target: str) -> int:
    with grpc.insecure_channel(target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
    return reply.status


def readyz(http_url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(http_url + "/readyz", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def alive(http_url: str) -> bool:
    with urllib.request.urlopen(http_url + "/healthz", timeout=10) as response:
        return (response.status, json.loads(response.read())) == (200, {"status": "ok"})


def eventually(probe: object, expected: object) -> None:
    deadline = time.monotonic() + DEADLINE
    while (found := probe()) != expected:  # type: ignore[operator]
        assert time.monotonic() < deadline, f"still {found!r}, waiting for {expected!r}"
        time.sleep(0.1)


def test_postgres_connections_lost_and_database_unreachable(
    tmp_path: Path, postgres_admin: object, postgres_database: str
) -> None:
    env = {"CRMGATE_LOG_LEVEL": "WARNING", "CRMGATE_DATABASE_URL": postgres_url(postgres_database)}
    customer(tmp_path, env)
    with ExitStack() as stack:
        serve = stack.enter_context(CrmgateProcess.start(tmp_path, env=env))
        split = stack.enter_context(CrmgateProcess.start_split(tmp_path, env=env))
        session = session_id(serve.http_url, "ada@acme.example", PASSWORD)

        # Connections killed while a burst of creates is in flight.
        answers: list[Answer] = []
        burst = threading.Thread(
            target=lambda: answers.extend(
                post_all(
                    [serve.http_url], creates([f"p{i}@acme.example" for i in range(200)]), session
                )
            )
        )
        burst.start()
        # Several connections at once means the burst is being served: kill them all.
        eventually(lambda: len(backends(postgres_admin, postgres_database)) >= 3, True)
        terminate_crmgate(postgres_admin, postgres_database)
        burst.join()
        assert set(statuses(answers)) <= {200, 541}, statuses(answers)
        assert all(answer.body == UNAVAILABLE for answer in answers if answer.status == 541)
        after = post_all(
            [serve.http_url], creates([f"q{i}@acme.example" for i in range(20)]), session
        )
        assert statuses(after) == {200: 20}

        # The database refuses connections: health says so, calls are UNAVAILABLE.
        execute(postgres_admin, f'ALTER DATABASE "{postgres_database}" ALLOW_CONNECTIONS false')
        terminate_crmgate(postgres_admin, postgres_database)
        for target in (serve.grpc_target, split.grpc_target):
            eventually(lambda target=target: grpc_health(target), NOT_SERVING)
        assert readyz(serve.http_url) == (
            503,
            {"status": "unavailable", "checks": {"database": "down", "storage": "ok"}},
        )
        eventually(
            lambda: readyz(split.http_url),
            (503, {"status": "unavailable", "checks": {"backend": "down"}}),
        )
        (refused,) = post_all([serve.http_url], creates(["r@acme.example"]), session)
        assert (refused.status, refused.body) == (541, UNAVAILABLE)
        assert all(alive(process.http_url) for process in (serve, split))

        execute(postgres_admin, f'ALTER DATABASE "{postgres_database}" ALLOW_CONNECTIONS true')
        for target in (serve.grpc_target, split.grpc_target):
            eventually(lambda target=target: grpc_health(target), SERVING)
        assert readyz(serve.http_url) == (
            200,
            {"status": "ready", "checks": {"database": "ok", "storage": "ok"}},
        )
        eventually(
            lambda: readyz(split.http_url), (200, {"status": "ready", "checks": {"backend": "ok"}})
        )
        (again,) = post_all([split.http_url], creates(["r@acme.example"]), session)
        assert again.status == 200


def test_readiness_names_storage_that_cannot_be_written(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("objects cannot live under a file")
    env = {"CRMGATE_STORAGE_URL": str(blocker / "objects")}
    with CrmgateProcess.start(tmp_path / "data", env=env) as serve:
        assert alive(serve.http_url)
        assert readyz(serve.http_url) == (
            503,
            {"status": "unavailable", "checks": {"database": "ok", "storage": "down"}},
        )
        assert grpc_health(serve.grpc_target) == NOT_SERVING
