"""C2C uploads through the gateway, `serve` beside `gateway` → `server`, and beside a floor
measured in the same rounds (a bare aiohttp handler that parses the JSON, decodes the
base64, converts JPEGs to WebP with the product's settings and writes the files): PDFs,
photo JPEGs (stored as WebP) and uploads sent at once.

Every measurement runs in a fresh process (after one tiny upload of another kind, so
libraries are loaded) with a payload it has never seen: the peak RSS growth is cold (the
kernel's VmHWM, reset just before). Targets for `serve`: time ≤ 2x the floor; for PDFs,
peak RSS growth ≤ 3x the request bodies in flight (an image's decoded pixels are many
times its JPEG: its growth is shown beside the floor's, which converts it too). `serve`
with tracing on (OTLP/HTTP to a collector the benchmark runs) is shown beside it, without
a target."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import requests

from bench.bare import floor_server
from bench.deployments import api_key, crmgate, pids, tracing_on
from bench.photos import jpeg
from bench.rss import peak_growth
from bench.stats import Spread, interleave, target
from tests.support.otlp import Collector, otlp_collector

MiB = 1024 * 1024


def pdf(size: int) -> bytes:
    """A file libmagic calls application/pdf, of incompressible bulk."""
    head, tail = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", b"\n%%EOF\n"
    return head + os.urandom(size - len(head) - len(tail)) + tail


def body(files: list[tuple[str, bytes]]) -> bytes:
    """The C2C upload request for (mime type, content) pairs."""
    extension = {"application/pdf": "pdf", "image/jpeg": "jpg"}
    return json.dumps(
        {
            "email": "user@example.com",
            "files": [
                {
                    "filename": f"file{i}.{extension[mime]}",
                    "mime_type": mime,
                    "content": base64.b64encode(content).decode(),
                }
                for i, (mime, content) in enumerate(files)
            ],
        }
    ).encode()


@dataclass(frozen=True)
class Case:
    name: str
    #: The request bodies of one measurement, sent at once; new content for each seed.
    make: Callable[[int], list[bytes]]


CASES = (
    Case("1 x 25 MiB PDF", lambda seed: [body([("application/pdf", pdf(25 * MiB - 1024))])]),
    Case(
        "10 x 5 MiB PDFs",
        lambda seed: [body([("application/pdf", pdf(5 * MiB - 1024)) for _ in range(10)])],
    ),
    Case(
        "1 x 3 MP JPEG -> WebP",
        lambda seed: [body([("image/jpeg", jpeg(2048, 1536, seed))])],
    ),
    Case(
        "5 x 3 MP JPEGs -> WebP",
        lambda seed: [body([("image/jpeg", jpeg(2048, 1536, seed * 10 + i)) for i in range(5)])],
    ),
    Case(
        "8 uploads at once, 1 x 3 MP JPEG each",
        lambda seed: [body([("image/jpeg", jpeg(2048, 1536, seed * 10 + i))]) for i in range(8)],
    ),
    Case(
        "8 uploads at once, 1 x 5 MiB PDF each",
        lambda seed: [body([("application/pdf", pdf(5 * MiB - 1024))]) for _ in range(8)],
    ),
)
#: A tiny upload of each kind a fresh process handles before it is measured.
PRIMER = body([("application/pdf", pdf(4096)), ("image/jpeg", jpeg(320, 240, 0))])
DEPLOYMENTS = ("floor", "in-process", "in-process, tracing on", "split")
TRACED = ", tracing on"


def post_all(url: str, payloads: list[bytes], headers: dict[str, str]) -> float:
    """Seconds until every payload was answered 201, all sent at once."""

    def post(payload: bytes) -> None:
        answer = requests.post(url, data=payload, headers=headers, timeout=300)
        assert answer.status_code == 201, answer.text[:300]

    started = time.perf_counter()
    with ThreadPoolExecutor(len(payloads)) as pool:
        list(pool.map(post, payloads))
    return time.perf_counter() - started


@contextmanager
def started(
    deployment: str, collector: Collector
) -> Iterator[tuple[str, dict[str, str], list[int]]]:
    """(upload URL, headers, pids) of a fresh floor or crmgate deployment."""
    if deployment == "floor":
        with floor_server("bench.bare_upload_server") as (url, pid):
            yield url + "/c2c", {}, [pid]
        return
    kind = deployment.removesuffix(TRACED)
    env = tracing_on(collector) if deployment.endswith(TRACED) else None
    with crmgate(kind, env) as server:
        server.admin("contact", "create", "--tenant", "bench", "--email", "user@example.com")
        headers = {
            "X-Api-Version": "v1",
            "Authorization": f"Bearer {api_key(server, 'c2c')}",
            "Content-Type": "application/json",
        }
        yield server.http_url + "/api/c2c/contacts/assets", headers, pids(server)


def measure(case: Case, collector: Collector) -> tuple[int, dict[str, tuple[Spread, Spread]]]:
    """The bodies' bytes, and (seconds, MiB of peak RSS growth) per deployment, over
    interleaved rounds."""
    rounds: dict[str, list[tuple[float, float]]] = {d: [] for d in DEPLOYMENTS}
    payloads: dict[int, list[bytes]] = {}
    round_of = {d: 0 for d in DEPLOYMENTS}

    def one(deployment: str) -> float:
        seed = round_of[deployment] = round_of[deployment] + 1
        payload = payloads.setdefault(seed, case.make(seed))
        with started(deployment, collector) as (url, headers, processes):
            post_all(url, [PRIMER], headers)
            with peak_growth(processes) as growth:
                seconds = post_all(url, payload, headers)
        rounds[deployment].append((seconds, growth.total / MiB))
        sizes.append(sum(map(len, payload)))
        payloads.pop(seed - 1, None)
        return seconds

    sizes: list[int] = []
    interleave({d: lambda d=d: one(d) for d in DEPLOYMENTS})
    return sizes[0], {
        d: (Spread(tuple(s for s, _ in v)), Spread(tuple(r for _, r in v)))
        for d, v in rounds.items()
    }


def main() -> None:
    print(
        "C2C uploads, fresh processes: seconds, cold peak RSS growth (VmHWM, summed over the"
        " deployment's processes) in MiB and as a multiple of the request bodies; median"
        " (min-max) over interleaved rounds"
    )
    with otlp_collector(keep=False) as collector:
        for case in CASES:
            size, results = measure(case, collector)
            floor_time = results["floor"][0]
            print(f"  {case.name}, request bodies {size / MiB:.1f} MiB:")
            for deployment, (seconds, rss) in results.items():
                of_body = Spread(tuple(v * MiB / size for v in rss.values))
                line = (
                    f"    {deployment:<24}{seconds.show('.2f', ' s')}"
                    f"  RSS +{rss.show('.0f', ' MiB')} = {of_body.show('.1f', 'x')} body"
                )
                if deployment != "floor":
                    ratio = seconds / floor_time
                    line += f"  time {ratio.show('.2f', 'x')} of floor"
                if deployment == "in-process":
                    name = f"C2C {case.name}, serve"
                    line += f" ({target(name + ': time / floor', ratio, at_most=2)}"
                    if "PDF" in case.name:
                        line += f"; RSS {target(name + ': RSS / body', of_body, at_most=3)}"
                    line += ")"
                if deployment.endswith(TRACED):
                    on = seconds / results[deployment.removesuffix(TRACED)][0]
                    line += f"  time {on.show('.2f', 'x')} of off"
                print(line)


if __name__ == "__main__":
    main()
