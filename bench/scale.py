"""voyzu search at scale: one tenant with many contacts (default 1,000,000) beside one with
1,000, on SQLite and on PostgreSQL, through a real `crmgate serve` at default settings.

Every search shape is timed on both tenants, interleaved (big, small, next shape, …), over
`--samples` rounds; the table shows p50 and p99 of each and the big/small ratio of the
p99s. Targets: each big p99 ≤ 3x the small tenant's and ≤ 50 ms. Then eight concurrent
big searches run while the small tenant's C2C health is timed; target p99 ≤ 50 ms (beside
the idle p99 of the same run). Exits non-zero when a target is missed.

    .venv/bin/python bench/scale.py [--contacts 1000000] [--samples 200] [--backend both]
        [--store DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import multiprocessing
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import seed
from bench.concurrency import latencies, postgres_database
from bench.deployments import UNREACHED
from bench.stats import percentile
from tests.support.load import session_id
from tests.support.processes import CrmgateProcess, run_admin

SMALL = 1000
P99_LIMIT_MS = 50.0
RATIO_LIMIT = 3.0
CONCURRENT = 8
PASSWORD = "bench password"
TENANTS = {"big": "big@scale.example", "small": "small@scale.example"}


def shapes(count: int) -> dict[str, Callable[[int], dict[str, object]]]:
    """Each shape's search for a tenant of `size` contacts."""
    rare = _rare_substring()
    non_ascii = next(name for name in seed.FIRST_NAMES if "ø" in name)
    return {
        "empty, page 1": lambda size: {},
        "empty, page 1000": lambda size: {"Page": 1000},
        f"substring {rare!r}": lambda size: {"SearchText": rare},
        "exact email": lambda size: {"SearchText": seed.row(size // 2).email},
        "nothing matches": lambda size: {"SearchText": "qqxqq"},
        "SortBy LastName": lambda size: {"SortBy": "LastName"},
        f"non-ASCII {non_ascii.upper()!r}": lambda size: {"SearchText": non_ascii.upper()},
        "two words": lambda size: {
            "SearchText": f"{seed.row(size // 3).first_name} {seed.row(size // 3).last_name}"
        },
    }


def _rare_substring() -> str:
    """Part of a last name found in no other name: it matches 1 contact in seed.POOL."""
    every = [*seed.FIRST_NAMES, *seed.LAST_NAMES]
    for name in seed.LAST_NAMES:
        part = name.lower()[1:]
        if sum(part in other.lower() for other in every) == 1:
            return part
    raise AssertionError("no last name has a part of its own")


class Client:
    """One kept-alive HTTP connection, signed in as one voyzu user."""

    def __init__(self, http_url: str, session: str) -> None:
        url = urlsplit(http_url)
        self.connection = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
        self.headers = {"Cookie": f"voyzu_session_id={session}", "Content-Type": "application/json"}

    def search(self, body: dict[str, object]) -> tuple[float, dict]:
        started = time.perf_counter()
        self.connection.request("POST", "/api/contacts/search", json.dumps(body), self.headers)
        response = self.connection.getresponse()
        answer = response.read()
        elapsed = (time.perf_counter() - started) * 1000
        if response.status != 200:
            raise RuntimeError(f"search {body} answered {response.status}: {answer[:200]!r}")
        return elapsed, json.loads(answer)

    def post(self, path: str, body: dict[str, object]) -> None:
        self.connection.request("POST", path, json.dumps(body), self.headers)
        response = self.connection.getresponse()
        response.read()
        assert response.status == 200, (path, response.status)


@contextmanager
def deployment(
    backend: str, contacts: int, store: Path | None
) -> Iterator[tuple[CrmgateProcess, str]]:
    """crmgate serving a seeded database; yields it and the small tenant's C2C key.

    Without `store` the database is a scratch one, seeded now and dropped after. With it,
    the seeded database is kept (a data dir under `store`; on PostgreSQL a database named
    after it) and reused by later runs, which then skip the minutes of seeding."""
    with ExitStack() as stack:
        if store is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="scale-")))
        else:
            data_dir = store / f"{backend}-{contacts}"
            data_dir.mkdir(parents=True, exist_ok=True)
        env: dict[str, str] = {}
        seeded = data_dir / "seeded-c2c-key"
        if backend == "postgresql":
            if store is None:
                url = stack.enter_context(postgres_database())
            else:
                url = _kept_postgres_database(f"crmgate_scale_{contacts}_{_tag(data_dir)}", seeded)
            if url is None:
                raise SystemExit("no PostgreSQL at 127.0.0.1:5432")
            env["CRMGATE_DATABASE_URL"] = url
        else:
            url = f"sqlite:///{data_dir}/crmgate.sqlite3"
        if seeded.exists():
            key = seeded.read_text()
            print(f"  {backend}: reusing the {contacts:,} contacts seeded in {data_dir}")
        else:
            key = _seed(data_dir, env, url, backend, contacts)
            if store is not None:
                seeded.write_text(key)
        yield stack.enter_context(CrmgateProcess.start(data_dir, env=env)), key


def _tag(data_dir: Path) -> str:
    return hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:8]


def _kept_postgres_database(name: str, seeded: Path) -> str | None:
    """The named database on the local PostgreSQL, created when missing (then nothing in
    it is seeded yet) and kept afterwards (`DROP DATABASE` it by hand)."""
    import psycopg2

    try:
        admin = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="test")
    except psycopg2.OperationalError:
        return None
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if cursor.fetchone() is None:
            seeded.unlink(missing_ok=True)
            cursor.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


