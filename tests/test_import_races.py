"""An import racing another writer on PostgreSQL: a batch is first copied straight into
the table, and a contact created meanwhile with one of its emails must still make that
row a duplicate, not fail the import or add a second live contact.
(On SQLite a batch holds the write lock from its first check, so nothing can come
between.)"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import peewee
import psycopg2
import pytest
from crm.v1 import crm_pb2

from server import admin
from server.crm.imports import import_contacts
from server.database.models import Contact, Spreadsheet
from server.objects import open_storage

DUPLICATE = "A contact with this email already exists for this customer."


@pytest.fixture
def racer(store: peewee.Database, database_url: str) -> Iterator[psycopg2.extensions.cursor]:
    """Another writer's open transaction, which has added a live contact with
    racer@race.example to the tenant `acme` and not yet committed."""
    tenant = admin.create_tenant("acme", [], "en")
    connection = psycopg2.connect(database_url)
    cursor = connection.cursor()
    cursor.execute(
        "INSERT INTO contact (uuid, tenant_id, email, email_normalized, first_name, last_name,"
        " phone, company, created_at, updated_at) VALUES (%s, %s, %s, %s, 'Racer', '', '', '',"
        " now(), now())",
        (str(uuid.uuid4()), tenant.id, "racer@race.example", "racer@race.example"),
    )
    yield cursor
    connection.close()


def waiting_on_a_lock(database_url: str) -> bool:
    """Whether some session of the database waits for another's lock."""
    with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock'"
        )
        (count,) = cursor.fetchone()
    connection.close()
    return count > 0


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_contact_created_during_the_copy_makes_its_row_a_duplicate(
    racer: psycopg2.extensions.cursor, database_url: str, tmp_path: Path
) -> None:
    user = admin.create_user("acme", "ada@race.example", "long enough", "paid")
    sheet = b"Email,FirstName\nfirst@race.example,One\nRACER@race.example,Two\nlast@race.example,Three\n"
    given = crm_pb2.ImportInput(file_name="race.csv", content=sheet)
    result: list[crm_pb2.ImportResult] = []
    importing = threading.Thread(
        target=lambda: result.append(
            import_contacts(open_storage(None, tmp_path), user.id, given, lambda *_: None)
        )
    )
    importing.start()
    # The copy waits on the racer's uncommitted entry in the live-email index; once the
    # racer commits, the index refuses it.
    deadline = time.monotonic() + 30
    while not waiting_on_a_lock(database_url):
        assert importing.is_alive() and time.monotonic() < deadline, "the copy never waited"
        time.sleep(0.01)
    racer.connection.commit()
    importing.join(30)

    (done,) = result
    assert (done.imported_count, list(done.errors)) == (
        2,
        [crm_pb2.RowError(row=3, message=DUPLICATE)],
    )
    live = Contact.select().where(Contact.deleted_at.is_null()).order_by(Contact.email)
    assert [(c.email, c.first_name) for c in live] == [
        ("first@race.example", "One"),
        ("last@race.example", "Three"),
        ("racer@race.example", "Racer"),
    ]
    assert [(s.imported_count, s.import_status) for s in Spreadsheet.select()] == [(2, "DONE")]
