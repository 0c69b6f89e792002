"""SQLite's one write lock between a bulk job's transactions: a writer of another process
that waits for it goes first (server.database.connection.WriteGate), so an import does
not keep it for all but moments while interactive writes poll for it."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import peewee
import pytest

from server.database import connection
from server.database.connection import database, make_way_for_writers, open_database

ROOT = Path(__file__).resolve().parents[1]
#: Another process writing one row, its BEGIN waiting while the test holds the lock.
WRITER = """
import sys
from server.database.connection import open_database
store = open_database("sqlite:///" + sys.argv[1])
with store.atomic():
    store.execute_sql("INSERT INTO note (text) VALUES ('writer')")
"""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[peewee.Database]:
    """A SQLite store with one table, bound to the models' proxy as a bulk worker's is."""
    previous = database.obj
    db = open_database(f"sqlite:///{tmp_path}/store.sqlite3")
    database.initialize(db)
    db.execute_sql("CREATE TABLE note (id INTEGER PRIMARY KEY, text TEXT)")
    yield db
    db.close()
    database.initialize(previous)


def gate_held(path: str) -> bool:
    """Whether some writer holds the gate file (waits for the write lock)."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)  # closing lets go of a lock it took
    return False


def notes(store: peewee.Database) -> list[str]:
    return [text for (text,) in store.execute_sql("SELECT text FROM note ORDER BY id")]


def test_a_waiting_writer_commits_between_a_bulk_jobs_transactions(
    store: peewee.Database, tmp_path: Path
) -> None:
    """While the job holds the write lock, another process's write waits at BEGIN; the
    job makes way before its next transaction, and the writer's row lands between the
    job's two (without the gate the job begins again at once, and the writer's busy
    handler, asleep, finds the lock taken)."""
    path = str(tmp_path / "store.sqlite3")
    with store.atomic():
        store.execute_sql("INSERT INTO note (text) VALUES ('job, batch 1')")
        writer = subprocess.Popen([sys.executable, "-c", WRITER, path], cwd=ROOT)
        deadline = time.monotonic() + 30
        while not gate_held(path + "-writers"):
            assert writer.poll() is None, "the writer ended without waiting"
            assert time.monotonic() < deadline, "the writer never waited at the gate"
            time.sleep(0.01)
    make_way_for_writers()
    with store.atomic():
        store.execute_sql("INSERT INTO note (text) VALUES ('job, batch 2')")
    assert writer.wait(timeout=30) == 0
    assert notes(store) == ["job, batch 1", "writer", "job, batch 2"]
    assert not gate_held(path + "-writers")


def test_a_bulk_job_makes_way_for_a_while_only(
    store: peewee.Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writers that keep the gate held (new ones may keep coming) do not stop the job:
    it goes on after MAKE_WAY_SECONDS."""
    monkeypatch.setattr(connection, "MAKE_WAY_SECONDS", 0.05)
    descriptor = os.open(tmp_path / "store.sqlite3-writers", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(descriptor, fcntl.LOCK_SH)  # a writer that waits, and waits
    try:
        make_way_for_writers()
        with store.atomic():
            store.execute_sql("INSERT INTO note (text) VALUES ('job')")
    finally:
        os.close(descriptor)
    assert notes(store) == ["job"]
