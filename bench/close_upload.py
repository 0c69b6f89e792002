"""Close uploads with curl (the form from POST /api/v1/files/upload/, then a multipart
POST of the file), `serve` beside `gateway` → `server`, beside a bare aiohttp handler that
streams the file to disk, in the same interleaved rounds: one 100 MiB file, and four
25 MiB files at once. Every measurement runs in a fresh process after a tiny upload, so
the peak RSS growth is cold (VmHWM, reset just before). Target: streamed, so no process's
peak RSS grows by more than 32 MiB (for the split deployment, issue 11's bound)."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import requests

from bench.bare import floor_server
from bench.deployments import api_key, crmgate, pids
from bench.rss import peak_growth
from bench.stats import Spread, interleave, target

MiB = 1024 * 1024
CASES = {"1 x 100 MiB": (100 * MiB, 1), "4 x 25 MiB at once": (25 * MiB, 4)}
DEPLOYMENTS = ("floor", "in-process", "split")
GROWTH_LIMIT = 32 * MiB
#: A form: (URL, fields to send before the file).
Form = tuple[str, dict[str, str]]


def curl_post(form: Form, path: Path) -> None:
    url, fields = form
    command = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", url]
    for name, value in fields.items():
        command += ["--form-string", f"{name}={value}"]
    command += ["-F", f"file=@{path};type=application/octet-stream"]
    status = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    assert status in ("201", "204"), f"{url} answered {status}"


@contextmanager
def started(deployment: str) -> Iterator[tuple[object, list[int]]]:
    """(a function giving a fresh upload form per file, pids) of a fresh deployment."""
    if deployment == "floor":
        with floor_server("bench.bare_upload_server") as (url, pid):
            yield (lambda name: (url + "/multipart", {"key": name})), [pid]
        return
    with crmgate(deployment) as server:
        key = api_key(server, "close")

        def form(name: str) -> Form:
            answer = requests.post(
                server.http_url + "/api/v1/files/upload/",
                json={"filename": name, "content_type": "application/octet-stream"},
                auth=(key, ""),
                timeout=10,
            )
            assert answer.status_code == 200, answer.text[:300]
            upload = answer.json()["upload"]
            return upload["url"], upload["fields"]

        yield form, pids(server)


def measure(files: list[Path], primer: Path) -> dict[str, tuple[Spread, Spread]]:
    """(seconds, MiB of the largest process's peak RSS growth) per deployment."""
    growth: dict[str, list[float]] = {d: [] for d in DEPLOYMENTS}

    def one(deployment: str) -> float:
        with started(deployment) as (form, processes):
            curl_post(form("primer.bin"), primer)
            forms = [form(path.name) for path in files]
            with peak_growth(processes) as peak, ThreadPoolExecutor(len(files)) as pool:
                begun = time.perf_counter()
                list(pool.map(curl_post, forms, files))
                seconds = time.perf_counter() - begun
        growth[deployment].append(peak.largest / MiB)
        return seconds

    seconds = interleave({d: lambda d=d: one(d) for d in DEPLOYMENTS})
    return {d: (seconds[d], Spread(tuple(growth[d]))) for d in DEPLOYMENTS}


def main() -> None:
    print(
        "Close uploads with curl, fresh processes: seconds, MiB/s, cold peak RSS growth of"
        " the largest process; median (min-max) over interleaved rounds"
    )
    with tempfile.TemporaryDirectory() as scratch:
        primer = Path(scratch) / "primer.bin"
        primer.write_bytes(os.urandom(4096))
        for case, (size, count) in CASES.items():
            files = [Path(scratch) / f"upload-{i}.bin" for i in range(count)]
            for path in files:
                with path.open("wb") as sink:
                    for _ in range(size // MiB):
                        sink.write(os.urandom(MiB))
            results = measure(files, primer)
            print(f"  {case}:")
            for deployment, (seconds, rss) in results.items():
                rate = Spread(tuple(size * count / MiB / s for s in seconds.values))
                line = (
                    f"    {deployment:<11}{seconds.show('.2f', ' s')}"
                    f"  {rate.show('.0f', ' MiB/s')}  RSS +{rss.show('.1f', ' MiB')}"
                )
                if deployment != "floor":
                    ratio = seconds / results["floor"][0]
                    name = f"Close {case}, {deployment}: RSS growth MiB"
                    line += f"  time {ratio.show('.2f', 'x')} of floor  "
                    line += target(name, rss, at_most=GROWTH_LIMIT / MiB)
                print(line)


if __name__ == "__main__":
    main()
