"""Importing contacts from a customer's spreadsheet: columns mapped to fields, each row
added as its own contact (a bad row is reported, not fatal), the file kept afterwards.

Rows are applied in batches: each batch is checked in Python, then inserted in one
transaction that also records how many rows were applied (a multi-row INSERT on SQLite,
COPY on PostgreSQL); the next batch is checked and made ready while one is inserted.
A row repeating the email of an earlier row that passed its checks is a duplicate at
once; against the tenant's contacts the database decides (its partial unique index on
live emails), so a contact created meanwhile by someone else is reported like any other
duplicate."""

from __future__ import annotations

import csv
import gc
import io
import operator
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import peewee
from crm.v1 import crm_pb2

from server.crm import contacts, custom_fields, messages, sheets, spreadsheets
from server.crm.background import Progress
from server.crm.users import require_paid, signed_in
from server.database.connection import database, make_way_for_writers
from server.database.models import (
    Contact,
    CustomField,
    CustomFieldValue,
    User,
    utcnow,
)
from server.errors import ApiError, invalid_argument
from server.objects import ObjectStorage

#: Rows applied in one transaction, with the count of those applied so far. Each commit
#: writes every page it dirtied (on SQLite twice: the WAL, then the checkpoint), and the
#: sort indexes each dirty pages all over, so bigger batches write less per row (measured
#: with random contact ids: 2,000 rows cost ~12 % less CPU per row than 1,000); small
#: enough that SQLite's write lock is held for about 0.07 s per batch on an idle core.
BATCH_ROWS = 2000
#: Rows per INSERT statement on SQLite, which allows 32,766 parameters; a contact takes 12,
#: so a batch is one statement (measured: ~2 µs a row less than four of 500 rows).
INSERT_ROWS = BATCH_ROWS
#: Allocations between two collections of the young generation during an import (Python's
#: default is 700; see `_young_collected_rarely`).
YOUNG_COLLECTION_OBJECTS = 20_000


def import_contacts(
    buckets: ObjectStorage, user_id: int | None, given: crm_pb2.ImportInput, progress: Progress
) -> crm_pb2.ImportResult:
    """Add a contact per row; the file as a whole is refused (INVALID_ARGUMENT) when it
    cannot be read or its columns cannot be mapped, before any contact is added."""
    user = signed_in(user_id)
    require_paid(user)
    with _young_collected_rarely():
        try:
            sheet = spreadsheets.read(given.file_name, given.content)
        except spreadsheets.SpreadsheetError as error:
            raise invalid_argument(str(error)) from None
        with _untraversed():
            return _import_rows(buckets, user, given, sheet, progress)


