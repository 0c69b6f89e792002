"""Bulk work through the voyzu API, SQLite beside PostgreSQL, one `crmgate serve` each at
its default settings:

- Import: `POST /api/imports/create` of a CSV of N rows (and an XLSX of N rows), timed
  end to end by the client. Target: CSV ≥ 20,000 rows/s (median over rounds).
- Export: `POST /api/exports/create` of every contact of a tenant seeded with M contacts
  (half with a custom field value), timed end to end, beside a floor measured in the same
  round: the same contacts' columns read with sqlite3/psycopg2 (a server-side cursor)
  straight into csv.writer and a file. Peak RSS growth is the kernel's VmHWM after
  resetting it (`echo 5 > /proc/PID/clear_refs`) minus VmRSS before, summed over the
  crmgate process and its bulk workers (where exports run). Each export runs on a
  `crmgate serve` started for it on the same store, whose bulk worker has done nothing
  but a 10-row import: cold (a worker that imported before keeps the memory it freed,
  which an export reuses without growing).
  Targets: CSV time ≤ 3x the floor (median), peak RSS growth ≤ 64 MiB (worst round).

- Writes during an import: voyzu creates sent one after another while a further CSV
  import of N rows runs (not one of those timed above), each create's latency: p50, p99
  and max over every round. On SQLite every writer waits for one write lock, which the
  import takes batch after batch; no target, the figures show how long a write waits.

Rounds interleave the backends and alternate floor and export; figures are min / median
/ max. Exits non-zero when a target is missed.

    .venv/bin/python bench/bulk.py [--import-rows 100000] [--xlsx-import-rows 20000]
        [--export-rows 1000000] [--rounds 3]

    .venv/bin/python bench/bulk.py --skip-export [--import-rows 20000]   # imports only

CPU figures are printed beside the wall-clock ones: on a shared machine they show what
the code costs when the wall clock mostly shows the neighbours. An import's CPU is that
of the crmgate process and its bulk workers, and (PostgreSQL) that of the database's
backend processes serving this database; rows per CPU-second of all of them together is
what an idle machine would import, since they take their turns. An export's CPU is
that of the crmgate process and its workers against the floor's. Targets use the wall
clock.
"""

from __future__ import annotations

import argparse
import base64
import csv
import io
import math
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import openpyxl
import psycopg2
import requests

from bench.concurrency import postgres_database
from bench.stats import percentile
from tests.support.load import session_id
from tests.support.processes import CrmgateProcess, child_processes, run_admin

PASSWORD = "bench password"
IMPORTER = "importer@bulk.example"
EXPORTER = "exporter@bulk.example"
IMPORT_TARGET = 20_000.0
EXPORT_RATIO_TARGET = 3.0
RSS_TARGET_MIB = 64.0
MIB = 1024 * 1024
COLUMNS = "first_name, last_name, email, phone, company, created_at, updated_at"


@dataclass
class Backend:
    name: str
    server: CrmgateProcess
    database: str  # the SQLite file or the PostgreSQL URL
    importer: str  # session ids
    exporter: str
    export_tenant: int
    data_dir: Path
    env: dict[str, str]
    figures: dict[str, list[float]] = field(default_factory=dict)
    #: Milliseconds of each create made during an import, every round's.
    writes: list[float] = field(default_factory=list)

    def add(self, name: str, value: float) -> None:
        self.figures.setdefault(name, []).append(value)

    @property
    def pid(self) -> int:
        return self.server.processes[0].process.pid

    def import_cpu(self) -> dict[int, float]:
        """CPU seconds so far of each process an import runs in: crmgate, its bulk
        workers and (PostgreSQL) the database's backend processes serving this database,
        which are negative ids here."""
        found = {pid: cpu_seconds(pid) for pid in (self.pid, *child_processes(self.pid))}
        if self.database.startswith("postgresql://"):
            found |= {-pid: cpu_seconds(pid) for pid in backends_of(self.database)}
        return found


