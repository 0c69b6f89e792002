"""C2C uploads through the gateway: 1 x 25 MiB PDF and 10 x 5 MiB PDFs, time and peak RSS
growth of the crmgate processes, beside a floor measured in the same run (a bare aiohttp
handler that reads the body, parses the JSON, decodes base64 and writes the files).
Targets: end-to-end time ≤ 2x the floor; RSS growth ≤ 3x the request body."""

from __future__ import annotations

import base64
import json
import os
import tempfile
import time
from pathlib import Path

import requests

from bench.bare import floor_server
from bench.rss import sampling
from tests.support.processes import CrmgateProcess

MiB = 1024 * 1024
LOG_ENV = {"CRMGATE_LOG_LEVEL": "WARNING"}


def pdf(size: int) -> bytes:
    """A file libmagic calls application/pdf, of incompressible bulk."""
    head, tail = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", b"\n%%EOF\n"
    return head + os.urandom(size - len(head) - len(tail)) + tail


def body(sizes: list[int]) -> bytes:
    files = [
        {
            "filename": f"doc{i}.pdf",
            "mime_type": "application/pdf",
            "content": base64.b64encode(pdf(size)).decode(),
        }
        for i, size in enumerate(sizes)
    ]
    return json.dumps({"email": "user@example.com", "files": files}).encode()


def timed_post(
    url: str, payload: bytes, headers: dict[str, str], pids: list[int]
) -> tuple[float, int]:
    with sampling(pids) as rss:
        started = time.perf_counter()
        answer = requests.post(url, data=payload, headers=headers, timeout=300)
        elapsed = time.perf_counter() - started
    assert answer.status_code == 201, answer.text[:300]
    return elapsed, rss.growth


def main() -> None:
    cases = {"1 x 25 MiB": [25 * MiB - 1024], "10 x 5 MiB": [5 * MiB - 1024] * 10}
    payloads = {name: body(sizes) for name, sizes in cases.items()}
    results: dict[str, dict[str, tuple[float, int]]] = {name: {} for name in cases}
    with floor_server("bench.bare_upload_server") as (url, pid):
        for name, payload in payloads.items():
            timed_post(url + "/c2c", payload, {}, [pid])  # warm up
            results[name]["floor"] = timed_post(url + "/c2c", payload, {}, [pid])
    for deployment in ("in-process", "split"):
        with tempfile.TemporaryDirectory() as data_dir:
            start = (
                CrmgateProcess.start_split(Path(data_dir), env=LOG_ENV)
                if deployment == "split"
                else CrmgateProcess.start(Path(data_dir), env=LOG_ENV)
            )
            with start as server:
                server.admin("tenant", "create", "bench")
                server.admin(
                    "contact", "create", "--tenant", "bench", "--email", "user@example.com"
                )
                key = server.admin("apikey", "create", "--tenant", "bench", "--kind", "c2c")
                headers = {
                    "X-Api-Version": "v1",
                    "Authorization": f"Bearer {key}",
                    "Content-Type": "application/json",
                }
                pids = [launched.process.pid for launched in server.processes]
                url = server.http_url + "/api/c2c/contacts/assets"
                for name, payload in payloads.items():
                    timed_post(url, payload, headers, pids)  # warm up
                    results[name][deployment] = timed_post(url, payload, headers, pids)
    print("C2C uploads (same run): seconds, MiB/s of decoded files, peak RSS growth")
    for name, sizes in cases.items():
        decoded, request = sum(sizes), len(payloads[name])
        floor_time = results[name]["floor"][0]
        print(f"  {name}: request body {request / MiB:.1f} MiB")
        for label, (seconds, growth) in results[name].items():
            print(
                f"    {label:<11}{seconds:7.3f} s {decoded / MiB / seconds:7.1f} MiB/s"
                f"  time x{seconds / floor_time:4.2f} of floor (target ≤ 2)"
                f"  RSS +{growth / MiB:6.1f} MiB = x{growth / request:4.2f} of body (target ≤ 3)"
            )


if __name__ == "__main__":
    main()
