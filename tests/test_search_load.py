"""Contact searches cannot hold up other calls: they run on threads of their own (key
checks and every other query keep the database threads), and a search past the statement
timeout gives its connection back and answers UNAVAILABLE (voyzu 541), never a 500."""

from __future__ import annotations

import asyncio
import http.client
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import grpc
import peewee
import pytest

from bench import seed
from server import executors
from server.database.connection import database, open_database
from server.errors import ApiError
from tests.support.load import post_all, session_id
from tests.support.processes import CrmgateProcess, run_admin

DEADLINE = 30.0
#: Far more than DEADLINE_CHECK_STEPS of SQLite's work, whatever the machine.
HEAVY = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000)"
    " SELECT count(*) FROM n"
)
UNAVAILABLE = {"ErrorMessage": "The database did not answer; try again shortly."}


@pytest.fixture
def one_database_thread() -> Iterator[None]:
    executors.configure(executors.PoolSizes(database=1))
    yield
    executors.configure(executors.PoolSizes())


def test_key_checks_do_not_wait_for_searches(
    store: peewee.Database, one_database_thread: None
) -> None:
    """With a single database thread, a key check answers while every search thread is
    busy and more searches wait; each search then gets its answer."""
    threads = executors.PoolSizes.search
    release = threading.Event()
    running: list[str] = []

    def search() -> str:
        running.append(threading.current_thread().name)
        release.wait(DEADLINE)
        return "found"

    def key_check() -> int:
        return store.execute_sql("SELECT 1").fetchone()[0]

    async def scenario() -> None:
        searches = [asyncio.ensure_future(executors.run_db_search(search)) for _ in range(4)]
        try:
            deadline = time.monotonic() + DEADLINE
            while len(running) < threads:
                assert time.monotonic() < deadline, f"{len(running)} searches started"
                await asyncio.sleep(0.01)
            assert await asyncio.wait_for(executors.run_db(key_check), DEADLINE) == 1
            assert len(running) == threads  # the other searches wait for a search thread
        finally:
            release.set()
        assert await asyncio.gather(*searches) == ["found"] * 4

    asyncio.run(scenario())


def test_a_search_past_the_statement_timeout_is_unavailable(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path}/crmgate.sqlite3", statement_timeout=0.000001)
    database.initialize(db)
    try:

        def count() -> int:
            return db.execute_sql(HEAVY).fetchone()[0]

        with pytest.raises(ApiError) as raised:
            asyncio.run(executors.run_db_search(count))
        assert (raised.value.code, raised.value.reason) == (
            grpc.StatusCode.UNAVAILABLE,
            "database_unavailable",
        )
        # Only searches are limited; the search threads' connections work on.
        assert asyncio.run(executors.run_db(count)) == 1000000
        assert asyncio.run(executors.run_db_search(lambda: 42)) == 42
    finally:
        db.close()


def test_voyzu_search_past_the_statement_timeout_answers_541(tmp_path: Path) -> None:
    """Through a real `crmgate serve` on SQLite: a search that runs past the timeout is
    the documented 541; other calls, C2C health among them, are not limited."""
    env = {"CRMGATE_LOG_LEVEL": "WARNING", "CRMGATE_DB_STATEMENT_TIMEOUT": "0.000001"}
    run_admin(tmp_path, "migrate", env=env)
    run_admin(tmp_path, "tenant", "create", "acme", env=env)
    run_admin(
        tmp_path,
        *("user", "create", "--tenant", "acme", "--email", "ada@acme.example"),
        *("--password", "correct horse battery", "--plan", "paid"),
        env=env,
    )
    key = run_admin(tmp_path, "apikey", "create", "--tenant", "acme", "--kind", "c2c", env=env)
    # A two-letter word has no trigram: the search walks all of the tenant's contacts.
    seed.seed(f"sqlite:///{tmp_path}/crmgate.sqlite3", "acme", "ada@acme.example", 20_000)
    with CrmgateProcess.start(tmp_path, env=env) as serve:
        session = session_id(serve.http_url, "ada@acme.example", "correct horse battery")
        (searched,) = post_all(
            [serve.http_url], [("/api/contacts/search", {"SearchText": "qq"})], session
        )
        assert (searched.status, searched.body) == (541, UNAVAILABLE)
        (created,) = post_all(
            [serve.http_url], [("/api/contacts/create", {"Email": "new@acme.example"})], session
        )
        assert created.status == 200
        assert c2c_health(serve.http_url, key) == 200


def c2c_health(http_url: str, key: str) -> int:
    url = urlsplit(http_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=DEADLINE)
    try:
        headers = {"X-Api-Version": "v1", "Authorization": f"Bearer {key}"}
        connection.request("GET", "/api/c2c/health", headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()