def _import_rows(
    buckets: ObjectStorage,
    user: User,
    given: crm_pb2.ImportInput,
    sheet: spreadsheets.Sheet,
    progress: Progress,
) -> crm_pb2.ImportResult:
    known = custom_fields.by_name(user.tenant_id)
    names = sorted(field.name for field in known.values())
    allowed = {*spreadsheets.STANDARD_FIELDS, *(f"custom:{name}" for name in names)}
    wrong = sorted(target for target in given.mapping.values() if target not in allowed)
    if wrong:
        raise invalid_argument(
            f"Mapping targets must be one of {', '.join(sorted(allowed))}; not {', '.join(wrong)}."
        )
    try:
        targets, ignored = spreadsheets.column_targets(sheet.headers, given.mapping, names)
    except spreadsheets.SpreadsheetError as error:
        raise invalid_argument(str(error)) from None
    if "Email" not in targets:
        raise invalid_argument("No column maps to Email; add it to Mapping.")
    errors: list[crm_pb2.RowError] = []
    taken: set[str] = set()
    imported = 0
    total = len(sheet.rows)

    stopping = threading.Event()

    reader = spreadsheets.RowReader(targets)

    def checked(start: int) -> _Batch:
        """The batch of rows from `start` on, checked (on the checking thread); cut short
        once the import stops, which then need not wait for a batch it will not insert."""
        batch = _Batch(user, known, taken)
        for index in range(start, min(start + BATCH_ROWS, total)):
            if stopping.is_set():
                break
            batch.check(sheet.numbers[index], *reader(sheet.rows[index]))
        batch.prepare()
        return batch

    # Recorded before the first row, so an interrupted import shows how far it got: each
    # batch of rows commits with the count, so the count is exact whenever it stops.
    stored = sheets.store(buckets, user, given.file_name, "import", given.content, total)
    # Each batch is checked and made ready on a thread of its own while the one before goes
    # in here: the database works with the GIL released (on PostgreSQL in another process),
    # so checking and inserting overlap. Batches are checked in order, one at a time
    # (duplicates within the file are decided as before), and inserted in order on this
    # thread, which keeps the job's connection; a stop (progress raising Released) comes
    # between batches.
    with ThreadPoolExecutor(1, thread_name_prefix="import-checks") as checker:
        try:
            coming = checker.submit(checked, 0)
            for start in range(0, total, BATCH_ROWS):
                batch = coming.result()
                end = min(start + BATCH_ROWS, total)
                if end < total:
                    coming = checker.submit(checked, end)
                make_way_for_writers()
                with database.atomic():
                    _commit_unflushed()
                    imported += batch.insert()
                    sheets.record_import(stored, imported)
                errors += sorted(batch.errors, key=lambda error: error.row)
                progress(int(end * 100 / total), f"Imported {end} of {total} rows")
        finally:
            stopping.set()
    sheets.record_import(stored, imported, done=True)
    return crm_pb2.ImportResult(
        imported_count=imported,
        errors=errors,
        ignored_columns=ignored,
        spreadsheet=messages.spreadsheet(stored),
    )


def _commit_unflushed() -> None:
    """PostgreSQL: the batch's commit does not wait for its WAL to reach the disk (~3 ms a
    batch here, the database idle meanwhile). A crash may then lose the last batches, but
    with their count, which commits with them; and the import's DONE, whose commit waits,
    makes every batch before it durable before the import answers."""
    if isinstance(database.obj, peewee.PostgresqlDatabase):
        database.execute_sql("SET LOCAL synchronous_commit = off")


@contextmanager
def _young_collected_rarely() -> Iterator[None]:
    """The cyclic garbage collector collects the young generation every
    YOUNG_COLLECTION_OBJECTS allocations rather than every 700, while the sheet is read
    and its rows imported. Why: reading builds a list per row, and collections every 700
    of them moved the growing sheet to older generations to be traversed again and
    again (reading 100,000 CSV rows took 0.27-0.31 s, 0.15 s with the collector off);
    a batch lives ~0.1 s, through dozens of young collections that did the same.
    Measured, SQLite, 100,000 rows, six interleaved rounds: +9 % rows/s, +10 % rows per
    CPU-second for the batches. Rows hold no cycles, reference counting frees them as
    before, and cycles are still collected."""
    thresholds = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_OBJECTS, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


