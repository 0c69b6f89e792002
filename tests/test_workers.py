"""Bulk jobs in worker processes (server/workers.py): they run outside the serving process,
on the same store, and behave as on a thread — progress reported to the caller, errors
raised whole, a released import stopped at a batch boundary."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import peewee
import pytest
from crm.v1 import crm_pb2

from server import admin
from server.config import Settings
from server.crm import imports
from server.crm.background import Released
from server.database.connection import database
from server.database.models import Contact, Spreadsheet
from server.errors import ApiError
from server.objects import ObjectStorage
from server.workers import WORKER_SQLITE_CACHE_KIB, BulkWorkers, WorkerDied

Reports = list[tuple[int, str]]


def whose_process(buckets: ObjectStorage, progress: Callable[[int, str], None]) -> int:
    """A job: reports half way, answers the id of the process it ran in."""
    progress(50, "half way")
    return os.getpid()


def page_cache(buckets: ObjectStorage, progress: Callable[[int, str], None]) -> int | None:
    """A job: the SQLite page cache of the worker's connection (None on PostgreSQL)."""
    if not isinstance(database.obj, peewee.SqliteDatabase):
        return None
    return int(database.execute_sql("PRAGMA cache_size").fetchone()[0])


def dies(buckets: ObjectStorage, progress: Callable[[int, str], None]) -> None:
    """A job whose process ends under it (killed, out of memory)."""
    os._exit(3)


@pytest.fixture
def workers(store: peewee.Database, database_url: str, tmp_path: Path) -> Any:
    """Worker processes on the test's own database."""
    bulk = BulkWorkers(Settings(data_dir=tmp_path, database_url=database_url))
    yield bulk
    bulk.close()


def run(bulk: BulkWorkers, job: Callable[..., Any], *args: object, reporter: Any = None) -> Any:
    reports: Reports = []

    def report(percent: int, commentary: str) -> None:
        reports.append((percent, commentary))

    result = asyncio.run(bulk.run(job, *args, progress=reporter or report))
    return result, reports


def paid_user() -> int:
    admin.create_tenant("acme", [], "en")
    return admin.create_user("acme", "ada@acme.example", "long enough", "paid").id


def csv_import(*lines: str) -> crm_pb2.ImportInput:
    return crm_pb2.ImportInput(file_name="people.csv", content="\n".join(lines).encode())


def test_a_job_runs_in_a_worker_that_is_kept_and_reports_progress(workers: BulkWorkers) -> None:
    pid, reports = run(workers, whose_process)
    assert pid != os.getpid()
    assert reports == [(50, "half way")]
    # The next job finds the same worker waiting.
    assert run(workers, whose_process)[0] == pid


def test_a_worker_gives_sqlite_a_larger_page_cache(
    workers: BulkWorkers, store: peewee.Database
) -> None:
    """An import batch dirties more pages than SQLite's default cache holds."""
    cache, _ = run(workers, page_cache)
    if isinstance(store, peewee.SqliteDatabase):
        assert cache == -WORKER_SQLITE_CACHE_KIB
    else:
        assert cache is None


def test_a_worker_that_dies_mid_job_fails_the_job_and_is_replaced(workers: BulkWorkers) -> None:
    first, _ = run(workers, whose_process)
    with pytest.raises(WorkerDied):
        run(workers, dies)
    second, _ = run(workers, whose_process)
    assert second not in (first, os.getpid())


def test_an_import_in_a_worker_reports_row_errors_by_spreadsheet_row(
    workers: BulkWorkers,
) -> None:
    user_id = paid_user()
    given = csv_import(
        "Email,FirstName",
        "one@people.example,One",
        "not an address,Two",
        ",Three",
        "one@people.example,Four",
    )
    result, reports = run(workers, imports.import_contacts, user_id, given)
    assert result.imported_count == 1
    assert [(error.row, error.message) for error in result.errors] == [
        (3, "Email is not a valid email address."),
        (4, "Email is required."),
        (5, "A contact with this email already exists for this customer."),
    ]
    assert reports == [(100, "Imported 4 of 4 rows")]
    assert [c.first_name for c in Contact.select()] == ["One"]
    (sheet,) = Spreadsheet.select()
    assert (sheet.imported_count, sheet.import_status, sheet.row_count) == (1, "DONE", 4)


def test_a_refused_import_raises_its_api_error_whole(workers: BulkWorkers) -> None:
    user_id = paid_user()
    with pytest.raises(ApiError) as refused:
        run(workers, imports.import_contacts, user_id, csv_import("Name", "Ada"))
    error = refused.value
    assert (error.code, error.reason, error.message) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "bad_request",
        "No column maps to Email; add it to Mapping.",
    )
    assert Spreadsheet.select().count() == 0


def test_a_released_import_stops_at_a_batch_boundary(workers: BulkWorkers) -> None:
    """A stopping server releases its background import: the reporter raises Released at
    the first report, after the first batch committed, and the worker stops there."""
    user_id = paid_user()
    rows = imports.BATCH_ROWS * 2 + imports.BATCH_ROWS // 2
    given = csv_import("Email", *(f"p{i}@people.example" for i in range(rows)))

    def released(percent: int, commentary: str) -> None:
        raise Released("req_x")

    with pytest.raises(Released):
        run(workers, imports.import_contacts, user_id, given, reporter=released)
    (sheet,) = Spreadsheet.select()
    assert (sheet.imported_count, sheet.import_status) == (imports.BATCH_ROWS, "RUNNING")
    assert Contact.select().count() == imports.BATCH_ROWS
    # The worker is fine for the next job.
    assert run(workers, whose_process)[0] != os.getpid()


def test_a_server_runs_bulk_jobs_on_one_worker_fewer_than_its_cores(
    workers: BulkWorkers,
) -> None:
    """Each worker keeps a database backend busy at full priority (PostgreSQL's), so the
    workers leave a core free of bulk work for the event loop: jobs started at once share
    at most cores - 1 workers (at least one), the others wait for a free one."""
    cores = len(os.sched_getaffinity(0))
    jobs = 3

    def ignored(percent: int, commentary: str) -> None:
        pass

    async def at_once() -> list[int]:
        started = [workers.run(whose_process, progress=ignored) for _ in range(jobs)]
        return list(await asyncio.gather(*started))

    pids = asyncio.run(at_once())
    assert len(set(pids)) == min(jobs, max(1, cores - 1))