def deploy(stack: ExitStack, name: str, database_url: str | None, export_rows: int) -> Backend:
    """A `crmgate serve` on the backend, its log lines into a file (as under a service
    manager), with an importing tenant and an exporting one of `export_rows` contacts."""
    data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="crmgate-bulk-")))
    env = {"CRMGATE_DATABASE_URL": database_url} if database_url else {}
    for tenant, email in (("importing", IMPORTER), ("exporting", EXPORTER)):
        run_admin(data_dir, "tenant", "create", tenant, env=env)
        run_admin(
            data_dir,
            *("user", "create", "--tenant", tenant, "--email", email, "--password", PASSWORD),
            *("--plan", "paid"),
            env=env,
        )
    server = stack.enter_context(CrmgateProcess.start(data_dir, env=env, log_dir=data_dir))
    database = database_url or str(data_dir / "crmgate.sqlite3")
    exporter = session_id(server.http_url, EXPORTER, PASSWORD)
    status = requests.post(
        server.http_url + "/api/custom-fields/update",
        json={"Fields": [{"Name": "Tier", "Type": "text"}]},
        cookies={"voyzu_session_id": exporter},
        timeout=30,
    ).status_code
    assert status == 200, status
    started = time.perf_counter()
    tenant = seed(database, export_rows)
    if export_rows:
        print(f"  {name}: seeded {export_rows:,} contacts in {time.perf_counter() - started:.1f} s")
    return Backend(
        name,
        server,
        database,
        session_id(server.http_url, IMPORTER, PASSWORD),
        exporter,
        tenant,
        data_dir,
        env,
    )


def seed(database: str, rows: int) -> int:
    """`rows` contacts (every second with a Tier value) for the exporting tenant, written
    with one INSERT … SELECT per table: quick, and no part of what is measured."""
    postgres = database.startswith("postgresql://")
    connection = psycopg2.connect(database) if postgres else sqlite3.connect(database)
    cursor = connection.cursor()
    mark = "%s" if postgres else "?"
    cursor.execute(f"SELECT id FROM tenant WHERE name = {mark}", ("exporting",))
    (tenant,) = cursor.fetchone()
    cursor.execute(f'SELECT id FROM "user" WHERE email = {mark}', (EXPORTER,))
    (owner,) = cursor.fetchone()
    if postgres:
        numbers = f"generate_series(1, {int(rows)}) AS n(i)"
        uuid = "md5(i::text || random()::text)::uuid"
        moment = "timestamp '2026-01-01' + i * interval '1 second'"
    else:
        numbers = (
            f"(WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {int(rows)})"
            " SELECT i FROM s)"
        )
        uuid = "lower(hex(randomblob(16)))"
        moment = "datetime('2026-01-01', '+' || i || ' seconds') || '.123456'"
    cursor.execute(
        f"INSERT INTO contact (uuid, tenant_id, owner_id, email, email_normalized, first_name,"
        f" last_name, phone, company, created_at, updated_at)"
        f" SELECT {uuid}, {tenant}, {owner}, 'Person' || i || '@Seed.example',"
        f" 'person' || i || '@seed.example', 'First' || i, 'Last, \"' || i || '\"',"
        f" '+1 555 ' || i, 'Company ' || (i % 1000), {moment}, {moment} FROM {numbers}"
    )
    cursor.execute(
        "INSERT INTO custom_field_value (contact_id, name, value)"
        f" SELECT id, 'Tier', 'gold' FROM contact WHERE tenant_id = {tenant} AND id % 2 = 0"
    )
    connection.commit()
    if postgres:
        connection.autocommit = True
        cursor.execute("VACUUM ANALYZE")
    connection.close()
    return int(tenant)


def csv_rows(rows: int, tag: str) -> list[list[str]]:
    return [
        [f"First{i}", f"Last{i}", f"{tag}-{i}@import.example", f"+1 555 {i}", f"Company {i % 97}"]
        for i in range(rows)
    ]


HEADERS = ["FirstName", "LastName", "Email", "Phone", "Company"]


def csv_file(rows: list[list[str]]) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(HEADERS)
    writer.writerows(rows)
    return out.getvalue().encode()


def xlsx_file(rows: list[list[str]]) -> bytes:
    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet()
    sheet.append(HEADERS)
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (all its threads); 0 once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def backends_of(database_url: str) -> list[int]:
    """The PostgreSQL backend processes connected to the database (local server)."""
    name = database_url.rsplit("/", 1)[1]
    with psycopg2.connect(database_url.rsplit("/", 1)[0] + "/postgres") as connection:
        cursor = connection.cursor()
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (name,))
        pids = [pid for (pid,) in cursor.fetchall()]
    connection.close()
    return pids


@dataclass
class Imported:
    rate: float  # rows/s by the wall clock
    crmgate: float  # rows per CPU-second of crmgate and its workers
    postgres: float  # rows per CPU-second of PostgreSQL's backends (inf on SQLite)
    both: float  # rows per CPU-second of the two together