def _seed(data_dir: Path, env: dict[str, str], url: str, backend: str, contacts: int) -> str:
    """Both tenants, their users and contacts; the small tenant's C2C key."""
    run_admin(data_dir, "migrate", env=env)
    for tenant, email in TENANTS.items():
        run_admin(data_dir, "tenant", "create", tenant, "--request-limit", UNREACHED, env=env)
        run_admin(
            data_dir,
            *("user", "create", "--tenant", tenant, "--email", email),
            *("--password", PASSWORD, "--plan", "paid"),
            env=env,
        )
    key = run_admin(data_dir, "apikey", "create", "--tenant", "small", "--kind", "c2c", env=env)
    for tenant, size in (("big", contacts), ("small", SMALL)):
        started = time.perf_counter()
        seed.seed(url, tenant, TENANTS[tenant], size)
        print(f"  {backend}: seeded {size:,} contacts in {time.perf_counter() - started:.0f} s")
    return key


def measure(backend: str, contacts: int, samples: int, store: Path | None) -> bool:
    with deployment(backend, contacts, store) as (crmgate, key):
        clients = {
            tenant: Client(crmgate.http_url, session_id(crmgate.http_url, email, PASSWORD))
            for tenant, email in TENANTS.items()
        }
        for client in clients.values():
            client.post(
                "/api/custom-fields/update", {"Fields": [{"Name": "Region", "Type": "text"}]}
            )
        sizes = {"big": contacts, "small": SMALL}
        table = shapes(contacts)
        times: dict[tuple[str, str], list[float]] = {}
        found: dict[tuple[str, str], tuple[int, int]] = {}
        ok = True
        for _ in range(samples):
            for shape, body in table.items():
                for tenant, client in clients.items():
                    elapsed, answer = client.search(body(sizes[tenant]))
                    times.setdefault((shape, tenant), []).append(elapsed)
                    found[shape, tenant] = (answer["TotalCount"], len(answer["Rows"]))
        if samples:
            ok = report(backend, contacts, table, times, found)
        return health_under_load(crmgate, key, clients["big"], table, contacts) and ok


def report(
    backend: str,
    contacts: int,
    table: dict[str, object],
    times: dict[tuple[str, str], list[float]],
    found: dict[tuple[str, str], tuple[int, int]],
) -> bool:
    print(f"\n{backend}: voyzu search, {contacts:,} contacts vs {SMALL:,} (ms; TotalCount/rows)")
    print(
        f"  {'shape':<28}{'big p50':>9}{'big p99':>9}{'small p50':>11}{'small p99':>11}"
        f"{'p99 ratio':>11}  {'big found':>13}  {'small found':>11}  verdict"
    )
    ok = True
    for shape in table:
        big, small = times[shape, "big"], times[shape, "small"]
        big99, small99 = percentile(big, 99), percentile(small, 99)
        ratio = big99 / small99
        good = big99 <= P99_LIMIT_MS and ratio <= RATIO_LIMIT
        ok &= good
        big_found = "{}/{}".format(*found[shape, "big"])
        small_found = "{}/{}".format(*found[shape, "small"])
        print(
            f"  {shape:<28}{percentile(big, 50):>9.1f}{big99:>9.1f}{percentile(small, 50):>11.1f}"
            f"{small99:>11.1f}{ratio:>10.1f}x  {big_found:>13}  {small_found:>11}  "
            f"{'ok' if good else 'MISSED'}"
        )
    print(f"  targets: big p99 <= {P99_LIMIT_MS:.0f} ms and <= {RATIO_LIMIT:.0f}x small p99")
    return ok


def health_under_load(
    crmgate: CrmgateProcess,
    key: str,
    big: Client,
    table: dict[str, Callable[[int], dict[str, object]]],
    contacts: int,
) -> bool:
    """The small tenant's C2C health p99, idle and while eight big searches run at once.
    Health is sampled from a process of its own: the search lanes' threads here, parsing
    answers, would otherwise hold the sampler's GIL and count in its latency."""
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as sampler:
        _, idle, _ = sampler.submit(latencies, crmgate.http_url, key).result()
        stop = threading.Event()
        bodies = [body(contacts) for body in table.values()]
        searches = [0]
        cookie = big.headers["Cookie"].split("=", 1)[1]

        def searching(lane: int) -> None:
            client = Client(crmgate.http_url, cookie)
            for turn in range(lane, 10**9):
                if stop.is_set():
                    break
                client.search(bodies[turn % len(bodies)])
                searches[0] += 1

        threads = [threading.Thread(target=searching, args=(lane,)) for lane in range(CONCURRENT)]
        for thread in threads:
            thread.start()
        try:
            started = time.perf_counter()
            _, loaded, _ = sampler.submit(latencies, crmgate.http_url, key).result()
            rate = searches[0] / (time.perf_counter() - started)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
    good = loaded <= P99_LIMIT_MS
    print(
        f"  C2C health of the small tenant, p99: idle {idle:.1f} ms, with {CONCURRENT} "
        f"concurrent big searches {loaded:.1f} ms ({rate:.0f} searches/s) = "
        f"{loaded / idle:.1f}x idle; target <= {P99_LIMIT_MS:.0f} ms: "
        f"{'ok' if good else 'MISSED'}"
    )
    return good


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument(
        "--store",
        type=Path,
        help="keep the seeded databases here (and on PostgreSQL, one named after it) and "
        "reuse them in later runs; 0 --samples then times health under searches only",
    )
    args = parser.parse_args()
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    ok = True
    for backend in backends:
        ok &= measure(backend, args.contacts, args.samples, args.store)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
