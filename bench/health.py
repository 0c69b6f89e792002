"""C2C health requests/s through the gateway on every call path, beside a bare aiohttp
JSON handler measured in the same run. Targets: in-process ≥ 60 % of bare, channel ≥ 12 %.

Every server is started first and idles while another is measured; the measurements are
interleaved over several rounds and the median is reported, so a noisy moment on a shared
machine moves one sample, not a whole figure.
"""

from __future__ import annotations

import statistics
import tempfile
from contextlib import ExitStack
from pathlib import Path

from bench.bare import floor_server
from bench.concurrency import UNREACHED
from bench.wrk import requests_per_second
from tests.support.processes import CrmgateProcess

LOG_ENV = {"CRMGATE_LOG_LEVEL": "WARNING"}  # per-call log lines off: they'd measure the pipe
ROUNDS = 3


def main(seconds: int = 3) -> None:
    with ExitStack() as stack:
        bare_url, _ = stack.enter_context(floor_server("bench.bare_json_server"))
        targets = {"bare aiohttp JSON handler": (bare_url + "/api/c2c/health", {})}
        for label, deployment in (
            ("serve, in-process calls", "in-process"),
            ("gateway → server, gRPC channel", "split"),
            ("serve, channel within one process", "channel"),
        ):
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            server = stack.enter_context(
                CrmgateProcess.start_split(data_dir, env=LOG_ENV)
                if deployment == "split"
                else CrmgateProcess.start(data_dir, gateway_calls=deployment, env=LOG_ENV)
            )
            # 20,000 calls a second from one key is far past the default budget (60,000 a
            # minute): a budget it never reaches keeps its bookkeeping in the measurement.
            server.admin(
                "tenant", "create", "bench", "--host", "127.0.0.1", "--request-limit", UNREACHED
            )
            key = server.admin("apikey", "create", "--tenant", "bench", "--kind", "c2c")
            headers = {"X-Api-Version": "v1", "Authorization": f"Bearer {key}"}
            targets[label] = (server.http_url + "/api/c2c/health", headers)
        for url, headers in targets.values():
            requests_per_second(url, headers, seconds=1)  # warm up (and fill the key cache)
        samples: dict[str, list[float]] = {label: [] for label in targets}
        for _ in range(ROUNDS):
            for label, (url, headers) in targets.items():
                samples[label].append(requests_per_second(url, headers, seconds=seconds))
    bare = statistics.median(samples["bare aiohttp JSON handler"])
    notes = {
        "serve, in-process calls": "target ≥ 60 %",
        "gateway → server, gRPC channel": "target ≥ 12 %",
    }
    print(f"C2C health, wrk -t1 -c32 from a second process, median of {ROUNDS} interleaved rounds")
    for label, values in samples.items():
        rps = statistics.median(values)
        print(f"  {label:<36}{rps:>9.0f} req/s  {rps / bare:7.1%}  {notes.get(label, '')}")


if __name__ == "__main__":
    main()
