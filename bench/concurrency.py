"""The store under concurrency, SQLite beside PostgreSQL, each with two `crmgate serve`
processes on one store:

- 500 voyzu creates at once, spread over both processes, one in ten of them for one
  shared email: errors (anything but 200 or the 540 duplicate answer), duplicate contacts
  stored, creates answered per second. Targets: no errors, no duplicates.
- C2C health latency (a key check through the call pipeline), p50 and p99 of sequential
  calls from a client process of its own, idle and while the same crmgate process serves
  8 imports and a flood of sign-ins (from another process). Target: under load ≤ 3x idle.

crmgate runs at its default settings (INFO logging included). Rounds interleave the
backends and the idle and loaded measurements (idle first in even rounds, loaded first in
odd ones), so a noisy moment on a shared machine moves one sample; figures are min /
median / max over the rounds. Exits non-zero when a target is missed.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import multiprocessing
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp

from bench.deployments import UNREACHED
from tests.support.load import post_all, session_id
from tests.support.processes import CrmgateProcess, run_admin

ROUNDS = 5
CREATES = 500
SHARED_EVERY = 10
MEASURE_SECONDS = 3.0
#: At least this many calls per measurement: its p99 then rests on 10 or more of them.
MIN_SAMPLES = 1000
IMPORTS = 8
IMPORT_ROWS = 200
SIGN_IN_FLOOD = 16
LOAD_FACTOR_TARGET = 3.0
PASSWORD = "bench password"
USER = "bench@bench.example"


@dataclass
class Deployment:
    processes: list[CrmgateProcess]
    urls: list[str]
    session: str
    c2c_key: str
    creates_per_second: list[float] = field(default_factory=list)
    errors: int = 0
    duplicates: int = 0
    #: (p50, p99, calls) of each measurement.
    latency: dict[str, list[tuple[float, float, int]]] = field(
        default_factory=lambda: {"idle": [], "loaded": []}
    )
    #: (import rows/s, sign-ins/s, failed calls/s) served while its latency was measured.
    load_served: list[tuple[float, ...]] = field(default_factory=list)


@contextmanager
def postgres_database() -> Iterator[str | None]:
    """A fresh database on the local PostgreSQL, dropped afterwards; None without one."""
    import psycopg2

    try:
        admin = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="test")
    except psycopg2.OperationalError:
        yield None
        return
    admin.autocommit = True
    name = f"crmgate_bench_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


def deploy(stack: ExitStack, env: dict[str, str]) -> Deployment:
    data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
    # One key at thousands of calls a second is past the default budget (60,000 a minute):
    # a budget it never reaches keeps the budget's bookkeeping in the measurement.
    run_admin(data_dir, "tenant", "create", "bench", "--request-limit", UNREACHED, env=env)
    run_admin(
        data_dir,
        *("user", "create", "--tenant", "bench", "--email", USER, "--password", PASSWORD),
        *("--plan", "paid"),
        env=env,
    )
    key = run_admin(data_dir, "apikey", "create", "--tenant", "bench", "--kind", "c2c", env=env)
    processes = [stack.enter_context(CrmgateProcess.start(data_dir, env=env)) for _ in range(2)]
    urls = [process.http_url for process in processes]
    return Deployment(processes, urls, session_id(urls[0], USER, PASSWORD), key)


def measure_creates(deployment: Deployment, round_: int) -> None:
    emails = [
        f"r{round_}-shared@bench.example" if i % SHARED_EVERY == 0 else f"r{round_}-p{i}@b.example"
        for i in range(CREATES)
    ]
    calls = [("/api/contacts/create", {"Email": email}) for email in emails]
    started = time.perf_counter()
    answers = post_all(deployment.urls, calls, deployment.session, concurrency=CREATES)
    deployment.creates_per_second.append(CREATES / (time.perf_counter() - started))
    deployment.errors += sum(answer.status not in (200, 540) for answer in answers)
    search = {"SearchText": f"r{round_}-", "PageSize": 500}
    (found,) = post_all(deployment.urls, [("/api/contacts/search", search)], deployment.session)
    stored = [row["Email"] for row in found.body["Rows"]]
    deployment.duplicates += len(stored) - len(set(stored))


def measure_latency(deployment: Deployment, sampler: ProcessPoolExecutor, state: str) -> None:
    """Health latency of the first process, sampled from the sampler's process (not this
    one, whose threads read every crmgate process's log output)."""
    sampled = sampler.submit(latencies, deployment.urls[0], deployment.c2c_key)
    deployment.latency[state].append(sampled.result())
    for process in deployment.processes:
        for launched in process.processes:
            launched.output.clear()  # INFO logs a line per call: kept, they pile up