def measure_import(backend: Backend, name: str, content: bytes, rows: int) -> Imported:
    """One import through the API, timed by the client; CPU as `Backend.import_cpu`."""
    body = {"FileName": name, "Content": base64.b64encode(content).decode()}
    before = backend.import_cpu()
    started = time.perf_counter()
    answer = requests.post(
        backend.server.http_url + "/api/imports/create",
        json=body,
        cookies={"voyzu_session_id": backend.importer},
        timeout=600,
    )
    elapsed = time.perf_counter() - started
    result = answer.json()
    assert answer.status_code == 200, result
    assert (result["ImportedCount"], result["Errors"]) == (rows, []), result["Errors"][:3]
    # A process that ended meanwhile (the pool replacing a connection) is not counted.
    used = {pid: cpu - before.get(pid, 0.0) for pid, cpu in backend.import_cpu().items()}
    crmgate = sum(cpu for pid, cpu in used.items() if pid > 0)
    postgres = sum(cpu for pid, cpu in used.items() if pid < 0)
    return Imported(
        rows / elapsed,
        rows / crmgate,
        rows / postgres if postgres else math.inf,
        rows / (crmgate + postgres),
    )


def measure_writes_during_import(backend: Backend, content: bytes, rows: int) -> list[float]:
    """Milliseconds each voyzu create took, sent one after another (each a new email)
    while the import of `content` ran (from its first row to its answer)."""
    finished = threading.Event()

    def run_import() -> None:
        try:
            measure_import(backend, "during-writes.csv", content, rows)
        finally:
            finished.set()

    importer = threading.Thread(target=run_import)
    importer.start()
    session = requests.Session()
    session.cookies.set("voyzu_session_id", backend.importer)
    latencies = []
    while not finished.is_set():
        email = f"w{len(latencies)}-{time.time_ns()}@writes.example"
        started = time.perf_counter()
        answer = session.post(
            backend.server.http_url + "/api/contacts/create", json={"Email": email}, timeout=60
        )
        latencies.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, answer.text[:300]
    importer.join()
    return latencies


def warm_up(backend: Backend, tag: str = "warm-up") -> None:
    """A small import (of new emails: `tag`): the bulk workers start before anything is
    measured (the bench asks one thing at a time, so one worker serves every job)."""
    measure_import(backend, f"{tag}.csv", csv_file(csv_rows(10, tag)), 10)


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def measure_export(backend: Backend, rows: int, tag: str) -> tuple[float, float, float]:
    """(seconds, peak RSS growth in MiB, CPU seconds) of one CSV export of the seeded
    tenant, by the crmgate process and its bulk workers (where exports run) together, on
    a `crmgate serve` started for it (see the module's docstring; `tag` names its warm-up
    import): RSS growth is the sum of each one's peak (VmHWM, reset first) less its RSS
    before."""
    logs = backend.data_dir / tag
    logs.mkdir()
    with CrmgateProcess.start(backend.data_dir, env=backend.env, log_dir=logs) as server:
        fresh = replace(backend, server=server, figures={})
        warm_up(fresh, tag)
        return _measure_export(fresh, rows)


def _measure_export(backend: Backend, rows: int) -> tuple[float, float, float]:
    processes = [backend.pid, *child_processes(backend.pid)]
    for pid in processes:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    before = [status_kib(pid, "VmRSS") for pid in processes]
    cpu = sum(cpu_seconds(pid) for pid in processes)
    started = time.perf_counter()
    answer = requests.post(
        backend.server.http_url + "/api/exports/create",
        json={"Format": "csv"},
        cookies={"voyzu_session_id": backend.exporter},
        timeout=600,
    )
    elapsed = time.perf_counter() - started
    peaks = [status_kib(pid, "VmHWM") for pid in processes]
    assert child_processes(backend.pid) == processes[1:], "a bulk worker started mid-export"
    body = answer.json()
    assert answer.status_code == 200, body
    assert body["Spreadsheet"]["RowCount"] == rows, body
    growth = sum(peak - rss for peak, rss in zip(peaks, before, strict=True)) / 1024
    return elapsed, growth, sum(cpu_seconds(pid) for pid in processes) - cpu