@contextmanager
def _untraversed() -> Iterator[None]:
    """The collector leaves the objects alive now (the sheet's rows among them) alone
    until the import ends: the sheet lives as long as the import, and every collection
    of the oldest generation traversed all of it again (~4 µs of each row's ~35 µs)."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class _Batch:
    """Rows of one transaction: those that passed the checks, and the errors so far."""

    def __init__(self, user: User, known: Mapping[str, CustomField], taken: set[str]) -> None:
        self.user = user
        self.known = known
        #: Normalized emails of the import's rows that passed the checks so far: a later
        #: row with one of them is a duplicate whether or not the earlier one goes in.
        self.taken = taken
        self.now = utcnow()
        self.errors: list[crm_pb2.RowError] = []
        #: (row number, contact columns, custom values) of the rows to insert.
        self.rows: list[tuple[int, dict[str, object], dict[str, str]]] = []

    def check(self, number: int, fields: tuple[str, ...], values: dict[str, str]) -> None:
        """Take the row (spreadsheet row `number`: standard fields, custom values) for
        insertion, or note what is wrong with it, as creating that contact would."""
        given = contacts.Fields._make(fields)
        try:
            checked = contacts.check_fields(self.known, given, values)
        except ApiError as error:
            self.errors.append(crm_pb2.RowError(row=number, message=error.message))
            return
        columns = contacts.contact_row(self.user, given, checked, self.now)
        if columns["email_normalized"] in self.taken:
            self.errors.append(crm_pb2.RowError(row=number, message=_DUPLICATE))
            return
        self.taken.add(columns["email_normalized"])  # type: ignore[arg-type]
        self.rows.append((number, columns, checked))

    def prepare(self) -> None:
        """Make the checked contacts ready for the database (on the checking thread, so
        the inserting one only sends them)."""
        # `now` as both drivers write a datetime, once for the batch rather than twice a row.
        stamp = self.now.isoformat(" ")
        rest = operator.itemgetter(*_CONTACT_COLUMNS[1:-2])
        self.contacts = _Rows(
            _CONTACT_FIELDS,
            [(row["uuid"].hex, *rest(row), stamp, stamp) for _, row, _ in self.rows],  # type: ignore[attr-defined]
            " ON CONFLICT DO NOTHING",
        )
        self.emails = [row["email_normalized"] for _, row, _ in self.rows]

    def ids(self) -> bool:
        """Whether the inserted contacts' ids are needed: a custom value is stored under
        its contact's id."""
        return any(custom_values for _, _, custom_values in self.rows)

    def insert(self) -> int:
        """Insert the prepared rows (inside the caller's transaction): those no unique
        index refuses (no two of them share an email); a row whose email a live contact
        has is a duplicate error. Answers how many were inserted."""
        inserted = _insert_contacts(self.contacts, self.emails, self.user.tenant_id, self.ids())
        values = []
        for number, columns, custom in self.rows:
            if columns["email_normalized"] not in inserted:
                self.errors.append(crm_pb2.RowError(row=number, message=_DUPLICATE))
                continue
            contact_id = inserted[columns["email_normalized"]]  # type: ignore[index]
            values += [(contact_id, name, value) for name, value in custom.items() if value != ""]
        _Rows(_VALUE_FIELDS, values).write()
        return len(inserted)


_DUPLICATE = contacts.duplicate().message
_CONTACT_COLUMNS = (
    "uuid",
    "tenant",
    "owner",
    "email",
    "email_normalized",
    "first_name",
    "last_name",
    "phone",
    "company",
    "search_text",
    "created_at",
    "updated_at",
)
_CONTACT_FIELDS = tuple(Contact._meta.fields[name] for name in _CONTACT_COLUMNS)
_VALUE_FIELDS = (CustomFieldValue.contact, CustomFieldValue.name, CustomFieldValue.value)


def _insert_contacts(
    rows: _Rows, emails: list[str], tenant_id: int, ids: bool
) -> dict[str, int | None]:
    """Insert the contacts (`emails`: their normalized emails) no unique index refuses;
    answers the inserted ones by normalized email, with their ids when `ids` (else None).

    Rows are not returned one by one (RETURNING): on SQLite the driver steps through them
    with the GIL released and taken back for each, in turn with the checking thread.
    Those inserted are read back only when needed, from the ids given out since the
    insert began (a range of the primary key): SQLite holds the write lock from BEGIN,
    so no one else's contact is among them.

    On PostgreSQL a batch is first copied straight into the table, the cheapest way in
    (measured: ~10 % less work for the database per row than through the temp table and
    ON CONFLICT). If a live contact has one of its emails, the unique index refuses the
    copy, a savepoint undoes it, and the batch goes through the temp table, its inserted
    rows returned (there a racing writer's contact may have taken an id in the range).
    The emails are not looked up first: for a list of 2,000, the planner chose to filter
    the tenant's every contact over 2,000 index probes."""
    if not emails:
        return {}
    if not rows.copy_text:  # SQLite
        before = Contact.select(peewee.fn.MAX(Contact.id)).scalar() or 0
        if rows.write() == len(emails) and not ids:
            return dict.fromkeys(emails)
        return _inserted_since(before, emails, tenant_id)
    before = database.execute_sql(f"SELECT nextval({_CONTACT_IDS})").fetchone()[0] if ids else 0
    try:
        with database.atomic():  # a savepoint, undone alone
            rows.write()
    except peewee.IntegrityError:
        return dict(rows.copy_through(' RETURNING "email_normalized", "id"'))
    return _inserted_since(before, emails, tenant_id) if ids else dict.fromkeys(emails)


