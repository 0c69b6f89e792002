"""C2C health requests/s through the gateway on both call paths, beside a bare aiohttp
JSON handler measured in the same run. Targets: in-process ≥ 60 % of bare, channel ≥ 12 %.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.bare import floor_server
from bench.wrk import requests_per_second
from tests.support.processes import CrmgateProcess

LOG_ENV = {"CRMGATE_LOG_LEVEL": "WARNING"}  # per-call log lines off: they'd measure the pipe


def bare_server_rps(seconds: int) -> float:
    with floor_server("bench.bare_json_server") as (url, _):
        requests_per_second(url + "/api/c2c/health", {}, seconds=1)  # warm up
        return requests_per_second(url + "/api/c2c/health", {}, seconds=seconds)


def gateway_rps(deployment: str, seconds: int) -> float:
    """`deployment`: in-process or channel (`crmgate serve`), or split (`crmgate server` +
    `crmgate gateway --grpc-target`, each in its own process)."""
    with tempfile.TemporaryDirectory() as data_dir:
        start = (
            CrmgateProcess.start_split(Path(data_dir), env=LOG_ENV)
            if deployment == "split"
            else CrmgateProcess.start(Path(data_dir), gateway_calls=deployment, env=LOG_ENV)
        )
        with start as server:
            server.admin("tenant", "create", "bench", "--host", "127.0.0.1")
            key = server.admin("apikey", "create", "--tenant", "bench", "--kind", "c2c")
            headers = {"X-Api-Version": "v1", "Authorization": f"Bearer {key}"}
            url = server.http_url + "/api/c2c/health"
            requests_per_second(url, headers, seconds=1)  # warm up (and fill the key cache)
            return requests_per_second(url, headers, seconds=seconds)


def main(seconds: int = 5) -> None:
    bare = bare_server_rps(seconds)
    rows = [
        ("bare aiohttp JSON handler", bare, ""),
        ("serve, in-process calls", gateway_rps("in-process", seconds), "target ≥ 60 %"),
        ("gateway → server, gRPC channel", gateway_rps("split", seconds), "target ≥ 12 %"),
        ("serve, channel within one process", gateway_rps("channel", seconds), ""),
    ]
    print("C2C health, wrk -t1 -c32 from a second process, requests/s (same run)")
    for name, rps, note in rows:
        print(f"  {name:<36}{rps:>9.0f}  {rps / bare:7.1%}  {note}")


if __name__ == "__main__":
    main()
