"""A 100 MiB Close upload streamed to embedded storage with curl: throughput and the peak
RSS growth of crmgate, beside curl posting the same file to a bare aiohttp handler that
streams to disk, in the same run. Flat memory means growth far below the file's size."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

import requests

from bench.bare import floor_server
from bench.rss import sampling
from tests.support.processes import CrmgateProcess

MiB = 1024 * 1024
SIZE = 100 * MiB


def curl_post(url: str, fields: dict[str, str], path: Path, pids: list[int]) -> tuple[float, int]:
    command = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", url]
    for name, value in fields.items():
        command += ["--form-string", f"{name}={value}"]
    command += ["-F", f"file=@{path};type=application/octet-stream"]
    with sampling(pids) as rss:
        started = time.perf_counter()
        status = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        elapsed = time.perf_counter() - started
    assert status in ("201", "204"), status
    return elapsed, rss.growth


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "big.bin"
        with path.open("wb") as sink:
            for _ in range(SIZE // MiB):
                sink.write(os.urandom(MiB))
        with floor_server("bench.bare_upload_server") as (url, pid):
            floor = curl_post(url + "/multipart", {"key": "x"}, path, [pid])
        with CrmgateProcess.start(
            Path(scratch) / "data", env={"CRMGATE_LOG_LEVEL": "WARNING"}
        ) as server:
            server.admin("tenant", "create", "bench")
            key = server.admin("apikey", "create", "--tenant", "bench", "--kind", "close")
            form = requests.post(
                server.http_url + "/api/v1/files/upload/",
                json={"filename": "big.bin", "content_type": "application/octet-stream"},
                auth=(key, ""),
                timeout=10,
            ).json()
            pids = [launched.process.pid for launched in server.processes]
            crmgate = curl_post(form["upload"]["url"], form["upload"]["fields"], path, pids)
    print("Close upload of 100 MiB with curl (same run): seconds, MiB/s, peak RSS growth")
    for label, (seconds, growth) in (
        ("bare aiohttp, to disk", floor),
        ("crmgate storage", crmgate),
    ):
        print(
            f"  {label:<22}{seconds:7.3f} s {SIZE / MiB / seconds:7.1f} MiB/s  RSS +{growth / MiB:5.1f} MiB"
            f"  time x{seconds / floor[0]:4.2f}"
        )


if __name__ == "__main__":
    main()