#: The sequence of contact ids (PostgreSQL).
_CONTACT_IDS = "pg_get_serial_sequence('\"contact\"', 'id')"


def _inserted_since(before: int, emails: list[str], tenant_id: int) -> dict[str, int | None]:
    """The ids of the batch's contacts inserted, by email: those among the tenant's with
    ids given out after `before`, whoever else took ids meanwhile."""
    wanted = set(emails)
    found = (
        Contact.select(Contact.email_normalized, Contact.id)
        .where(Contact.id > before, Contact.tenant == tenant_id)
        .tuples()
    )
    return {email: id_ for email, id_ in found if email in wanted}


class _Rows:
    """Rows of values for the fields' table, as the database takes them fastest: multi-row
    INSERTs on SQLite (`tail`, say ON CONFLICT, after each), COPY on PostgreSQL. Made ready
    when built; statements are written directly: Peewee's insert_many spends more time
    building one than the database running it."""

    def __init__(
        self, fields: Sequence[peewee.Field], rows: Sequence[tuple], tail: str = ""
    ) -> None:
        self.table = fields[0].model._meta.table_name
        self.columns = ", ".join(f'"{field.column_name}"' for field in fields)
        self.tail = tail
        self.copy_text = ""
        self.statements: list[tuple[str, list]] = []
        if not rows:
            return
        if isinstance(database.obj, peewee.PostgresqlDatabase):
            text = io.StringIO()
            # Every cell quoted: an empty quoted cell is an empty string, an unquoted one NULL.
            csv.writer(text, quoting=csv.QUOTE_ALL).writerows(rows)
            self.copy_text = text.getvalue()
            return
        one = "(" + ", ".join(["?"] * len(fields)) + ")"
        for start in range(0, len(rows), INSERT_ROWS):
            chunk = rows[start : start + INSERT_ROWS]
            sql = f'INSERT INTO "{self.table}" ({self.columns}) VALUES ' + ", ".join(
                [one] * len(chunk)
            )
            self.statements.append((sql + tail, [value for row in chunk for value in row]))

    def write(self) -> int:
        """Insert the rows (on PostgreSQL by COPY, which ignores the tail); answers how
        many went in."""
        if self.copy_text:
            # Read whole: psycopg2 takes the GIL for each read, and the checking thread
            # may hold it for up to a switch interval (5 ms) each time.
            with peewee.__exception_wrapper__:  # the driver's errors as Peewee's
                cursor = database.cursor()
                cursor.copy_expert(
                    f'COPY "{self.table}" ({self.columns}) FROM STDIN WITH (FORMAT csv)',
                    io.StringIO(self.copy_text),
                    len(self.copy_text),
                )
            return cursor.rowcount
        return sum(database.execute_sql(sql, values).rowcount for sql, values in self.statements)

    def copy_through(self, returning: str) -> list:
        """PostgreSQL: the rows by COPY into a temp table of the session, emptied at every
        commit, then one INSERT … SELECT with the tail; answers what `returning` names."""
        table, columns = self.table, self.columns
        cursor = database.cursor()
        cursor.execute(
            f'CREATE TEMP TABLE IF NOT EXISTS "incoming_{table}" ON COMMIT DELETE ROWS'
            f' AS SELECT {columns} FROM "{table}" WITH NO DATA'
        )
        cursor.copy_expert(
            f'COPY "incoming_{table}" FROM STDIN WITH (FORMAT csv)',
            io.StringIO(self.copy_text),
            len(self.copy_text),
        )
        cursor.execute(
            f'INSERT INTO "{table}" ({columns}) SELECT * FROM "incoming_{table}"'
            f"{self.tail}{returning}"
        )
        return cursor.fetchall()