def latencies(http_url: str, c2c_key: str) -> tuple[float, float, int]:
    """p50 and p99 (ms) of sequential C2C health calls for MEASURE_SECONDS (and at least
    MIN_SAMPLES of them), on one kept-alive connection; and how many calls."""
    url = urlsplit(http_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    headers = {"X-Api-Version": "v1", "Authorization": f"Bearer {c2c_key}"}
    samples: list[float] = []
    until = time.perf_counter() + MEASURE_SECONDS
    while time.perf_counter() < until or len(samples) < MIN_SAMPLES:
        started = time.perf_counter()
        connection.request("GET", "/api/c2c/health", headers=headers)
        response = connection.getresponse()
        response.read()
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status == 200, response.status
    connection.close()
    cuts = statistics.quantiles(samples, n=100)
    return cuts[49], cuts[98], len(samples)


def csv_import(tag: str) -> dict[str, str]:
    lines = ["Email,FirstName"] + [f"{tag}-{i}@imports.example,Row {i}" for i in range(IMPORT_ROWS)]
    content = base64.b64encode("\n".join(lines).encode()).decode()
    return {"FileName": f"{tag}.csv", "Content": content}


def generate_load(
    url: str,
    session: str,
    tag: str,
    running: object,
    stop: object,
    served: object,
    served_for: object,
) -> None:
    """In a process of its own: IMPORTS imports back to back and SIGN_IN_FLOOD sign-ins
    back to back, all against one crmgate process, until `stop` is set. `served` counts
    (import rows, sign-ins) answered and calls that failed, in `served_for` seconds."""

    async def imports(client: aiohttp.ClientSession, lane: int) -> None:
        headers = {"Cookie": f"voyzu_session_id={session}"}
        turn = 0
        while not stop.is_set():  # type: ignore[attr-defined]
            body = csv_import(f"{tag}-{lane}-{turn}")
            async with client.post(url + "/api/imports/create", json=body, headers=headers) as r:
                await r.read()
                if r.status == 200:
                    served[0] += IMPORT_ROWS  # type: ignore[index]
                else:
                    served[2] += 1  # type: ignore[index]
            turn += 1

    async def sign_ins(client: aiohttp.ClientSession) -> None:
        body = {"Email": USER, "Password": PASSWORD}
        while not stop.is_set():  # type: ignore[attr-defined]
            async with client.post(url + "/api/auth", json=body) as response:
                await response.read()
                served[1 if response.status == 200 else 2] += 1  # type: ignore[index]

    async def main() -> None:
        connector = aiohttp.TCPConnector(limit=IMPORTS + SIGN_IN_FLOOD)
        async with aiohttp.ClientSession(connector=connector) as client:
            started = time.perf_counter()
            tasks = [asyncio.create_task(imports(client, lane)) for lane in range(IMPORTS)]
            tasks += [asyncio.create_task(sign_ins(client)) for _ in range(SIGN_IN_FLOOD)]
            await asyncio.sleep(1.0)  # every lane has its first call in flight
            running.set()  # type: ignore[attr-defined]
            await asyncio.gather(*tasks)
            served_for.value = time.perf_counter() - started  # type: ignore[attr-defined]

    asyncio.run(main())


@contextmanager
def loaded(deployment: Deployment, tag: str) -> Iterator[None]:
    """The load runs while the block does; what it got served then is recorded."""
    running, stop = multiprocessing.Event(), multiprocessing.Event()
    served = multiprocessing.Array("l", 3)
    served_for = multiprocessing.Value("d")
    args = (deployment.urls[0], deployment.session, tag, running, stop, served, served_for)
    process = multiprocessing.Process(target=generate_load, args=args)
    process.start()
    try:
        if not running.wait(timeout=60):
            raise SystemExit("the load generator did not start")
        yield
    finally:
        stop.set()
        process.join(timeout=120)
        if process.exitcode != 0:
            raise SystemExit(f"the load generator failed (exit {process.exitcode})")
    # Over the generator's whole run (imports in flight at the stop finish first): an
    # import is counted when it completes, so a shorter window would see bursts.
    deployment.load_served.append(tuple(count / served_for.value for count in served))


def spread(values: list[float], decimals: int = 1) -> str:
    return " / ".join(
        f"{value:.{decimals}f}" for value in (min(values), statistics.median(values), max(values))
    )


def report(deployments: dict[str, Deployment]) -> bool:
    """Print the figures side by side; whether every target was met."""
    met = True
    names = list(deployments)
    width = 34
    print(
        f"Store under concurrency, two crmgate serve processes per store, {ROUNDS} interleaved "
        "rounds (min / median / max)"
    )
    print(f"{'':<40}" + "".join(f"{name:<{width}}" for name in names))

    def row(label: str, cells: list[str]) -> None:
        print(f"  {label:<38}" + "".join(f"{cell:<{width}}" for cell in cells))

    row(
        f"{CREATES} creates at once: errors",
        [f"{d.errors} (target 0)" for d in deployments.values()],
    )
    row("  duplicate contacts stored", [f"{d.duplicates} (target 0)" for d in deployments.values()])
    row("  creates/s", [spread(d.creates_per_second) for d in deployments.values()])
    for index, percentile in enumerate(("p50", "p99")):
        for state in ("idle", "loaded"):
            row(
                f"C2C health {percentile}, {state} (ms)",
                [spread([s[index] for s in d.latency[state]]) for d in deployments.values()],
            )
        cells = []
        for deployment in deployments.values():
            idle = statistics.median(s[index] for s in deployment.latency["idle"])
            busy = statistics.median(s[index] for s in deployment.latency["loaded"])
            factor = busy / idle
            met &= factor <= LOAD_FACTOR_TARGET
            cells.append(f"{factor:.1f}x (target ≤ {LOAD_FACTOR_TARGET:.0f}x)")
        row(f"  {percentile} loaded / idle (medians)", cells)
    for state in ("idle", "loaded"):
        row(
            f"  calls per {state} measurement",
            [spread([s[2] for s in d.latency[state]], decimals=0) for d in deployments.values()],
        )
    row(
        "  load served: import rows/s",
        [spread([s[0] for s in d.load_served]) for d in deployments.values()],
    )
    row(
        "  load served: sign-ins/s",
        [spread([s[1] for s in d.load_served]) for d in deployments.values()],
    )
    row(
        "  load calls failed/s",
        [spread([s[2] for s in d.load_served]) for d in deployments.values()],
    )
    for deployment in deployments.values():
        met &= deployment.errors == 0 and deployment.duplicates == 0
    print(
        f"  load: {IMPORTS} imports of {IMPORT_ROWS} rows back to back and {SIGN_IN_FLOOD} "
        "sign-ins back to back, on the process measured"
    )
    return met


def main() -> int:
    with ExitStack() as stack:
        deployments = {"SQLite": deploy(stack, {})}
        postgres = stack.enter_context(postgres_database())
        if postgres is None:
            print("PostgreSQL at 127.0.0.1:5432 did not answer: SQLite only")
        else:
            deployments["PostgreSQL"] = deploy(stack, {"CRMGATE_DATABASE_URL": postgres})
        spawn = multiprocessing.get_context("spawn")
        sampler = stack.enter_context(ProcessPoolExecutor(1, mp_context=spawn))
        for round_ in range(ROUNDS):
            for deployment in deployments.values():
                measure_creates(deployment, round_)
            for name, deployment in deployments.items():
                if round_ % 2 == 0:
                    measure_latency(deployment, sampler, "idle")
                with loaded(deployment, f"{name}-{round_}"):
                    measure_latency(deployment, sampler, "loaded")
                if round_ % 2 == 1:
                    measure_latency(deployment, sampler, "idle")
        met = report(deployments)
    if not met:
        print("A target was missed.")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
