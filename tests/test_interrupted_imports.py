"""A synchronous import is recorded before its first row is applied: when its server is
killed midway, the import stays visible with exactly the number of rows it applied (its
worker process dies with the server)."""

from __future__ import annotations

import base64
import contextlib
import threading
import time
from datetime import timedelta
from pathlib import Path

import requests

from server.database.connection import open_database
from server.database.models import Contact, Spreadsheet, utcnow
from tests.support.processes import CrmgateProcess, child_processes, run_admin, wait_until_gone
from tests.support.voyzu import VoyzuClient

PASSWORD = "correct horse battery"
ROWS = 100_000  # the most one file may hold: it takes seconds even in batches


def test_an_import_killed_midway_shows_how_far_it_got(tmp_path: Path) -> None:
    run_admin(tmp_path, "tenant", "create", "acme")
    run_admin(
        tmp_path,
        *("user", "create", "--tenant", "acme", "--email", "ada@acme.example"),
        *("--password", PASSWORD, "--plan", "paid"),
    )
    csv = "Email\n" + "".join(f"p{i}@import.example\n" for i in range(ROWS))
    body = {"FileName": "many.csv", "Content": base64.b64encode(csv.encode()).decode()}
    db = open_database(f"sqlite:///{tmp_path}/crmgate.sqlite3")
    with db.bind_ctx([Contact, Spreadsheet]):
        with CrmgateProcess.start(tmp_path) as server:
            client = VoyzuClient(server.http_url)
            cookie = client.sign_in("ada@acme.example", PASSWORD)["SessionId"]
            client.close()

            def run_import() -> None:
                with contextlib.suppress(requests.ConnectionError):  # it dies under us
                    requests.post(
                        server.http_url + "/api/imports/create",
                        json=body,
                        cookies={"voyzu_session_id": cookie},
                        timeout=120,
                    )

            importer = threading.Thread(target=run_import)
            importer.start()
            deadline = time.monotonic() + 60
            while not Spreadsheet.select().where(Spreadsheet.imported_count >= 200).exists():
                assert time.monotonic() < deadline, "the import never got going"
                time.sleep(0.02)
            # The import runs in a bulk worker process, which dies with its server.
            workers = child_processes(server.processes[0].process.pid)
            assert workers, "the import is not running in a worker process"
            server.processes[0].kill()
            importer.join(timeout=30)
            wait_until_gone(workers)

            (sheet,) = Spreadsheet.select()
            applied = Contact.select().where(Contact.email.endswith("@import.example")).count()
            assert 0 < sheet.imported_count == applied < ROWS
            assert sheet.import_status == "RUNNING"
            # Nobody reports on it any more: once its heartbeat is stale it reads INTERRUPTED.
            Spreadsheet.update(heartbeat_at=utcnow() - timedelta(minutes=5)).execute()

        with CrmgateProcess.start(tmp_path) as restarted:
            client = VoyzuClient(restarted.http_url)
            client.sign_in("ada@acme.example", PASSWORD)
            status, listing = client.post("/api/spreadsheets/list")
            client.close()
            assert status == 200
            (listed,) = listing["Spreadsheets"]
            assert (listed["Kind"], listed["ImportStatus"], listed["ImportedCount"]) == (
                "import",
                "INTERRUPTED",
                applied,
            )
            assert listed["RowCount"] == ROWS
    db.close()