def measure_floor(backend: Backend, target: Path) -> tuple[float, float]:
    """(seconds, CPU seconds of this process) of the same contacts' columns, read with
    the driver (a server-side cursor on PostgreSQL) and written with csv.writer straight
    to a file."""
    postgres = backend.database.startswith("postgresql://")
    query = (
        f"SELECT {COLUMNS} FROM contact WHERE tenant_id = {backend.export_tenant}"
        " AND deleted_at IS NULL ORDER BY created_at, id"
    )
    cpu = time.process_time()
    started = time.perf_counter()
    connection = (
        psycopg2.connect(backend.database) if postgres else sqlite3.connect(backend.database)
    )
    cursor = connection.cursor("floor") if postgres else connection.cursor()
    if postgres:
        cursor.itersize = 2000
    cursor.execute(query)
    with target.open("w", newline="", encoding="utf-8") as sink:
        writer = csv.writer(sink)
        writer.writerow(COLUMNS.split(", "))
        writer.writerows(cursor)
        sink.flush()
        os.fsync(sink.fileno())
    connection.close()
    return time.perf_counter() - started, time.process_time() - cpu


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def spread(values: list[float], digits: int = 2) -> str:
    return (
        f"{min(values):,.{digits}f} / {statistics.median(values):,.{digits}f} /"
        f" {max(values):,.{digits}f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--import-rows", type=int, default=100_000)
    parser.add_argument("--xlsx-import-rows", type=int, default=20_000)
    parser.add_argument("--export-rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument(
        "--skip-export", action="store_true", help="imports only: no seeding, no exports"
    )
    options = parser.parse_args(argv)
    if options.skip_export:
        options.export_rows = 0
    print(
        f"bulk: import {options.import_rows:,} rows (XLSX: {options.xlsx_import_rows:,}),"
        f" export {options.export_rows:,} contacts as CSV,"
        f" {options.rounds} rounds; load average {load()}"
    )
    ok = True
    with ExitStack() as stack:
        backends = []
        for name in options.backends.split(","):
            url = stack.enter_context(postgres_database()) if name == "postgresql" else None
            if name == "postgresql" and url is None:
                print("  postgresql: no local PostgreSQL; skipped")
                continue
            backends.append(deploy(stack, name, url, options.export_rows))
        for backend in backends:
            warm_up(backend)
        floor_file = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "floor.csv"
        for round_ in range(options.rounds):
            files = {
                "csv": (csv_file(csv_rows(options.import_rows, f"r{round_}")), options.import_rows),
                "xlsx": (
                    xlsx_file(csv_rows(options.xlsx_import_rows, f"x{round_}")),
                    options.xlsx_import_rows,
                ),
            }
            for backend in backends if round_ % 2 == 0 else reversed(backends):
                for format_, (content, count) in files.items():
                    if not count:
                        continue
                    figures = measure_import(backend, f"bulk-{round_}.{format_}", content, count)
                    backend.add(f"import {format_} rows/s", figures.rate)
                    backend.add(f"import {format_} rows/CPU-s crmgate", figures.crmgate)
                    if backend.name == "postgresql":
                        backend.add(f"import {format_} rows/CPU-s postgres", figures.postgres)
                        backend.add(f"import {format_} rows/CPU-s both", figures.both)
                content = csv_file(csv_rows(options.import_rows, f"w{round_}"))
                backend.writes += measure_writes_during_import(
                    backend, content, options.import_rows
                )
                if not options.export_rows:
                    continue
                steps = ["floor", "export"] if round_ % 2 == 0 else ["export", "floor"]
                for step in steps:
                    if step == "floor":
                        floor, floor_cpu = measure_floor(backend, floor_file)
                    else:
                        seconds, growth, cpu = measure_export(
                            backend, options.export_rows, f"export-warm-up-{round_}"
                        )
                        backend.add("export csv s", seconds)
                        backend.add("export csv RSS MiB", growth)
                backend.add("floor s", floor)
                backend.add("export/floor", seconds / floor)
                backend.add("export/floor CPU", cpu / floor_cpu)
            print(f"  round {round_ + 1} done; load average {load()}")
        print("  min / median / max")
        for backend in backends:
            figures = backend.figures
            import_rate = statistics.median(figures["import csv rows/s"])
            print(f"  {backend.name}:")
            for name, values in figures.items():
                print(f"    {name:<32} {spread(values, 0 if 'rows/' in name else 2)}")
            writes = backend.writes
            print(
                f"    {'creates during an import, ms':<32} p50 {percentile(writes, 50):.0f} /"
                f" p99 {percentile(writes, 99):.0f} / max {max(writes):.0f}"
                f" ({len(writes)} creates)"
            )
            verdicts = [
                (
                    f"import CSV median {import_rate:,.0f} rows/s ≥ {IMPORT_TARGET:,.0f}",
                    import_rate >= IMPORT_TARGET,
                )
            ]
            if options.export_rows:
                ratio = statistics.median(figures["export/floor"])
                worst_rss = max(figures["export csv RSS MiB"])
                verdicts += [
                    (
                        f"export CSV median {ratio:.2f}x floor ≤ {EXPORT_RATIO_TARGET}x",
                        ratio <= EXPORT_RATIO_TARGET,
                    ),
                    (
                        f"export peak RSS growth {worst_rss:.1f} MiB ≤ {RSS_TARGET_MIB:.0f} MiB",
                        worst_rss <= RSS_TARGET_MIB,
                    ),
                ]
            for text, met in verdicts:
                print(f"    {'ok    ' if met else 'MISSED'} {text}")
                ok = ok and met
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
